"""A parser for the dotenv syntax of ``.kamal/secrets`` (Ruby dotenv 3.2 as patched by Kamal 2.11).

Why our own: python-dotenv does not read this dialect. It has no unbraced ``$VAR``, no command
substitution ``$(...)``, and differs in quoting details (dotenv 3 keeps ``\\n`` in double quotes as
a backslash and ``n``; ``#`` ends an unquoted value even without a space before it; ``KEY: value``
and a bare ``KEY`` are entries). The line grammar below follows Ruby dotenv's, checked against the
real ``kamal secrets print`` (see ``tests/test_dotenv.py``).

One deliberate difference: Kamal runs ``$(...)`` first and then expands ``$VAR`` over the whole
result, so a command's *output* is expanded again (``two'secret$x`` fetched from a vault becomes
``two'secret``). Here a value is scanned once, left to right: the output of a command is never
expanded, and a ``$(`` brought in by a variable's value is never run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from kamalpy.errors import KamalpyError, SecretsError

# One entry: optional `export`, a key, then `=` or `: ` and an optional value (quoted values may span
# lines), an optional comment. Same alternatives and backtracking order as Ruby dotenv's LINE regex.
_LINE = re.compile(
    r"""
    (?:^|\A)
    \s*
    (?P<export>export\s+)?
    (?P<key>[\w.]+)
    (?:
        (?:\s*=\s*?|:\s+?)
        (?P<value>
            \s*'(?:\\'|[^'])*'
            |
            \s*"(?:\\"|[^"])*"
            |
            [^\#\n]+
        )?
    )?
    \s*
    (?:\#.*)?
    (?:$|\Z)
    """,
    re.VERBOSE | re.MULTILINE | re.ASCII,
)
_QUOTED = re.compile(r"""\A(['"])(.*)\1\Z""", re.DOTALL)
_UNESCAPE = re.compile(r"\\([^$])", re.DOTALL)
# `$NAME`, `${NAME}` (each brace optional, as in dotenv), never `$(`.
_VARIABLE = re.compile(r"\$(?!\()\{?(?P<name>[A-Z0-9_]+)?\}?", re.IGNORECASE | re.ASCII)
_RUBY_STRIP = " \t\n\v\f\r\0"

Substitute = Callable[[str], str]


def parse(
    text: str, env: Mapping[str, str], substitute: Substitute, *, source: str = "<string>", keep_env: bool = False
) -> dict[str, str]:
    """Parse one secrets file into ``{key: value}``.

    ``env`` is the process environment: ``$VAR`` looks in the keys defined earlier in the same
    text first, then in ``env``; unknown names give "". ``substitute(command)`` runs the command of
    a ``$(command)`` (variables already expanded) and returns its output; one trailing newline is
    removed here. It raises a :class:`KamalpyError` on failure, which is re-raised as a
    :class:`SecretsError` naming ``source`` and the key (never a value). ``keep_env``: a key already in
    ``env`` keeps that value, in the result and for later ``$KEY`` (``Dotenv.parse`` without ``overwrite``).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    result: dict[str, str] = {}
    for match in _LINE.finditer(text):
        key, value = match.group("key"), match.group("value")
        if match.group("export") and value is None:
            # `export NAME` re-exports a name defined above; Ruby dotenv rejects an unknown one.
            if key not in result:
                raise SecretsError(f'Line "export {key}" in {source} has an unset variable')
            continue
        if keep_env and key in env:
            result[key] = env[key]
            continue
        try:
            result[key] = _parse_value(value or "", result, env, substitute)
        except KamalpyError as exc:
            raise SecretsError(f"Could not resolve secret '{key}' in {source}: {exc}") from exc
    return result


def _parse_value(raw: str, defined: Mapping[str, str], env: Mapping[str, str], substitute: Substitute) -> str:
    value = raw.strip(_RUBY_STRIP)
    quoted = _QUOTED.match(value)
    quote = quoted.group(1) if quoted else None
    if quoted:
        value = quoted.group(2)
    if quote == "'":
        return value  # single quotes: literal
    if quote == '"':
        value = _expand_newlines(value, defined, env)
    value = _UNESCAPE.sub(lambda m: m.group(1), value)  # `\x` -> `x`, except `\$` (kept for below)
    return _substitute(value, defined, env, substitute)


def _expand_newlines(value: str, defined: Mapping[str, str], env: Mapping[str, str]) -> str:
    if (defined.get("DOTENV_LINEBREAK_MODE") or env.get("DOTENV_LINEBREAK_MODE")) == "legacy":
        return value.replace("\\n", "\n").replace("\\r", "\r")
    # dotenv 3: `\n` survives the unescaping below as a backslash and `n`.
    return value.replace("\\n", "\\\\n").replace("\\r", "\\\\r")


def _substitute(
    value: str, defined: Mapping[str, str], env: Mapping[str, str], substitute: Substitute | None
) -> str:
    """Expand ``$VAR`` and run ``$(cmd)`` in one left-to-right pass (``substitute=None``: variables only)."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        char = value[i]
        escaped = char == "\\" and value.startswith("$", i + 1)
        start = i + 1 if escaped else i
        if char == "$" or escaped:
            end = _group_end(value, start + 1) if substitute is not None else None
            if end is not None:
                command = _substitute(value[start + 2 : end - 1], defined, env, None)
                if escaped:  # `\$(cmd)` is the text `$(cmd)`, with its variables expanded (as Kamal)
                    out.append(f"$({command})")
                else:
                    out.append(_chomp(substitute(command)))  # type: ignore[misc]
                i = end
                continue
            var = _VARIABLE.match(value, start)
            if var is not None:
                name = var.group("name")
                if escaped or not name:
                    out.append(var.group(0))
                else:
                    out.append(defined[name] if name in defined else env.get(name, ""))
                i = var.end()
                continue
        out.append(char)
        i += 1
    return "".join(out)


def _group_end(text: str, start: int) -> int | None:
    """End index of the balanced, non-empty ``( ... )`` group at ``start``, or None (as dotenv's regex)."""
    if start >= len(text) or text[start] != "(":
        return None
    i, items = start + 1, 0
    while i < len(text):
        char = text[i]
        if char == ")":
            return i + 1 if items else None
        if char == "(":
            nested = _group_end(text, i)
            if nested is None:
                return None
            i = nested
        else:
            i += 1
        items += 1
    return None


def _chomp(output: str) -> str:
    """Ruby's ``String#chomp``: remove one trailing ``\\r\\n``, ``\\n`` or ``\\r``."""
    for ending in ("\r\n", "\n", "\r"):
        if output.endswith(ending):
            return output[: -len(ending)]
    return output
