"""Secrets: the ``.kamal/secrets`` files (:mod:`.store`, :mod:`.dotenv`) and the operations behind
``kamalpy secrets fetch|extract`` (adapter lookup, JSON, Ruby-compatible shell quoting).

Secret values only ever appear in the return values here, never in an error message.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from kamalpy.errors import SecretsError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.hooks import Hooks
    from kamalpy.secrets.store import Secrets

__all__ = ["Secrets", "extract_secret", "fetch_secrets", "lookup_adapter", "shellescape", "shellsplit"]

MISSING_ACCOUNT = "No value provided for required options '--account'"
MISSING_ADAPTER = "No value provided for required options '--adapter'"


def __getattr__(name: str) -> Any:
    # `Secrets` lazily, so that importing this package stays cheap.
    if name == "Secrets":
        from kamalpy.secrets.store import Secrets

        return Secrets
    raise AttributeError(name)


def lookup_adapter(hooks: Hooks, name: str | None) -> Any:
    """An adapter instance by name (case-insensitive), from the ``kamalpy_secret_adapters`` hook."""
    if not name:
        raise SecretsError(MISSING_ADAPTER)
    adapter_class = hooks.secret_adapters().get(name.lower())
    if adapter_class is None:
        raise SecretsError(f"Unknown secrets adapter: {name}")
    return adapter_class()


def fetch_secrets(
    hooks: Hooks, adapter: str | None, names: list[str], account: str | None = None, from_: str | None = None
) -> dict[str, str]:
    """Fetch ``names`` through an adapter: ``{name: value}`` (names prefixed ``from_/`` by the adapter)."""
    instance = lookup_adapter(hooks, adapter)
    if getattr(instance, "requires_account", False) and not (account or "").strip():
        raise SecretsError(MISSING_ACCOUNT)
    return dict(instance.fetch(list(names), account=account or None, from_=from_ or None))


def dump_json(secrets: dict[str, Any]) -> str:
    """Compact JSON as Ruby's ``JSON.dump`` writes it (non-ASCII kept as is)."""
    return json.dumps(secrets, separators=(",", ":"), ensure_ascii=False)


def extract_secret(name: str, secrets_json: str) -> str:
    """The value of ``name`` in a ``fetch`` result, else of the first key ending in ``/name``."""
    try:
        secrets = json.loads(secrets_json)
    except ValueError as exc:  # the message says where, never what (the text holds secrets)
        position = f" (line {exc.lineno} column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise SecretsError(f"Could not parse the secrets JSON{position}") from None
    if not isinstance(secrets, dict):
        raise SecretsError("The secrets JSON is not an object")
    value = secrets.get(name)
    if value is None or value is False:  # Ruby's `||`: nil and false fall through
        value = next((v for k, v in secrets.items() if k.endswith(f"/{name}")), None)
    if value is None:
        raise SecretsError(f"Could not find secret {name}")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


_SHELL_UNSAFE = re.compile(r"([^A-Za-z0-9_\-.,:+/@\n])")


def shellescape(text: str) -> str:
    """Ruby's ``String#shellescape``: a backslash before every unsafe character."""
    if not text:
        return "''"
    return _SHELL_UNSAFE.sub(r"\\\1", text).replace("\n", "'\n'")


_SHELL_WORD = re.compile(
    r"""\s*(?:(?P<word>[^\s\\'"]+)|'(?P<sq>[^']*)'|"(?P<dq>(?:[^"\\]|\\.)*)"|(?P<esc>\\.?)|(?P<garbage>\S))"""
    r"""(?P<sep>\s|\Z)?""",
    re.DOTALL,
)


def shellsplit(line: str) -> list[str]:
    """Ruby's ``String#shellsplit`` (``Shellwords``), which Kamal uses on a ``$(kamal secrets ...)`` line."""
    words: list[str] = []
    field = ""
    pos = 0
    while pos < len(line):
        match = _SHELL_WORD.match(line, pos)
        if match is None:
            break  # only whitespace left
        if match.group("garbage") is not None:
            raise SecretsError("Unmatched quote in a 'secrets' command")  # never the line: it may hold values
        if match.group("word") is not None:
            field += match.group("word")
        elif match.group("sq") is not None:
            field += match.group("sq")
        elif match.group("dq") is not None:
            field += re.sub(r'\\([$`"\\\n])', r"\1", match.group("dq"))
        else:
            field += re.sub(r"\\(.)", r"\1", match.group("esc"), flags=re.DOTALL)
        if match.group("sep") is not None:
            words.append(field)
            field = ""
        pos = match.end()
    return words
