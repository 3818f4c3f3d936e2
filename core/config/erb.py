"""ERB pre-processing of configuration files, the way Kamal renders them (``ERB.new(text, trim_mode: "-")``).

Kamal evaluates arbitrary Ruby inside ``<% %>`` tags. We never run Ruby: this module scans the template
with the same rules as Ruby's ERB (``ExplicitScanner``), turns it into one small program as ERB's compiler
does (text and ``<%= %>`` become output statements, so an ``if`` or ``begin`` may span several tags), and
interprets a closed subset of Ruby (listed in docs/configuration.md, "ERB"; the values and methods live in
:mod:`kamalpy.config.erb_ruby`). Anything else is a ``ConfigurationError`` naming the file and line, so a
template is never rendered differently from Kamal without saying so. One exception: an output tag on a
YAML comment line whose code is outside the subset renders nothing, since Kamal's output there is a comment.
Nesting (parentheses, blocks, interpolation) is bounded by ``MAX_DEPTH``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from kamalpy.config.erb_ruby import (
    CONSTANT_METHODS,
    FUNCTIONS,
    VALUE_METHODS,
    RubyError,
    Runtime,
    Unsupported,
    no_method,
    rescues,
    to_s,
    truthy,
)
from kamalpy.errors import ConfigurationError

__all__ = ["MAX_DEPTH", "render"]

MAX_DEPTH = 32  # nested parentheses, brackets, blocks and interpolations; real templates use a handful

# Ruby ERB's scanner for trim_mode "-" (erb/compiler.rb, ExplicitScanner). Outside a tag only these start
# tokens exist; `^[ \t]*<%-` eats the indentation before `<%-`. Inside a tag only these end tokens exist.
_STAG = r"(?m)^[ \t]*<%-|<%-|<%%|<%=|<%#|<%"
_ETAG = r"-%>|%%>|%>"
_NEWLINE_AFTER_TRIM = r"\r?\n"
_YAML_COMMENT = r"(?m)^[ \t]*#|[ \t]#"  # searched from a line's start
_YAML_COMMENT_INSIDE = r"[ \t]#"  # searched in the text between two tags on one line


@functools.cache
def _rx(pattern: str) -> re.Pattern[str]:
    """Compiled on first use: most files have no ERB, and start-up time matters."""
    return re.compile(pattern)


class _TooDeep(Exception):
    """Nesting beyond MAX_DEPTH."""


class _Tag:
    """One ``<% %>`` / ``<%= %>`` tag: its code, the line it starts on, whether it sits in a YAML comment."""

    __slots__ = ("code", "line", "in_comment")

    def __init__(self, code: str, line: int, in_comment: bool) -> None:
        self.code, self.line, self.in_comment = code, line, in_comment


# ---------------------------------------------------------------------------------------------------------
# Template scanning


def _scan(text: str, path: str) -> list[tuple]:
    """Split the template into ("text", s) / ("expr", tag) / ("stmt", tag) items."""
    items: list[tuple] = []
    pos, size = 0, len(text)
    line, counted = 1, 0  # line numbers and YAML comments are tracked incrementally: linear in the text
    in_comment = False
    while pos < size:
        match = _rx(_STAG).search(text, pos)
        if match is None:
            items.append(("text", text[pos:]))
            break
        if match.start() > pos:
            items.append(("text", text[pos : match.start()]))
        line_break = text.rfind("\n", pos, match.start())
        if line_break >= 0 or pos == 0:
            in_comment = bool(_rx(_YAML_COMMENT).search(text, line_break + 1, match.start()))
        elif not in_comment:
            in_comment = bool(_rx(_YAML_COMMENT_INSIDE).search(text, pos, match.start()))
        token = match.group()
        if token == "<%%":  # literal "<%"
            items.append(("text", "<%"))
            pos = match.end()
            continue
        line += text.count("\n", counted, match.end())
        counted = match.end()
        kind = {"<%=": "expr", "<%#": "comment"}.get(token.strip(), "stmt")  # "<%", "<%-": statements
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
        if text.find("\n", match.end(), cursor) >= 0:
            in_comment = False  # a tag spanning lines: the text after it starts mid-line, not in a comment
        pos = cursor
        if kind != "comment":
            items.append((kind, _Tag("".join(code), line, in_comment)))
    return items


# ---------------------------------------------------------------------------------------------------------
# Tokens: (kind, value, tag index). Kinds: text out outend nl lit dstr sh words sym bpass ident op

_TOKEN = r"""(?x)
      (?P<ws>[ \t\r\f\v]+|\\\r?\n)
    | (?P<comment>\#[^\n]*)
    | (?P<nl>[\n;])
    | (?P<num>\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][-+]?\d+)?)
    | (?P<ident>[A-Za-z_]\w*(?:[?!](?!=))?)
    | (?P<bpass>&:[A-Za-z_]\w*[?!]?)
    | (?P<sym>:[A-Za-z_]\w*[?!]?)
    | (?P<op>\|\|=|&&=|::|==|!=|=>|&&|\|\||&\.|[-+()\[\],.?:{}=|!])
"""

_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "s": " ", "e": "\x1b", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v"}


def _delimited(code: str, start: int) -> tuple[str, int]:
    """The body of a %-literal whose delimiter is code[start] (nesting pairs), and the index after it."""
    if start >= len(code):
        raise Unsupported("unterminated literal")
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
    raise Unsupported("unterminated literal")


class _Lexer:
    def __init__(self, tag: int) -> None:
        self.tag = tag

    def tokens(self, code: str, pos: int = 0, depth: int = 0, until_brace: bool = False) -> tuple[list, int]:
        """Tokens of ``code`` from ``pos``; with ``until_brace``, up to the ``}`` closing an interpolation."""
        if depth > MAX_DEPTH:
            raise _TooDeep
        out: list[tuple] = []
        braces = level = 0
        while pos < len(code):
            char = code[pos]
            if char in "\"`":
                parts, pos = self.interpolated(code, pos + 1, char, depth)
                out.append(("dstr" if char == '"' else "sh", parts, self.tag))
                continue
            if char == "'":
                body, pos = self.single(code, pos + 1, "'")
                out.append(("lit", body, self.tag))
                continue
            if char == "%" and pos + 1 < len(code):
                kind = code[pos + 1]
                if kind in "wWxqQ" and pos + 2 < len(code) and not code[pos + 2].isalnum() \
                        and not code[pos + 2].isspace():
                    body, pos = _delimited(code, pos + 2)
                    if kind in "wW":
                        out.append(("words", body.split(), self.tag))
                    elif kind == "q":
                        out.append(("lit", re.sub(r"\\([\\'])", r"\1", body), self.tag))
                    else:
                        parts, _ = self.interpolated(body + "\0", 0, "\0", depth)
                        out.append(("sh" if kind == "x" else "dstr", parts, self.tag))
                    continue
            match = _rx(_TOKEN).match(code, pos)
            if match is None:
                raise Unsupported(code[pos:])
            kind, text = match.lastgroup, match.group()
            pos = match.end()
            if kind in ("ws", "comment"):
                continue
            if kind == "num":
                clean = text.replace("_", "")
                value: Any = float(clean) if ("." in clean or "e" in clean.lower()) else int(clean)
                out.append(("lit", value, self.tag))
            elif kind == "bpass":
                out.append(("bpass", text[2:], self.tag))
            elif kind == "sym":
                out.append(("sym", text[1:], self.tag))
            elif kind == "nl":
                out.append(("nl", None, self.tag))
            else:
                if text in ("(", "[", "{"):
                    level += 1
                    if level + depth > MAX_DEPTH:  # fail before building a huge token list
                        raise _TooDeep
                elif text in (")", "]", "}"):
                    level -= 1
                if until_brace and text == "{":
                    braces += 1
                elif until_brace and text == "}":
                    if braces == 0:
                        return out, pos
                    braces -= 1
                out.append((kind, text, self.tag))
        if until_brace:
            raise Unsupported("unterminated interpolation")
        return out, pos

    def single(self, code: str, pos: int, close: str) -> tuple[str, int]:
        chars: list[str] = []
        while pos < len(code):
            char = code[pos]
            if char == "\\" and pos + 1 < len(code) and code[pos + 1] in ("\\", close):
                chars.append(code[pos + 1])
                pos += 2
                continue
            if char == close:
                return "".join(chars), pos + 1
            chars.append(char)
            pos += 1
        raise Unsupported("unterminated string")

    def interpolated(self, code: str, pos: int, close: str, depth: int) -> tuple[list, int]:
        """A double-quoted body: a list of str and token lists (the code of each ``#{}``)."""
        parts: list[Any] = []
        chars: list[str] = []
        while pos < len(code):
            char = code[pos]
            if char == "\\" and pos + 1 < len(code):
                escape = code[pos + 1]
                unicode = re.match(r"u(?:\{([0-9a-fA-F]{1,6})\}|([0-9a-fA-F]{4}))", code[pos + 1 : pos + 10])
                if unicode:
                    chars.append(chr(int(unicode.group(1) or unicode.group(2), 16)))
                    pos += 1 + unicode.end()
                    continue
                chars.append(_ESCAPES.get(escape, escape))
                pos += 2
                continue
            if char == close:
                if chars:
                    parts.append("".join(chars))
                return parts, pos + 1
            if char == "#" and code.startswith("{", pos + 1):
                if chars:
                    parts.append("".join(chars))
                    chars = []
                tokens, pos = self.tokens(code, pos + 2, depth + 1, until_brace=True)
                parts.append(tokens)
                continue
            if char == "#" and pos + 1 < len(code) and code[pos + 1] in "@$":
                raise Unsupported("interpolation of a variable")
            chars.append(char)
            pos += 1
        raise Unsupported("unterminated string")


def _program_tokens(items: list[tuple], tags: list[_Tag]) -> list[tuple]:
    """The whole template as one token stream; each tag ends a statement, as in ERB's compiled code."""
    tokens: list[tuple] = []
    for item in items:
        if item[0] == "text":
            tokens.append(("text", item[1], len(tags) - 1))
            continue
        tag: _Tag = item[1]
        tags.append(tag)
        index = len(tags) - 1
        try:
            code_tokens, _ = _Lexer(index).tokens(tag.code)
        except Unsupported:
            if item[0] == "expr" and tag.in_comment:
                continue  # unreadable code in a YAML comment: its output would be comment text
            raise _TagError(index) from None
        if item[0] == "expr":
            tokens += [("out", None, index), *code_tokens, ("outend", None, index)]
        else:
            tokens += [*code_tokens, ("nl", None, index)]
    return tokens


class _TagError(Exception):
    """Unsupported code in the tag with this index."""

    def __init__(self, tag: int) -> None:
        self.tag = tag


# ---------------------------------------------------------------------------------------------------------
# Parser: statements and expressions (Ruby's precedence, lowest first:
# modifiers, `rescue` modifier, ?:, ||, &&, !, == !=, + -, unary minus, .method [] postfix, primary)

_BLOCK_END = {"end", "else", "elsif", "rescue", "ensure"}
_LOOPS = {"each": 1, "each_with_index": 2}  # loop methods taking a do...end block: their parameters
_EXPR_START = {"lit", "dstr", "sh", "words", "sym", "ident"}


class _Parser:
    def __init__(self, tokens: list[tuple], tags: list[_Tag]) -> None:
        self.tokens = tokens
        self.tags = tags
        self.pos = 0
        self.depth = 0
        self.locals: set[str] = set()

    # -- token helpers
    def peek(self, kind: str | None = None, value: Any = None, ahead: int = 0) -> bool:
        index = self.pos + ahead
        if index >= len(self.tokens):
            return False
        tok = self.tokens[index]
        return (kind is None or tok[0] == kind) and (value is None or tok[1] == value)

    def take(self, kind: str, value: Any = None) -> Any:
        if not self.peek(kind, value):
            raise Unsupported("unexpected token")
        self.pos += 1
        return self.tokens[self.pos - 1][1]

    def accept(self, kind: str, value: Any = None) -> bool:
        if self.peek(kind, value):
            self.pos += 1
            return True
        return False

    def skip_nl(self) -> None:
        while self.peek("nl"):
            self.pos += 1

    def tag(self) -> int:
        return self.tokens[min(self.pos, len(self.tokens) - 1)][2]

    def keyword(self) -> str | None:
        return self.tokens[self.pos][1] if self.peek("ident") and self.tokens[self.pos][1] in _BLOCK_END else None

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooDeep

    # -- statements
    def program(self) -> list:
        body = self.statements()
        if self.pos < len(self.tokens):
            raise _Structure(self.tag(), f"unexpected <% {self.keyword()} %> without <% if %>")
        return body

    def statements(self) -> list:
        body: list = []
        while self.pos < len(self.tokens):
            if self.peek("nl"):
                self.pos += 1
            elif self.peek("text"):
                body.append(("text", self.take("text")))
            elif self.keyword():
                break
            elif self.peek("out"):
                body.append(self.output())
            else:
                body.append(self.statement())
                if self.pos < len(self.tokens) and not (self.peek("nl") or self.peek("text") or self.peek("out")):
                    raise Unsupported("trailing code")
        return body

    def output(self) -> tuple:
        start = self.pos
        tag = self.tag()
        self.pos += 1
        try:
            node = ("out", self.expression(), tag)
            self.skip_nl()
            self.take("outend")
            return node
        except Unsupported:
            if not self.tags[tag].in_comment:
                raise
        # Outside the subset, in a YAML comment: Kamal's output would be comment text; render nothing.
        self.pos = start
        while not self.peek("outend"):
            self.pos += 1
        self.pos += 1
        self.depth = 0
        return ("text", "")

    def statement(self) -> tuple:
        tag = self.tag()
        if self.peek("ident", "if") or self.peek("ident", "unless"):
            stmt = self.if_block()
        elif self.peek("ident", "begin"):
            stmt = self.begin_block()
        else:
            stmt = self.simple()
        while self.peek("ident", "if") or self.peek("ident", "unless") or self.peek("ident", "rescue"):
            word = self.take("ident")
            if word == "rescue":
                stmt = ("begin", [stmt], [((), None, [("expr", self.expression(), tag)])], [], [], tag)
            else:
                stmt = ("if", [(self.expression(), word == "unless", [stmt], tag)])
        return stmt

    def simple(self) -> tuple:
        tag = self.tag()
        if self.peek("ident") and self.peek("op", None, 1) and self.tokens[self.pos + 1][1] in ("=", "||=") \
                and (self.tokens[self.pos][1][0].islower() or self.tokens[self.pos][1][0] == "_"):
            name = self.take("ident")
            operator = self.take("op")
            self.skip_nl()
            self.locals.add(name)
            return ("assign", ("var", name), operator, self.rescue_modifier(), tag)
        node = self.expression()
        if self.peek("op", "=") or self.peek("op", "||="):
            if node[0] != "index" or node[1] != ("const", "ENV"):
                raise Unsupported("assignment")
            operator = self.take("op")
            self.skip_nl()
            return ("assign", ("envset", node[2][0]), operator, self.rescue_modifier(), tag)
        return node if node[0] == "loop" else ("expr", node, tag)

    def rescue_modifier(self) -> tuple:
        node = self.expression()
        if self.accept("ident", "rescue"):
            return ("rescue", node, self.expression())
        return node

    def if_block(self) -> tuple:
        tag = self.tag()
        word = self.take("ident")
        self.enter()
        branches: list = []
        cond = self.expression()
        self.accept("ident", "then")
        branches.append((cond, word == "unless", self.statements(), tag))
        has_else = False
        while True:
            keyword = self.keyword()
            branch_tag = self.tag()
            if keyword is None:
                raise _Structure(tag, f"missing <% end %> for this <% {word} %>")
            self.pos += 1
            if keyword == "end":
                break
            if has_else or keyword not in ("else", "elsif") or (keyword == "elsif" and word == "unless"):
                raise _Structure(branch_tag, f"unexpected <% {keyword} %>")
            if keyword == "else":
                has_else = True
                branches.append((None, False, self.statements(), branch_tag))
            else:
                cond = self.expression()
                self.accept("ident", "then")
                branches.append((cond, False, self.statements(), branch_tag))
        self.depth -= 1
        return ("if", branches)

    def begin_block(self) -> tuple:
        tag = self.tag()
        self.take("ident", "begin")
        self.enter()
        body = self.statements()
        handlers: list = []
        else_body: list = []
        ensure_body: list = []
        while True:
            keyword = self.keyword()
            if keyword is None:
                raise _Structure(tag, "missing <% end %> for this <% begin %>")
            self.pos += 1
            if keyword == "end":
                break
            if keyword == "rescue" and not else_body and not ensure_body:
                classes: list[str] = []
                while self.peek("ident") and self.tokens[self.pos][1][0].isupper():
                    name = self.take("ident")
                    while self.accept("op", "::"):
                        name += "::" + self.take("ident")
                    classes.append(name)
                    if not self.accept("op", ","):
                        break
                variable = None
                if self.accept("op", "=>"):
                    variable = self.take("ident")
                    self.locals.add(variable)
                self.accept("ident", "then")
                handlers.append((tuple(classes), variable, self.statements()))
            elif keyword == "else" and handlers and not else_body:
                else_body = self.statements() or [("text", "")]
            elif keyword == "ensure" and not ensure_body:
                ensure_body = self.statements() or [("text", "")]
            else:
                raise _Structure(self.tokens[self.pos - 1][2], f"unexpected <% {keyword} %>")
        self.depth -= 1
        return ("begin", body, handlers, else_body, ensure_body, tag)

    # -- expressions
    def expression(self) -> tuple:
        self.enter()
        try:
            return self.ternary()
        finally:
            self.depth -= 1

    def ternary(self) -> tuple:
        cond = self.logical_or()
        if self.accept("op", "?"):
            self.skip_nl()
            then = self.expression()
            self.skip_nl()
            self.take("op", ":")
            self.skip_nl()
            return ("cond", cond, then, self.expression())
        return cond

    def _chain(self, name: str, operator: str, operand: Any) -> tuple:
        terms = [operand()]
        while self.accept("op", operator):
            self.skip_nl()
            terms.append(operand())
        return terms[0] if len(terms) == 1 else (name, terms)

    def logical_or(self) -> tuple:
        return self._chain("or", "||", self.logical_and)

    def logical_and(self) -> tuple:
        return self._chain("and", "&&", self.negation)

    def negation(self) -> tuple:
        if self.accept("op", "!"):
            self.enter()
            node = ("not", self.negation())
            self.depth -= 1
            return node
        return self.equality()

    def equality(self) -> tuple:
        node = self.additive()
        if self.peek("op", "==") or self.peek("op", "!="):
            op = self.take("op")
            self.skip_nl()
            node = ("eq" if op == "==" else "ne", node, self.additive())
        return node

    def additive(self) -> tuple:
        terms: list = [self.unary()]
        operators: list[str] = []
        while self.peek("op", "+") or self.peek("op", "-"):
            operators.append(self.take("op"))
            self.skip_nl()
            terms.append(self.unary())
        return terms[0] if not operators else ("arith", terms, operators)

    def unary(self) -> tuple:
        if self.peek("op", "-") and self.peek("lit", None, 1) \
                and isinstance(self.tokens[self.pos + 1][1], (int, float)):
            self.pos += 2
            return self.postfix(("lit", -self.tokens[self.pos - 1][1]))
        if self.peek("op", "!"):
            return self.negation()
        return self.postfix(self.primary())

    def postfix(self, node: tuple) -> tuple:
        length = 0
        while True:
            safe = False
            if self.peek("op", ".") or self.peek("op", "&."):
                safe = self.take("op") == "&."
            elif self.peek("nl") and self.leading_dot():
                self.skip_nl()
                safe = self.take("op") == "&."
            elif self.peek("op", "[") and node[0] not in ("lit",):
                self.pos += 1
                args = self.arguments("]")
                node = ("index", node, args)
                length += 1
                self.check_chain(length)
                continue
            else:
                return node
            self.skip_nl()
            name = self.take("ident")
            node = self.call(node, name, safe)
            length += 1
            self.check_chain(length)

    def check_chain(self, length: int) -> None:
        if self.depth + length > MAX_DEPTH:
            raise _TooDeep

    def leading_dot(self) -> bool:
        index = self.pos
        while index < len(self.tokens) and self.tokens[index][0] == "nl":
            index += 1
        return index < len(self.tokens) and self.tokens[index][0] == "op" and self.tokens[index][1] in (".", "&.")

    def call(self, receiver: tuple | None, name: str, safe: bool) -> tuple:
        """A method call after its name: arguments (with or without parentheses) and a block."""
        if receiver is not None and receiver[0] == "const":
            if name not in CONSTANT_METHODS[receiver[1]]:
                raise Unsupported(f"{receiver[1]}.{name}")
        elif receiver is None:
            if name not in FUNCTIONS:
                raise Unsupported(name)
        elif name in _LOOPS and self.peek("ident", "do"):
            return self.loop(receiver, name)
        elif name not in VALUE_METHODS:
            raise Unsupported(f"method {name}")
        args: list = []
        if self.accept("op", "("):
            args = self.arguments(")")
        elif self.starts_command_argument():
            args = [self.expression()]
            while self.accept("op", ","):
                self.skip_nl()
                args.append(self.expression())
        block = None
        if self.peek("bpass") and not args:
            block = ("bpass", self.take("bpass"))
        elif args and args[-1][0] == "bpass":
            block = args.pop()
        elif self.peek("op", "{"):
            block = self.block()
        if name == "require" and receiver is None and args not in ([("lit", "dotenv")], [("lit", "dotenv/load")]):
            raise Unsupported("require")  # only dotenv is known; other libraries would need their Ruby
        return ("call", receiver, name, args, block, safe)

    def loop(self, receiver: tuple, name: str) -> tuple:
        """``list.each do |x| ... end`` (also ``each_with_index``): a statement whose body may hold text."""
        tag = self.tag()
        self.take("ident", "do")
        self.enter()
        params: list[str] = []
        if self.accept("op", "|"):
            params.append(self.take("ident"))
            while self.accept("op", ","):
                params.append(self.take("ident"))
            self.take("op", "|")
        if len(params) > _LOOPS[name]:
            raise Unsupported("block parameters")
        added = [param for param in params if param not in self.locals]
        self.locals.update(params)
        body = self.statements()
        if not self.accept("ident", "end"):
            raise _Structure(tag, f"missing <% end %> for this <% {name} do %>")
        self.locals.difference_update(added)
        self.depth -= 1
        return ("loop", receiver, name, params, body, tag)

    def starts_command_argument(self) -> bool:
        """``File.read "x"``, ``Dotenv.load ".env"``: a call's first argument without parentheses."""
        return any(self.peek(kind) for kind in ("lit", "dstr", "sh", "words", "sym")) or (
            self.peek("ident") and self.tokens[self.pos][1] not in ("if", "unless", "rescue", "then", "and", "or",
                                                                      "do", "end")
        )

    def arguments(self, closer: str) -> list:
        self.enter()
        args: list = []
        self.skip_nl()
        while not self.accept("op", closer):
            if args:
                self.take("op", ",")
                self.skip_nl()
            if self.peek("bpass"):
                args.append(("bpass", self.take("bpass")))
            else:
                args.append(self.expression())
            self.skip_nl()
        self.depth -= 1
        return args

    def block(self) -> tuple:
        self.take("op", "{")
        self.enter()
        param = None
        if self.accept("op", "|"):
            param = self.take("ident")
            self.take("op", "|")
        added = param is not None and param not in self.locals
        if param:
            self.locals.add(param)
        body = self.expression()
        if added:
            self.locals.discard(param)
        self.take("op", "}")
        self.depth -= 1
        return ("block", param, body)

    def primary(self) -> tuple:
        if self.peek("lit"):
            return ("lit", self.take("lit"))
        if self.peek("dstr") or self.peek("sh"):
            kind = self.tokens[self.pos][0]
            parts = self.take(kind)
            if kind == "dstr" and all(isinstance(part, str) for part in parts):
                return ("lit", "".join(parts))
            node = ("interp", [self.interpolation(part) for part in parts])
            return ("sh", node) if kind == "sh" else node
        if self.peek("words"):
            return ("array", [("lit", word) for word in self.take("words")])
        if self.peek("sym"):
            return ("lit", self.take("sym"))  # symbols only reach `to_s`-like uses: their name
        if self.accept("op", "("):
            self.skip_nl()
            node = self.expression()
            self.skip_nl()
            self.take("op", ")")
            return node
        if self.accept("op", "["):
            return ("array", self.arguments("]"))
        name = self.take("ident")
        if name in ("nil", "true", "false"):
            return ("lit", {"nil": None, "true": True, "false": False}[name])
        if name in self.locals:
            return ("var", name)
        if name in CONSTANT_METHODS:
            return ("const", name)
        return self.call(None, name, False)

    def interpolation(self, part: Any) -> tuple:
        if isinstance(part, str):
            return ("lit", part)
        inner = _Parser(part, self.tags)
        inner.locals = self.locals
        inner.depth = self.depth + 1
        if inner.depth > MAX_DEPTH:
            raise _TooDeep
        node = inner.expression() if part else ("lit", "")
        inner.skip_nl()
        if inner.pos != len(part):
            raise Unsupported("trailing code")
        return node


class _Structure(Exception):
    """A block keyword out of place: the message and the tag it is in."""

    def __init__(self, tag: int, message: str) -> None:
        super().__init__(message)
        self.tag = tag


def _show(code: str) -> str:
    text = " ".join(code.split())
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------------------
# Running the program


class _Interpreter:
    def __init__(self, runtime: Runtime, tags: list[_Tag]) -> None:
        self.runtime = runtime
        self.tags = tags
        self.out: list[str] = []

    def run(self, body: list) -> None:
        for stmt in body:
            self.statement(stmt)

    def statement(self, stmt: tuple) -> None:
        kind = stmt[0]
        if kind == "text":
            self.out.append(stmt[1])
        elif kind == "out":
            try:
                self.out.append(to_s(self.value(stmt[1], stmt[2])))
            except _TagError:
                if not self.tags[stmt[2]].in_comment:
                    raise
        elif kind == "expr":
            self.value(stmt[1], stmt[2])
        elif kind == "assign":
            _, target, operator, value, tag = stmt
            if target[0] == "var":
                if operator == "||=" and truthy(self.runtime.locals.get(target[1])):
                    return
                self.runtime.locals[target[1]] = self.value(value, tag)
            else:
                self.value(("setenv", target[1], value, operator == "||="), tag)
        elif kind == "if":
            for cond, negated, body, tag in stmt[1]:
                if cond is None or truthy(self.value(cond, tag)) != negated:
                    self.run(body)
                    break
        elif kind == "begin":
            self.begin(stmt)
        elif kind == "loop":
            self.loop(stmt)
        else:  # pragma: no cover
            raise AssertionError(kind)

    def value(self, node: tuple, tag: int) -> Any:
        try:
            return self.runtime.eval(node)
        except RubyError as error:
            if error.tag is None:
                error.tag = tag
            raise
        except (Unsupported, TypeError, ValueError, LookupError, AttributeError, OverflowError):
            # Python's errors here mean a value the subset does not model (e.g. a list as a hash key).
            raise _TagError(tag) from None

    def loop(self, stmt: tuple) -> None:
        _, receiver, name, params, body, tag = stmt
        items = self.value(receiver, tag)
        if not isinstance(items, list):
            error = no_method(name, items)
            error.tag = tag
            raise error
        for index, item in enumerate(items):
            for param, value in zip(params, (item, index), strict=False):  # 1 or 2 parameters
                self.runtime.locals[param] = value
            self.run(body)

    def begin(self, stmt: tuple) -> None:
        _, body, handlers, else_body, ensure_body, _tag = stmt
        try:
            try:
                self.run(body)
            except RubyError as error:
                for classes, variable, handler in handlers:
                    if rescues(classes, error):
                        if variable:
                            self.runtime.locals[variable] = error
                        self.run(handler)
                        break
                else:
                    raise
            else:
                self.run(else_body)
        finally:
            self.run(ensure_body)


def _located(tags: list[_Tag], path: str, run: Any) -> Any:
    """Run ``run()`` and turn its failures into one-line errors naming the file and line."""
    try:
        return run()
    except _TagError as error:
        tag = tags[error.tag]
        raise ConfigurationError(f"{path}:{tag.line}: unsupported ERB: {_show(tag.code)}") from None
    except _Structure as error:
        raise ConfigurationError(f"{path}:{tags[error.tag].line}: {error}") from None
    except (_TooDeep, RecursionError):
        raise ConfigurationError(f"{path}: ERB nests too deeply (at most {MAX_DEPTH} levels of parentheses, "
                                 "blocks and interpolations)") from None


def render(text: str, path: str, env: Mapping[str, str] | None = None, *, yaml: bool = False) -> str:
    """Render the ERB in ``text`` (the content of the file ``path``, named in errors).

    ``env`` replaces ``os.environ`` for ``ENV`` (a copy: the template's changes stay in it); without it,
    ``ENV`` assignments and ``Dotenv.load`` change ``os.environ``, as they change Kamal's process.
    Shell-outs and relative paths use the current directory, like Kamal's. ``yaml``: the text is YAML,
    so an output tag on a comment line cannot fail the load with "unsupported" (see the module doc).
    """
    if "<%" not in text:
        return text
    items = _scan(text, path)
    if not yaml:
        items = [item if item[0] == "text" else (item[0], _Tag(item[1].code, item[1].line, False))
                 for item in items]
    tags: list[_Tag] = []
    tokens = _located(tags, path, lambda: _program_tokens(items, tags))
    parser = _Parser(tokens, tags)

    def parse() -> list:
        try:
            return parser.program()
        except Unsupported:
            raise _TagError(parser.tag()) from None

    program = _located(tags, path, parse)
    interpreter = _Interpreter(Runtime(env), tags)

    def run() -> None:
        try:
            interpreter.run(program)
        except RubyError as error:
            raise ConfigurationError(f"{path}:{tags[error.tag or 0].line}: {error.message}") from None

    _located(tags, path, run)
    return "".join(interpreter.out)
