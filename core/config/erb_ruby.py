"""The Ruby values, methods and library calls that kamalpy's ERB understands (see :mod:`kamalpy.config.erb`).

Values are Python ones: ``nil`` is None, strings, integers, floats, true/false, arrays are lists and the
hashes of ``Dotenv.parse`` are dicts. Each method follows Ruby's (and ActiveSupport's) behaviour, and a
failure Ruby would raise is a :class:`RubyError` with Ruby's class and message, so ``rescue`` picks the same
ones. A construct outside the subset found while running (a method on a value it does not apply to in the
subset) is :class:`Unsupported`.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

MAX_FILE_BYTES = 10 * 1024 * 1024  # File.read / Dotenv: configuration-sized files only


class Unsupported(Exception):
    """Code outside the supported ERB subset."""


class RubyError(Exception):
    """An exception Ruby would raise: its class (``KeyError``, ``Errno::ENOENT``) and message."""

    def __init__(self, message: str, cls: str = "StandardError") -> None:
        super().__init__(message)
        self.message = message
        self.cls = cls
        self.tag: int | None = None  # the ERB tag it was raised in, set by the interpreter


# Ruby's exception hierarchy, as far as `rescue` needs it (LoadError is not a StandardError).
_PARENTS = {"KeyError": "IndexError", "IndexError": "StandardError", "NoMethodError": "NameError",
            "NameError": "StandardError", "TypeError": "StandardError", "ArgumentError": "StandardError",
            "SystemCallError": "StandardError", "LoadError": "ScriptError", "ScriptError": "Exception",
            "StandardError": "Exception"}


def rescues(classes: tuple[str, ...], error: RubyError) -> bool:
    """Whether ``rescue classes`` (empty: StandardError) catches ``error``."""
    wanted = set(classes or ("StandardError",))
    cls: str | None = error.cls
    while cls is not None:
        if cls in wanted:
            return True
        cls = "SystemCallError" if cls.startswith("Errno::") else _PARENTS.get(cls)
    return False


def truthy(value: Any) -> bool:
    return value is not None and value is not False


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):  # Python's True == 1; Ruby's true != 1
        return type(left) is type(right) and left == right
    return bool(left == right)


def to_s(value: Any) -> str:
    """Ruby's ``to_s`` (what ``<%= %>`` and ``#{}`` print)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return inspect(value)
    if isinstance(value, RubyError):
        return value.message
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


def inspect(value: Any) -> str:
    """Ruby 3.3's ``inspect`` (Kamal 2.11 runs on Ruby 3.3: hashes print as ``{"a"=>"1"}``)."""
    if isinstance(value, str):
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
                   .replace("\r", "\\r").replace("\x1b", "\\e").replace("#{", "\\#{"))
        return f'"{escaped}"'
    if value is None:
        return "nil"
    if isinstance(value, list):
        return "[" + ", ".join(inspect(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{inspect(k)}=>{inspect(v)}" for k, v in value.items()) + "}"
    return to_s(value)


def _class_name(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    return {int: "Integer", float: "Float", str: "String", list: "Array", dict: "Hash"}.get(type(value), "Object")


def no_method(name: str, value: Any) -> RubyError:
    kind = _class_name(value)
    where = kind if kind in ("nil", "true", "false") else f"an instance of {kind}"
    return RubyError(f"undefined method '{name}' for {where}", "NoMethodError")


def _string(value: Any) -> str:
    """An argument Ruby converts implicitly to a String (paths, ENV keys)."""
    if not isinstance(value, str):
        raise RubyError(f"no implicit conversion of {_class_name(value)} into String", "TypeError")
    return value


def _blank(value: Any) -> bool:
    if value is None or value is False:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict)):
        return not value
    return False


def ruby_to_i(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    match = re.match(r"\s*([-+]?\d+(?:_\d+)*)", value)
    return int(match.group(1).replace("_", "")) if match else 0


def _split(text: str, sep: Any = None) -> list[str]:
    if sep is None or sep == " ":
        return text.split()  # awk-style: runs of whitespace, no empty fields at either end
    parts = text.split(_string(sep)) if sep != "" else list(text)
    while parts and parts[-1] == "":  # Ruby drops trailing empty fields
        parts.pop()
    return parts


def _chomp(text: str, suffix: Any = None) -> str:
    if suffix is not None:
        return text[: -len(suffix)] if suffix and text.endswith(_string(suffix)) else text
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith(("\n", "\r")) else text


def _index(value: Any, args: list) -> Any:
    if len(args) != 1:
        raise Unsupported("index")
    key = args[0]
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, (list, str)) and isinstance(key, int) and not isinstance(key, bool):
        return value[key] if -len(value) <= key < len(value) else None
    if isinstance(value, (list, str)):
        raise RubyError(f"no implicit conversion of {_class_name(key)} into Integer", "TypeError")
    raise no_method("[]", value)


def _to_json(value: Any) -> str:
    """ActiveSupport's ``to_json``: compact, with ``<``, ``>`` and ``&`` escaped."""
    import json

    if isinstance(value, RubyError) or (isinstance(value, dict) and not all(isinstance(k, str) for k in value)):
        raise Unsupported("to_json")
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _replace(text: str, pattern: Any, replacement: Any, count: int) -> str:
    """``gsub``/``sub`` with a string pattern and a plain replacement (no ``\\1`` back-references)."""
    pattern, replacement = _string(pattern), _string(replacement)
    if "\\" in replacement:
        raise Unsupported("back-references")
    return text.replace(pattern, replacement, count)


def _tr(text: str, source: Any, target: Any) -> str:
    """``tr`` with plain character lists (ranges and ``^`` negation are outside the subset)."""
    source, target = _string(source), _string(target)
    if source.startswith("^") or "-" in source[1:-1] or "-" in target[1:-1] or "\\" in source + target:
        raise Unsupported("tr ranges")
    if not target:
        return "".join(char for char in text if char not in source)
    target = target + target[-1] * max(0, len(source) - len(target))
    table = {ord(char): target[index] for index, char in reversed(list(enumerate(source)))}
    return text.translate(table)


def integer(value: Any) -> int:
    """Kernel#Integer for strings and numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float):
        return int(value)
    if value is None:
        raise RubyError("can't convert nil into Integer", "TypeError")
    text = _string(value)
    match = re.fullmatch(r"\s*([-+]?)(0x[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*|\d+(?:_\d+)*)\s*", text)
    if match is None:
        raise RubyError(f"invalid value for Integer(): {inspect(text)}", "ArgumentError")
    digits = match.group(2).replace("_", "")
    number = int(digits, 16) if digits.startswith("0x") else int(digits, 8) if len(digits) > 1 and \
        digits.startswith("0") else int(digits)
    return -number if match.group(1) == "-" else number


_RUBY_SPACE = " \t\n\v\f\r\0"
# name: (types it applies to, implementation(value, *args)); methods taking a block are in _BLOCK_METHODS.
_METHODS: dict[str, tuple[tuple[type, ...], Callable[..., Any]]] = {
    "strip": ((str,), lambda s: s.strip(_RUBY_SPACE)),
    "lstrip": ((str,), lambda s: s.lstrip(_RUBY_SPACE)),
    "rstrip": ((str,), lambda s: s.rstrip(_RUBY_SPACE)),
    "chomp": ((str,), _chomp),
    "downcase": ((str,), str.lower),
    "upcase": ((str,), str.upper),
    "split": ((str,), _split),
    "start_with?": ((str,), lambda s, *p: any(s.startswith(_string(x)) for x in p)),
    "end_with?": ((str,), lambda s, *p: any(s.endswith(_string(x)) for x in p)),
    "include?": ((str, list), lambda s, x: (_string(x) in s) if isinstance(s, str) else any(_equal(i, x) for i in s)),
    "empty?": ((str, list, dict), lambda v: not v),
    "length": ((str, list, dict), len),
    "size": ((str, list, dict), len),
    "first": ((list,), lambda v: v[0] if v else None),
    "last": ((list,), lambda v: v[-1] if v else None),
    "join": ((list,), lambda v, sep="": _string(sep).join(to_s(i) for i in v)),
    "compact": ((list,), lambda v: [i for i in v if i is not None]),
    "uniq": ((list,), lambda v: [i for n, i in enumerate(v) if not any(_equal(i, j) for j in v[:n])]),
    "to_a": ((list,), list),
    "keys": ((dict,), lambda v: list(v)),
    "values": ((dict,), lambda v: list(v.values())),
    "key?": ((dict,), lambda v, k: k in v),
    "has_key?": ((dict,), lambda v, k: k in v),
    "to_h": ((dict,), dict),
    "to_s": ((object,), to_s),
    "inspect": ((object,), inspect),
    "to_i": ((str, int, float, type(None)), ruby_to_i),
    "nil?": ((object,), lambda v: v is None),
    "zero?": ((int, float), lambda v: v == 0),
    "blank?": ((object,), _blank),
    "present?": ((object,), lambda v: not _blank(v)),
    "presence": ((object,), lambda v: None if _blank(v) else v),
    "message": ((RubyError,), lambda e: e.message),
    "to_json": ((object,), _to_json),
    "gsub": ((str,), lambda s, p, r: _replace(s, p, r, -1)),
    "sub": ((str,), lambda s, p, r: _replace(s, p, r, 1)),
    "tr": ((str,), _tr),
}
_BLOCK_METHODS = {"map", "collect", "select", "filter", "reject", "fetch"}
VALUE_METHODS = set(_METHODS) | _BLOCK_METHODS

_FILE_METHODS = {"read", "exist?", "file?", "directory?", "expand_path", "join", "basename", "dirname"}
CONSTANT_METHODS: dict[str, set[str]] = {
    "ENV": {"fetch", "key?", "has_key?", "include?", "member?"},
    "File": _FILE_METHODS,
    "Dotenv": {"load", "load!", "overload", "parse"},
    "Dir": {"pwd"},
}
FUNCTIONS = {"require", "__dir__", "Integer"}

# Ruby runs a backtick command through /bin/sh only when it needs a shell; otherwise it execs the program
# directly, so a missing program is an error (Errno::ENOENT) rather than empty output (process.c).
_SHELL_META = set("*?{}[]<>()~&|\\$;'`\"\n#")
_SHELL_WORDS = {"!", ".", ":", "break", "case", "continue", "do", "done", "elif", "else", "esac", "eval", "exec",
                "exit", "export", "fi", "for", "if", "in", "readonly", "return", "set", "shift", "then", "times",
                "trap", "unset", "until", "while"}


def shell(command: str, env: Mapping[str, str]) -> str:
    """Ruby's backticks: stdout captured, stderr and stdin shared, the exit status ignored."""
    import subprocess

    words = command.split()
    if not words:
        raise RubyError("No such file or directory - ", "Errno::ENOENT")
    direct = not (_SHELL_META & set(command)) and "=" not in words[0] and words[0] not in _SHELL_WORDS
    argv = words if direct else ["/bin/sh", "-c", command]
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, env=dict(env), check=False)
    except OSError:
        raise RubyError(f"No such file or directory - {command}", "Errno::ENOENT") from None
    return proc.stdout.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------------------
# File, Dir, Dotenv


def expand_path(path: Any, base: Any = None) -> str:
    """Ruby's ``File.expand_path``: ``~``, relative to ``base`` (itself expanded) or the current directory."""
    path = _string(path)
    if path.startswith("~"):
        path = os.path.expanduser(path)
    if not path.startswith("/"):
        path = posixpath.join(expand_path(base) if base is not None else os.getcwd(), path)
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/")


def _file_join(*parts: Any) -> str:
    flat: list[str] = []
    for part in parts:
        flat.extend(_string(p) for p in (part if isinstance(part, list) else [part]))
    result = flat[0] if flat else ""
    for part in flat[1:]:
        result = result.rstrip("/") + "/" + part.lstrip("/") if result or part.startswith("/") else "/" + part
    return result


def _basename(path: Any, suffix: Any = None) -> str:
    path = _string(path)
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else ""
    name = stripped.rsplit("/", 1)[-1]
    if suffix is not None:
        suffix = _string(suffix)
        if suffix == ".*":
            stem, dot, _ = name.rpartition(".")
            name = stem if dot and stem else name
        elif name.endswith(suffix) and name != suffix:
            name = name[: -len(suffix)]
    return name


def _dirname(path: Any) -> str:
    stripped = _string(path).rstrip("/")
    if not stripped:
        return "/" if path else "."
    head = stripped.rpartition("/")[0]
    return "/" + head.lstrip("/") if stripped.startswith("/") else (head.rstrip("/") or ".")


def read_file(path: Any, missing_ok: bool = False) -> str | None:
    """``File.read``: Ruby's Errno errors; None for a missing file or a directory with ``missing_ok``."""
    name = _string(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise RubyError(f"No such file or directory @ rb_sysopen - {name}", "Errno::ENOENT") from None
    except IsADirectoryError:
        if missing_ok:
            return None
        raise RubyError(f"Is a directory @ io_fread - {name}", "Errno::EISDIR") from None
    except PermissionError:
        raise RubyError(f"Permission denied @ rb_sysopen - {name}", "Errno::EACCES") from None
    except OSError as error:
        raise RubyError(f"{error.strerror} - {name}", "SystemCallError") from None
    if len(data) > MAX_FILE_BYTES:
        raise RubyError(f"{name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB, more than kamalpy reads "
                        "in ERB", "kamalpy")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RubyError(f"{name} is not valid UTF-8", "ArgumentError") from None


class Runtime:
    """Evaluates expression nodes (built by :mod:`kamalpy.config.erb`) with Ruby's semantics."""

    def __init__(self, env: Mapping[str, str] | None) -> None:
        self.env: MutableMapping[str, str] = os.environ if env is None else dict(env)
        self.locals: dict[str, Any] = {}
        self.required: set[str] = set()

    # -- nodes
    def eval(self, node: tuple) -> Any:
        op = node[0]
        if op == "lit":
            return node[1]
        if op == "var":
            return self.locals.get(node[1])
        if op == "interp":
            return "".join(to_s(self.eval(part)) for part in node[1])
        if op == "sh":
            return shell(self.eval(node[1]), self.env)
        if op == "array":
            return [self.eval(item) for item in node[1]]
        if op == "or":
            for term in node[1]:
                value = self.eval(term)
                if truthy(value):
                    return value
            return value
        if op == "and":
            for term in node[1]:
                value = self.eval(term)
                if not truthy(value):
                    return value
            return value
        if op == "not":
            return not truthy(self.eval(node[1]))
        if op in ("eq", "ne"):
            same = _equal(self.eval(node[1]), self.eval(node[2]))
            return same if op == "eq" else not same
        if op == "cond":
            return self.eval(node[2]) if truthy(self.eval(node[1])) else self.eval(node[3])
        if op == "arith":
            return self.arith(node)
        if op == "rescue":
            try:
                return self.eval(node[1])
            except RubyError as error:
                if not rescues((), error):
                    raise
                return self.eval(node[2])
        if op == "index":
            if node[1] == ("const", "ENV"):
                if len(node[2]) != 1:
                    raise Unsupported("ENV[]")
                return self.env.get(_string(self.eval(node[2][0])))
            return _index(self.eval(node[1]), [self.eval(arg) for arg in node[2]])
        if op == "setenv":
            return self.set_env(node[1], node[2], node[3])
        if op == "call":
            return self.call(node)
        if op == "const":
            self.constant(node[1])
            raise Unsupported(node[1])
        raise Unsupported(op)  # pragma: no cover

    def arith(self, node: tuple) -> Any:
        _, terms, operators = node
        result = self.eval(terms[0])
        for operator, term in zip(operators, terms[1:], strict=True):
            value = self.eval(term)
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (result, value))
            if numbers:
                result = result + value if operator == "+" else result - value
            elif operator == "+" and isinstance(result, (str, list)) and type(value) is type(result):
                result = result + value
            elif isinstance(result, str):
                if operator == "-":
                    raise no_method("-", result)
                raise RubyError(f"no implicit conversion of {_class_name(value)} into String", "TypeError")
            elif isinstance(result, (int, float)) and not isinstance(result, bool):
                raise RubyError(f"{_class_name(value) if value is not None else 'nil'} can't be coerced into "
                                f"{_class_name(result)}", "TypeError")
            else:
                raise no_method(operator, result)
        return result

    def set_env(self, key_node: tuple, value_node: tuple, only_if_unset: bool) -> Any:
        key = _string(self.eval(key_node))
        if only_if_unset and truthy(self.env.get(key)):
            return self.env[key]
        value = self.eval(value_node)
        if value is None:
            self.env.pop(key, None)
        else:
            self.env[key] = _string(value)
        return value

    def constant(self, name: str) -> None:
        if name == "Dotenv" and "dotenv" not in self.required:
            raise RubyError("uninitialized constant Dotenv", "NameError")

    # -- calls
    def call(self, node: tuple) -> Any:
        _, receiver, name, arg_nodes, block, safe = node
        if receiver is None:
            return self.function(name, [self.eval(arg) for arg in arg_nodes])
        if receiver[0] == "const":
            self.constant(receiver[1])
            args = [self.eval(arg) for arg in arg_nodes]
            return self.constant_method(receiver[1], name, args, block)
        value = self.eval(receiver)
        if safe and value is None:
            return None
        args = [self.eval(arg) for arg in arg_nodes]
        return self.method(value, name, args, block)

    def function(self, name: str, args: list) -> Any:
        if name == "Integer" and len(args) == 1:
            return integer(args[0])
        if name == "__dir__" and not args:
            return "."  # Kamal's ERB has no file name ("(erb)"), so Ruby's __dir__ is "."
        if name == "require" and len(args) == 1:
            feature = args[0]
            first = "dotenv" not in self.required
            self.required.add("dotenv")
            if feature == "dotenv/load" and "dotenv/load" not in self.required:
                self.required.add("dotenv/load")
                self.dotenv([], overwrite=False, apply=True)
                return True
            return first
        raise Unsupported(name)

    def constant_method(self, const: str, name: str, args: list, block: tuple | None) -> Any:
        if const == "ENV":
            if name == "fetch":
                return self.fetch(self.env, args, block, lambda key: _string(key))
            if len(args) != 1:
                raise Unsupported(name)
            return _string(args[0]) in self.env
        if const == "Dir":
            return os.getcwd()
        if const == "Dotenv":
            return self.dotenv(args, overwrite=name == "overload", apply=name != "parse", strict=name == "load!")
        if name == "read" and len(args) == 1:
            return read_file(args[0])
        if name in ("exist?", "file?", "directory?") and len(args) == 1:
            test = {"exist?": os.path.exists, "file?": os.path.isfile, "directory?": os.path.isdir}[name]
            return test(_string(args[0]))
        handlers: dict[str, Callable[..., Any]] = {"expand_path": expand_path, "join": _file_join,
                                                   "basename": _basename, "dirname": _dirname}
        if name in handlers:
            try:
                return handlers[name](*args)
            except TypeError as error:  # a Python arity error: outside the subset
                raise Unsupported(name) from error
        raise Unsupported(name)

    def fetch(self, mapping: Mapping, args: list, block: tuple | None, check: Callable[[Any], Any]) -> Any:
        if not 1 <= len(args) <= 2 or (block is not None and block[0] != "block"):
            raise Unsupported("fetch")
        key = check(args[0])
        if key in mapping:
            return mapping[key]
        if block is not None:
            return self.yield_block(block, key)
        if len(args) == 2:
            return args[1]
        raise RubyError(f"key not found: {inspect(key)}", "KeyError")

    def yield_block(self, block: tuple, item: Any) -> Any:
        if block[0] == "bpass":
            return self.method(item, block[1], [], None)
        _, param, body = block
        if param is None:
            return self.eval(body)
        saved = self.locals.get(param, _MISSING)
        self.locals[param] = item
        try:
            return self.eval(body)
        finally:
            if saved is _MISSING:
                self.locals.pop(param, None)
            else:
                self.locals[param] = saved

    def method(self, value: Any, name: str, args: list, block: tuple | None) -> Any:
        if name in _BLOCK_METHODS:
            if name == "fetch" and isinstance(value, dict):
                return self.fetch(value, args, block, lambda key: key)
            if not isinstance(value, list):
                raise no_method(name, value)
            if block is None or args:
                raise Unsupported(name)
            results = [self.yield_block(block, item) for item in value]
            if name in ("map", "collect"):
                return results
            keep = name != "reject"
            return [item for item, result in zip(value, results, strict=True) if truthy(result) == keep]
        if block is not None:
            raise Unsupported(name)
        types, implementation = _METHODS[name]
        if not isinstance(value, types) or (isinstance(value, bool) and object not in types):
            raise no_method(name, value)
        try:
            return implementation(value, *args)
        except TypeError as error:  # a Python arity error: outside the subset
            raise Unsupported(name) from error

    def dotenv(self, files: list, overwrite: bool, apply: bool, strict: bool = False) -> dict[str, str]:
        """``Dotenv.parse`` / ``load`` / ``overload`` / ``load!`` (dotenv 3): missing files are skipped (not
        with ``load!``); without ``overwrite`` a variable already set keeps its value, also in the result.
        ``load`` returns the variables it changed."""
        from kamalpy.errors import KamalpyError
        from kamalpy.secrets.dotenv import parse

        names = [_string(f) for f in files] or [".env"]
        if overwrite:
            names.reverse()
        result: dict[str, str] = {}
        for name in names:
            text = read_file(expand_path(name), missing_ok=not strict)
            if text is None:
                continue
            try:
                values = parse(text, self.env, lambda command: shell(command, self.env), source=name,
                               keep_env=not overwrite)
            except KamalpyError as error:
                raise RubyError(str(error), "kamalpy") from None
            if apply:
                changed = {k: v for k, v in values.items() if (overwrite or k not in self.env) and self.env.get(k) != v}
                self.env.update(changed)
                values = changed
            result.update(values)
        return result


_MISSING = object()
