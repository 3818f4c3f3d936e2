"""The decrypted text: a JSON object when it starts with ``{``, dotenv lines otherwise.

The dotenv dialect is literal on purpose, unlike ``.kamal/secrets``: there is no ``$VAR`` expansion and
no ``$(command)``, so a value comes back exactly as it was encrypted (a generated password with a ``$``
in it stays whole, and decrypting a file never runs anything). Supported: ``KEY=value``, an
``export`` prefix, ``#`` comment lines and `` #`` comments after an unquoted value, single quotes
(literal) and double quotes (``\\n \\r \\t \\" \\\\`` escapes); quoted values may span lines (PEM keys).

Error messages give line numbers and key names, never text from the file.
"""

from __future__ import annotations

import json
import re

from kamalpy.errors import SecretsError

_ENTRY = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=(.*)\Z", re.DOTALL)
_INLINE_COMMENT = re.compile(r"\s+#")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def parse(text: str, source: str) -> dict[str, str]:
    """``{name: value}`` from the plaintext of ``source`` (named in errors)."""
    text = text.removeprefix("\ufeff")
    if text.lstrip().startswith("{"):
        return parse_json(text, source)
    return parse_dotenv(text, source)


def parse_json(text: str, source: str) -> dict[str, str]:
    """A flat JSON object; numbers and booleans become their JSON text (``5``, ``true``)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        # The decoder's message names the problem and a position, never the document's text.
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "invalid JSON"
        raise SecretsError(f"Could not parse {source} as JSON: {msg}{where}") from None
    if not isinstance(data, dict):
        raise SecretsError(f"Could not parse {source}: the JSON is not an object")
    result: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, str):
            result[key] = value
        elif isinstance(value, (bool, int, float)):
            result[key] = json.dumps(value)
        else:
            raise SecretsError(f"Could not parse {source}: the value of {key} is not a string, number or boolean")
    return result


def parse_dotenv(text: str, source: str) -> dict[str, str]:
    """``KEY=value`` lines (see the module docstring); a later line for a key wins."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    result: dict[str, str] = {}
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENTRY.match(line)
        if match is None:
            raise SecretsError(f"Could not parse {source}: line {number} is not KEY=value")
        key, rest = match.groups()
        quote = rest.lstrip(" \t")[:1]
        if quote not in ("'", '"'):
            # `KEY= # note` is empty; `KEY=a#b` keeps its `#` (only whitespace then `#` starts a comment).
            result[key] = _INLINE_COMMENT.split(rest, maxsplit=1)[0].strip()
            continue
        body = rest.lstrip(" \t")[1:]
        while (end := _closing(body, quote)) is None:
            if index >= len(lines):
                raise SecretsError(f"Could not parse {source}: the quote opened on line {number} is not closed")
            body += "\n" + lines[index]
            index += 1
        after = body[end + 1:].strip()
        if after and not after.startswith("#"):
            raise SecretsError(f"Could not parse {source}: unexpected text after the quoted value of {key}")
        result[key] = body[:end] if quote == "'" else _unescape(body[:end])
    return result


def _closing(body: str, quote: str) -> int | None:
    """Index of the quote closing ``body`` (backslash escapes count inside double quotes), or None."""
    if quote == "'":
        end = body.find("'")
        return end if end >= 0 else None
    index = 0
    while index < len(body):
        if body[index] == "\\":
            index += 2
        elif body[index] == '"':
            return index
        else:
            index += 1
    return None


def _unescape(value: str) -> str:
    """Double-quote escapes; an unknown one such as ``\\$`` is kept as written."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), value, flags=re.DOTALL)
