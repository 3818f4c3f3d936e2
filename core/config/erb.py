"""ERB pre-processing of configuration files, the way Kamal renders them (``ERB.new(text, trim_mode: "-")``).

Kamal evaluates arbitrary Ruby inside ``<% %>`` tags. We never evaluate anything: this module scans the
template with the same rules as Ruby's ERB (``ExplicitScanner``) and interprets a small, closed expression
language (see ``decisions.md``, "ERB"): ``ENV[...]``, ``ENV.fetch(...)``, shell-outs (backticks, ``%x()``),
literals, ``==`` ``!=`` ``!`` ``&&`` ``||``, ``?:``, parentheses, a few harmless string methods, and the
statements ``if``/``elsif``/``else``/``unless``/``end``. Anything else is a ``ConfigurationError`` naming
the file and line, so a template is never rendered differently from Kamal without saying so.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any

from kamalpy.errors import ConfigurationError

__all__ = ["render"]

# Ruby ERB's scanner for trim_mode "-" (erb/compiler.rb, ExplicitScanner). Outside a tag only these start
# tokens exist; `^[ \t]*<%-` eats the indentation before `<%-`. Inside a tag only these end tokens exist.
_STAG = r"(?m)^[ \t]*<%-|<%-|<%%|<%=|<%#|<%"
_ETAG = r"-%>|%%>|%>"
_NEWLINE_AFTER_TRIM = r"\r?\n"

_STATEMENT = r"(?s)(if|elsif|unless)\b\s*(.*?)(?:\s+then)?"

_MISSING = object()


@functools.cache
def _rx(pattern: str) -> re.Pattern[str]:
    """Compiled on first use: most files have no ERB, and start-up time matters."""
    return re.compile(pattern)


class _Unsupported(Exception):
    """Code outside the supported ERB subset (reported with the tag's code, file and line)."""


class _RubyError(Exception):
    """A runtime error Ruby would raise (message in Ruby's words, without file and line)."""


# ---------------------------------------------------------------------------------------------------------
# Template scanning and block structure


def _scan(text: str, path: str) -> list[tuple]:
    """Split the template into ("text", s) / ("expr", code, line) / ("stmt", code, line) items."""
    items: list[tuple] = []
    pos, size = 0, len(text)
    while pos < size:
        match = _rx(_STAG).search(text, pos)
        if match is None:
            items.append(("text", text[pos:]))
            break
        if match.start() > pos:
            items.append(("text", text[pos : match.start()]))
        token = match.group()
        if token == "<%%":  # literal "<%"
            items.append(("text", "<%"))
            pos = match.end()
            continue
        line = text.count("\n", 0, match.end()) + 1
        kind = {"<%=": "expr", "<%#": "comment"}.get(token, "stmt")  # "<%", "<%-" and "  <%-" are statements
        code: list[str] = []
        cursor = match.end()
        while True:
            end = _rx(_ETAG).search(text, cursor)
            if end is None:
                raise ConfigurationError(f"{path}:{line}: unterminated ERB tag {token.strip()} (missing %>)")
            code.append(text[cursor : end.start()])
            cursor = end.end()
            if end.group() == "%%>":  # a literal "%>" inside the code
                code.append("%>")
                continue
            if end.group() == "-%>":  # trims the line break that follows
                newline = _rx(_NEWLINE_AFTER_TRIM).match(text, cursor)
                if newline:
                    cursor = newline.end()
            break
        pos = cursor
        if kind != "comment":
            items.append((kind, "".join(code), line))
    return items


class _If:
    """An if/unless chain: branches of (condition or None for else, negated, body, line)."""

    def __init__(self, line: int) -> None:
        self.line = line
        self.branches: list[tuple[Any, bool, list, int]] = []
        self.has_else = False
        self.is_unless = False


def _build(items: list[tuple], path: str) -> list:
    """Nest the scanned items into blocks following if/elsif/else/unless/end."""
    root: list = []
    stack: list[tuple[list, _If | None]] = [(root, None)]
    for item in items:
        body = stack[-1][0]
        if item[0] == "text":
            body.append(item[1])
            continue
        kind, code, line = item
        if kind == "expr":
            body.append(("expr", _parse_expr(code, path, line), line))
            continue
        stmt = code.strip()
        if not stmt:
            continue  # `<% %>` does nothing in Ruby either
        match = _rx(_STATEMENT).fullmatch(stmt)
        if stmt in ("else", "end"):
            keyword, cond_code = stmt, ""
        elif match and match.group(2):
            keyword, cond_code = match.group(1), match.group(2)
        else:
            raise ConfigurationError(f"{path}:{line}: unsupported ERB: {_show(code)}")
        node = stack[-1][1]
        if keyword in ("if", "unless"):
            new = _If(line)
            new.is_unless = keyword == "unless"
            branch: list = []
            new.branches.append((_parse_expr(cond_code, path, line), keyword == "unless", branch, line))
            body.append(new)
            stack.append((branch, new))
        elif node is None:
            raise ConfigurationError(f"{path}:{line}: unexpected <% {keyword} %> without <% if %>")
        elif keyword == "end":
            stack.pop()
        elif node.has_else or (keyword == "elsif" and node.is_unless):
            raise ConfigurationError(f"{path}:{line}: unexpected <% {keyword} %>")
        else:
            branch = []
            cond = None if keyword == "else" else _parse_expr(cond_code, path, line)
            node.has_else = keyword == "else"
            node.branches.append((cond, False, branch, line))
            stack[-1] = (branch, node)
    if len(stack) > 1:
        node = stack[-1][1]
        assert node is not None
        raise ConfigurationError(f"{path}:{node.line}: missing <% end %> for this <% if %>")
    return root


def _show(code: str) -> str:
    text = " ".join(code.split())
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------------------
# Expressions: tokenizer and recursive-descent parser producing small tuples

_TOKEN = (
    r"""(?sx)(?P<ws>\s+)
      | (?P<dstr>"(?:[^"\\]|\\.)*")
      | (?P<sstr>'(?:[^'\\]|\\.)*')
      | (?P<btick>`(?:[^`\\]|\\.)*`)
      | (?P<pctx>%x[^\w\s])
      | (?P<num>\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][-+]?\d+)?)
      | (?P<ident>[A-Za-z_]\w*(?:[?!](?![=]))?)
      | (?P<op>==|!=|&&|\|\||[!()\[\],.?:{}-])
    """
)

_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "s": " ", "e": "\x1b", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v"}


def _unescape_double(body: str) -> str:
    """Double-quoted/backtick Ruby string body; interpolation is outside the subset."""
    if re.search(r"(?<!\\)(?:\\\\)*#[{$@]", body):
        raise _Unsupported("string interpolation")
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body, flags=re.S)


def _unescape_single(body: str) -> str:
    return re.sub(r"\\([\\'])", r"\1", body)


def _percent_x(code: str, start: int) -> tuple[str, int]:
    """The command of `%x(...)` starting at code[start] (the delimiter), and the index after it."""
    opener = code[start]
    closer = _PAIRS.get(opener, opener)
    depth, i = 1, start + 1
    while i < len(code):
        char = code[i]
        if char == "\\":
            i += 2
            continue
        if char == closer:
            depth -= 1
            if depth == 0:
                return code[start + 1 : i], i + 1
        elif char == opener and opener != closer:
            depth += 1
        i += 1
    raise _Unsupported("unterminated %x")


def _tokenize(code: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(code):
        match = _rx(_TOKEN).match(code, pos)
        if match is None:
            raise _Unsupported(code[pos:])
        kind = match.lastgroup
        text = match.group()
        pos = match.end()
        if kind == "ws":
            continue
        if kind == "dstr":
            tokens.append(("lit", _unescape_double(text[1:-1])))
        elif kind == "sstr":
            tokens.append(("lit", _unescape_single(text[1:-1])))
        elif kind == "btick":
            tokens.append(("sh", _unescape_double(text[1:-1])))
        elif kind == "pctx":
            command, pos = _percent_x(code, match.start() + 2)
            tokens.append(("sh", _unescape_double(command)))
        elif kind == "num":
            clean = text.replace("_", "")
            tokens.append(("lit", float(clean) if ("." in clean or "e" in clean.lower()) else int(clean)))
        else:
            tokens.append((kind, text))
    return tokens


class _Parser:
    """Precedence (Ruby's, lowest first): ?:  ||  &&  == !=  !  .method  primary."""

    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self, kind: str | None = None, value: Any = _MISSING) -> bool:
        if self.pos >= len(self.tokens):
            return False
        tok = self.tokens[self.pos]
        return (kind is None or tok[0] == kind) and (value is _MISSING or tok[1] == value)

    def take(self, kind: str, value: Any = _MISSING) -> Any:
        if not self.peek(kind, value):
            raise _Unsupported("unexpected token")
        self.pos += 1
        return self.tokens[self.pos - 1][1]

    def parse(self) -> tuple:
        node = self.ternary()
        if self.pos != len(self.tokens):
            raise _Unsupported("trailing code")
        return node

    def ternary(self) -> tuple:
        cond = self.logical_or()
        if self.peek("op", "?"):
            self.pos += 1
            then = self.ternary()
            self.take("op", ":")
            return ("cond", cond, then, self.ternary())
        return cond

    def logical_or(self) -> tuple:
        node = self.logical_and()
        while self.peek("op", "||"):
            self.pos += 1
            node = ("or", node, self.logical_and())
        return node

    def logical_and(self) -> tuple:
        node = self.equality()
        while self.peek("op", "&&"):
            self.pos += 1
            node = ("and", node, self.equality())
        return node

    def equality(self) -> tuple:
        node = self.unary()
        if self.peek("op", "==") or self.peek("op", "!="):
            op = self.take("op")
            node = ("eq" if op == "==" else "ne", node, self.unary())
        return node

    def unary(self) -> tuple:
        if self.peek("op", "!"):
            self.pos += 1
            return ("not", self.unary())
        if self.peek("op", "-") and self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1][0] == "lit" \
                and isinstance(self.tokens[self.pos + 1][1], (int, float)):
            self.pos += 2
            return ("lit", -self.tokens[self.pos - 1][1])
        return self.postfix()

    def postfix(self) -> tuple:
        node = self.primary()
        while self.peek("op", "."):
            self.pos += 1
            name = self.take("ident")
            if name not in _METHODS:
                raise _Unsupported(f"method {name}")
            if self.peek("op", "("):  # `x.strip()` is the same call
                self.pos += 1
                self.take("op", ")")
            node = ("call", node, name)
        return node

    def primary(self) -> tuple:
        if self.peek("lit"):
            return ("lit", self.take("lit"))
        if self.peek("sh"):
            return ("sh", self.take("sh"))
        if self.peek("op", "("):
            self.pos += 1
            node = self.ternary()
            self.take("op", ")")
            return node
        if self.peek("ident", "nil"):
            self.pos += 1
            return ("lit", None)
        if self.peek("ident", "true") or self.peek("ident", "false"):
            return ("lit", self.take("ident") == "true")
        if self.peek("ident", "ENV"):
            self.pos += 1
            return self.env_access()
        raise _Unsupported("unexpected token")

    def env_access(self) -> tuple:
        if self.peek("op", "["):
            self.pos += 1
            key = self.ternary()
            self.take("op", "]")
            return ("env", key)
        self.take("op", ".")
        method = self.take("ident")
        if method not in ("fetch", "key?", "has_key?", "include?"):
            raise _Unsupported(f"ENV.{method}")
        self.take("op", "(")
        args = [self.ternary()]
        while self.peek("op", ","):
            self.pos += 1
            args.append(self.ternary())
        self.take("op", ")")
        if method != "fetch":
            if len(args) != 1:
                raise _Unsupported("arguments")
            return ("has", args[0])
        default: Any = args[1] if len(args) == 2 else _MISSING
        if len(args) > 2:
            raise _Unsupported("arguments")
        if default is _MISSING and self.peek("op", "{"):  # ENV.fetch("X") { "default" }
            self.pos += 1
            default = self.ternary()
            self.take("op", "}")
        return ("fetch", args[0], default)


def _parse_expr(code: str, path: str, line: int) -> tuple:
    try:
        tokens = _tokenize(code)
        if not tokens:
            raise _Unsupported("empty expression")
        return _Parser(tokens).parse()
    except _Unsupported:
        raise ConfigurationError(f"{path}:{line}: unsupported ERB: {_show(code)}") from None


# ---------------------------------------------------------------------------------------------------------
# Evaluation with Ruby's semantics (nil and false are the only false values; && and || return operands)


def _truthy(value: Any) -> bool:
    return value is not None and value is not False


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):  # Python's True == 1; Ruby's true != 1
        return type(left) is type(right) and left == right
    return left == right


def _to_s(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}e{exponent}" if exponent else mantissa
    return str(value)


def _blank(value: Any) -> bool:
    if value is None or value is False:
        return True
    if isinstance(value, str):
        return not value.strip()
    return False


def _ruby_to_i(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    match = re.match(r"\s*([-+]?\d+(?:_\d+)*)", value)
    return int(match.group(1).replace("_", "")) if match else 0


_RUBY_SPACE = " \t\n\v\f\r\0"
_STRING_METHODS = {
    "strip": lambda s: s.strip(_RUBY_SPACE),
    "lstrip": lambda s: s.lstrip(_RUBY_SPACE),
    "rstrip": lambda s: s.rstrip(_RUBY_SPACE),
    "chomp": lambda s: s[:-2] if s.endswith("\r\n") else s[:-1] if s.endswith(("\n", "\r")) else s,
    "downcase": str.lower,
    "upcase": str.upper,
    "empty?": lambda s: not s,
}
_ANY_METHODS = {
    "to_s": _to_s,
    "to_i": _ruby_to_i,
    "nil?": lambda v: v is None,
    "blank?": _blank,
    "present?": lambda v: not _blank(v),
    "presence": lambda v: None if _blank(v) else v,
}
_METHODS = set(_STRING_METHODS) | set(_ANY_METHODS)


def _ruby_class(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "an instance of " + {int: "Integer", float: "Float", str: "String"}.get(type(value), "Object")


# Ruby runs a backtick command through /bin/sh only when it needs a shell; otherwise it execs the program
# directly, so a missing program is an error (Errno::ENOENT) rather than empty output (process.c).
_SHELL_META = set("*?{}[]<>()~&|\\$;'`\"\n#")
_SHELL_WORDS = {"!", ".", ":", "break", "case", "continue", "do", "done", "elif", "else", "esac", "eval", "exec",
                "exit", "export", "fi", "for", "if", "in", "readonly", "return", "set", "shift", "then", "times",
                "trap", "unset", "until", "while"}


def _shell(command: str, env: Mapping[str, str] | None) -> str:
    import subprocess

    words = command.split()
    if not words:
        raise _RubyError("No such file or directory - ")
    direct = not (_SHELL_META & set(command)) and "=" not in words[0] and words[0] not in _SHELL_WORDS
    argv = words if direct else ["/bin/sh", "-c", command]
    try:
        # Like Ruby: stdout captured, stderr and stdin shared, the exit status ignored.
        proc = subprocess.run(argv, stdout=subprocess.PIPE, env=None if env is None else dict(env), check=False)
    except OSError:
        raise _RubyError(f"No such file or directory - {command}") from None
    return proc.stdout.decode("utf-8", "replace")


def _inspect(value: Any) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    return _to_s(value) if value is not None else "nil"


class _Evaluator:
    def __init__(self, env: Mapping[str, str] | None) -> None:
        self.env = env
        self.lookup: Mapping[str, str] = os.environ if env is None else env

    def key(self, node: tuple) -> str:
        key = self.eval(node)
        if not isinstance(key, str):
            raise _RubyError(f"no implicit conversion of {_ruby_class(key).replace('an instance of ', '')} "
                             "into String")
        return key

    def eval(self, node: tuple) -> Any:
        op = node[0]
        if op == "lit":
            return node[1]
        if op == "env":
            return self.lookup.get(self.key(node[1]))
        if op == "has":
            return self.key(node[1]) in self.lookup
        if op == "fetch":
            key = self.key(node[1])
            default = _MISSING if node[2] is _MISSING else self.eval(node[2])  # Ruby evaluates arguments first
            if key in self.lookup:
                return self.lookup[key]
            if default is _MISSING:
                raise _RubyError(f"key not found: {_inspect(key)}")
            return default
        if op == "sh":
            return _shell(node[1], self.env)
        if op == "not":
            return not _truthy(self.eval(node[1]))
        if op == "and":
            left = self.eval(node[1])
            return self.eval(node[2]) if _truthy(left) else left
        if op == "or":
            left = self.eval(node[1])
            return left if _truthy(left) else self.eval(node[2])
        if op in ("eq", "ne"):
            same = _equal(self.eval(node[1]), self.eval(node[2]))
            return same if op == "eq" else not same
        if op == "cond":
            return self.eval(node[2]) if _truthy(self.eval(node[1])) else self.eval(node[3])
        if op == "call":
            value = self.eval(node[1])
            name = node[2]
            if name in _ANY_METHODS:
                return _ANY_METHODS[name](value)
            if not isinstance(value, str):
                raise _RubyError(f"undefined method '{name}' for {_ruby_class(value)}")
            return _STRING_METHODS[name](value)
        raise AssertionError(op)  # pragma: no cover


def _run(block: list, evaluator: _Evaluator, out: list[str], path: str) -> None:
    for item in block:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, _If):
            for cond, negated, body, line in item.branches:
                if cond is None or _truthy(_evaluate(evaluator, cond, path, line)) != negated:
                    _run(body, evaluator, out, path)
                    break
        else:
            _, expr, line = item
            out.append(_to_s(_evaluate(evaluator, expr, path, line)))


def _evaluate(evaluator: _Evaluator, expr: tuple, path: str, line: int) -> Any:
    try:
        return evaluator.eval(expr)
    except _RubyError as error:
        raise ConfigurationError(f"{path}:{line}: {error}") from None


def render(text: str, path: str, env: Mapping[str, str] | None = None) -> str:
    """Render the ERB in ``text`` (the content of the file ``path``, named in errors).

    ``env`` replaces ``os.environ`` for ``ENV`` lookups and shell-outs; shell-outs run in the current
    directory, like Kamal's.
    """
    if "<%" not in text:
        return text
    tree = _build(_scan(text, path), path)
    out: list[str] = []
    _run(tree, _Evaluator(env), out, path)
    return "".join(out)
