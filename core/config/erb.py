"""ERB pre-processing of configuration files, the way Kamal renders them (``ERB.new(text, trim_mode: "-")``).

Kamal evaluates arbitrary Ruby inside ``<% %>`` tags. We never run Ruby: this module scans the template
with the same rules as Ruby's ERB (``ExplicitScanner``), turns it into one small program as ERB's compiler
does (text and ``<%= %>`` become output statements, so an ``if`` or ``begin`` may span several tags), and
interprets a closed subset of Ruby (listed in docs/configuration.md, "ERB"). Tokens: :mod:`erb_lexer`;
syntax: :mod:`erb_parser`; values, methods and library calls: :mod:`erb_ruby`. Anything else is a
``ConfigurationError`` naming the file and line, so a template is never rendered differently from Kamal
without saying so. One exception: an output tag on a
YAML comment line whose code is outside the subset renders nothing, since Kamal's output there is a comment.
Nesting (parentheses, blocks, interpolation) is bounded by ``MAX_DEPTH``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kamalpy.config.erb_lexer import MAX_DEPTH, Tag, TagError, TooDeep, program_tokens, rx
from kamalpy.config.erb_parser import Parser, StructureError
from kamalpy.config.erb_ruby import (
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

# Ruby ERB's scanner for trim_mode "-" (erb/compiler.rb, ExplicitScanner). Outside a tag only these start
# tokens exist; `^[ \t]*<%-` eats the indentation before `<%-`. Inside a tag only these end tokens exist.
_STAG = r"(?m)^[ \t]*<%-|<%-|<%%|<%=|<%#|<%"
_ETAG = r"-%>|%%>|%>"
_NEWLINE_AFTER_TRIM = r"\r?\n"


# ---------------------------------------------------------------------------------------------------------
# Template scanning


class _YamlLine:
    """Whether the rendered text so far ends inside a YAML comment: the current line's quotes, tracked
    incrementally (linear in the text). Tag output is unknown: taken as a non-space, unquoted word."""

    def __init__(self) -> None:
        self.new_line()

    def new_line(self) -> None:
        self.quote: str | None = None
        self.comment = False
        self.prev = " "

    def feed(self, chunk: str) -> None:
        cut = chunk.rfind("\n")
        if cut >= 0:
            self.new_line()
            chunk = chunk[cut + 1 :]
        i = 0
        while i < len(chunk) and not self.comment:
            char = chunk[i]
            if self.quote == '"':
                if char == "\\":
                    i += 1
                elif char == '"':
                    self.quote = None
            elif self.quote == "'":
                if char == "'" and chunk.startswith("'", i + 1):
                    i += 1  # '' is a quote inside single quotes
                elif char == "'":
                    self.quote = None
            elif char == "#" and self.prev in " \t":
                self.comment = True
            elif char in "\"'" and self.prev in " \t[{,:":
                self.quote = char
            self.prev = char
            i += 1


def _scan(text: str, path: str) -> list[tuple]:
    """Split the template into ("text", s) / ("expr", tag) / ("stmt", tag) items."""
    items: list[tuple] = []
    pos, size = 0, len(text)
    line, counted = 1, 0  # line numbers are counted incrementally: linear in the text
    yaml_line = _YamlLine()
    while pos < size:
        match = rx(_STAG).search(text, pos)
        if match is None:
            items.append(("text", text[pos:]))
            break
        if match.start() > pos:
            items.append(("text", text[pos : match.start()]))
            yaml_line.feed(text[pos : match.start()])
        token = match.group()
        if token == "<%%":  # literal "<%"
            items.append(("text", "<%"))
            yaml_line.feed("<%")
            pos = match.end()
            continue
        line += text.count("\n", counted, match.end())
        counted = match.end()
        kind = {"<%=": "expr", "<%#": "comment"}.get(token.strip(), "stmt")  # "<%", "<%-": statements
        code: list[str] = []
        cursor = match.end()
        while True:
            end = rx(_ETAG).search(text, cursor)
            if end is None:
                raise ConfigurationError(f"{path}:{line}: unterminated ERB tag {token.strip()} (missing %>)")
            code.append(text[cursor : end.start()])
            cursor = end.end()
            if end.group() == "%%>":  # a literal "%>" inside the code
                code.append("%>")
                continue
            if end.group() == "-%>":  # trims the line break that follows
                newline = rx(_NEWLINE_AFTER_TRIM).match(text, cursor)
                if newline:
                    cursor = newline.end()
            break
        pos = cursor
        if kind != "comment":
            items.append((kind, Tag("".join(code), line, yaml_line.comment)))
        if kind == "expr":
            yaml_line.prev = "x"
    return items

def _show(code: str) -> str:
    text = " ".join(code.split())
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------------------
# Running the program


class _Interpreter:
    def __init__(self, runtime: Runtime, tags: list[Tag]) -> None:
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
            except TagError:
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
            raise TagError(tag) from None

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


def _located(tags: list[Tag], path: str, run: Any) -> Any:
    """Run ``run()`` and turn its failures into one-line errors naming the file and line."""
    try:
        return run()
    except TagError as error:
        tag = tags[error.tag]
        raise ConfigurationError(f"{path}:{tag.line}: unsupported ERB: {_show(tag.code)}") from None
    except StructureError as error:
        raise ConfigurationError(f"{path}:{tags[error.tag].line}: {error}") from None
    except (TooDeep, RecursionError):
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
        items = [item if item[0] == "text" else (item[0], Tag(item[1].code, item[1].line, False))
                 for item in items]
    tags: list[Tag] = []
    tokens = _located(tags, path, lambda: program_tokens(items, tags))
    parser = Parser(tokens, tags)

    def parse() -> list:
        try:
            return parser.program()
        except Unsupported:
            raise TagError(parser.tag()) from None

    program = _located(tags, path, parse)
    interpreter = _Interpreter(Runtime(env), tags)

    def run() -> None:
        try:
            interpreter.run(program)
        except RubyError as error:
            raise ConfigurationError(f"{path}:{tags[error.tag or 0].line}: {error.message}") from None

    _located(tags, path, run)
    return "".join(interpreter.out)

