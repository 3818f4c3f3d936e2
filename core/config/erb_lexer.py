"""Tokens of kamalpy's ERB (see :mod:`kamalpy.config.erb`): the code of every tag in one stream.

Text between tags becomes a ``text`` token and each ``<%= %>`` is bracketed by ``out``/``outend``, so the
parser sees the template as one program, as Ruby's ERB compiler makes it. Strings with ``#{}`` are
tokenized recursively; bracket nesting is checked here already, before a huge token list is built.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from kamalpy.config.erb_ruby import Unsupported

MAX_DEPTH = 32  # nested parentheses, brackets, blocks and interpolations; real templates use a handful


@functools.cache
def rx(pattern: str) -> re.Pattern[str]:
    """Compiled on first use: most files have no ERB, and start-up time matters."""
    return re.compile(pattern)


class TooDeep(Exception):
    """Nesting beyond MAX_DEPTH."""


class Tag:
    """One ``<% %>`` / ``<%= %>`` tag: its code, the line it starts on, whether it sits in a YAML comment."""

    __slots__ = ("code", "line", "in_comment")

    def __init__(self, code: str, line: int, in_comment: bool) -> None:
        self.code, self.line, self.in_comment = code, line, in_comment


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
            raise TooDeep
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
            match = rx(_TOKEN).match(code, pos)
            if match is None:
                raise Unsupported(code[pos:])
            kind, text = match.lastgroup, match.group()
            pos = match.end()
            if kind in ("ws", "comment"):
                continue
            if kind == "num":
                clean = text.replace("_", "")
                if len(clean) > 100:  # no configuration needs it; Python refuses very long ones anyway
                    raise Unsupported("number")
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
                        raise TooDeep
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


def program_tokens(items: list[tuple], tags: list[Tag]) -> list[tuple]:
    """The whole template as one token stream; each tag ends a statement, as in ERB's compiled code."""
    tokens: list[tuple] = []
    for item in items:
        if item[0] == "text":
            tokens.append(("text", item[1], len(tags) - 1))
            continue
        tag: Tag = item[1]
        tags.append(tag)
        index = len(tags) - 1
        try:
            code_tokens, _ = _Lexer(index).tokens(tag.code)
        except Unsupported:
            if item[0] == "expr" and tag.in_comment:
                continue  # unreadable code in a YAML comment: its output would be comment text
            raise TagError(index) from None
        if item[0] == "expr":
            tokens += [("out", None, index), *code_tokens, ("outend", None, index)]
        else:
            tokens += [*code_tokens, ("nl", None, index)]
    return tokens


class TagError(Exception):
    """Unsupported code in the tag with this index."""

    def __init__(self, tag: int) -> None:
        self.tag = tag

