"""Kamal's value formatting for docker command lines (``Kamal::Utils``): escaping, ``argumentize``, ``optionize``.

These decide the exact text of every generated command, so they follow Kamal's rules byte for byte:
ASCII runs are quoted like Ruby's ``String#dump``, non-ASCII runs are left raw outside the quotes, and
``$`` is escaped unless it starts a ``${...}`` expansion meant for the remote shell.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")
_DOLLAR_WITHOUT_EXPANSION = re.compile(r"\$(?!\{[^}]*\})")
_DUMP_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e", "\x07": "\\a", "\x08": "\\b",
                 "\x0c": "\\f", "\x0b": "\\v", '"': '\\"', "\\": "\\\\"}


def ruby_string(value: Any) -> str:
    """``value.to_s`` as Ruby prints it (true/false/nil, integers, floats)."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def ruby_dump_ascii(text: str) -> str:
    """Ruby ``String#dump`` of an ASCII-only string (with the surrounding quotes)."""
    out = []
    for i, ch in enumerate(text):
        if ch in _DUMP_ESCAPES:
            out.append(_DUMP_ESCAPES[ch])
        elif ch == "#" and text[i + 1:i + 2] in ("{", "$", "@"):
            out.append("\\#")  # Ruby escapes what would otherwise start an interpolation
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def escape_shell_value(value: Any) -> str:
    """Quote a value for a remote shell the way Kamal's ``escape_shell_value`` does."""
    parts = []
    for run in _RUNS.findall(ruby_string(value)):
        if run.isascii():
            dumped = ruby_dump_ascii(run).replace("`", "\\`")
            parts.append(_DOLLAR_WITHOUT_EXPANSION.sub(r"\\$", dumped))
        else:
            parts.append(run)
    return "".join(parts)


def is_present(value: Any) -> bool:
    """ActiveSupport's ``present?``: not nil, not false, not empty, not whitespace-only."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, tuple, dict, set)):
        return bool(value)
    return True


def _pairs(attributes: Any) -> Iterable[tuple[Any, Any]]:
    if attributes is None:
        return []
    if isinstance(attributes, Mapping):
        return list(attributes.items())
    if isinstance(attributes, (list, tuple)):
        return [(item, None) for item in attributes]
    return [(attributes, None)]


def argumentize(flag: str, attributes: Any, sensitive: bool = False) -> list[str]:
    """``flag key=value`` pairs: escaped values, ``key=false`` for false, a bare ``key`` when blank.

    With ``sensitive`` the caller gets the same list; redaction of logged values is the runner's job,
    so the flag only exists to keep call sites readable like Kamal's.
    """
    args: list[str] = []
    for key, value in _pairs(attributes):
        if is_present(value):
            args += [flag, f"{ruby_string(key)}={escape_shell_value(value)}"]
        elif value is False:
            args += [flag, f"{ruby_string(key)}=false"]
        else:
            args += [flag, ruby_string(key)]
    return args


def optionize(options: Mapping[str, Any], with_: str | None = None) -> list[str]:
    """``--key "value"`` (or ``--key=value`` with ``with_="="``); true gives a bare flag; lists repeat it."""
    flat: list[tuple[str, Any]] = []
    for key, value in options.items():
        if isinstance(value, (list, tuple)):
            flat += [(key, entry) for entry in value]
        else:
            flat.append((key, value))
    args: list[str] = []
    for key, value in flat:
        if value is True:
            args.append(f"--{key}")
        elif with_:
            args.append(f"--{key}{with_}{escape_shell_value(value)}")
        else:
            args += [f"--{key}", escape_shell_value(value)]
    return args
