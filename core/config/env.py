"""Environment variables of roles, accessories and host tags: clear values and secret names.

Two forms: a plain ``{KEY: value}`` mapping (all clear), or ``clear`` / ``secret`` / ``tags`` (tags only
in the root env). A secret entry ``NAME:SECRET`` sets ``NAME`` from the secret ``SECRET``.
The form rules (keys allowed, tags only in the root) are the schema's (``schema/kamal.json``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kamalpy.config.args import argumentize
from kamalpy.errors import ConfigurationError

SPECIAL_KEYS = ("clear", "secret", "tags")

SecretLookup = Callable[[str], str]


class Env:
    """Clear values and secret names of one env block (or of several merged)."""

    def __init__(self, raw: Mapping[str, Any] | None, lookup: SecretLookup | None = None) -> None:
        raw = raw or {}
        complex_form = any(key in raw for key in SPECIAL_KEYS)
        self.clear: dict[str, Any] = dict(raw.get("clear") or {}) if complex_form else dict(raw)
        self.secret_keys: list[str] = [str(k) for k in raw.get("secret") or []] if complex_form else []
        self._lookup = lookup

    @classmethod
    def of(cls, clear: Mapping[str, Any], secret_keys: list[str], lookup: SecretLookup | None) -> Env:
        return cls({"clear": dict(clear), "secret": list(secret_keys)}, lookup)

    def merge(self, other: Env) -> Env:
        """Clear values of ``other`` win; secret names are unioned in order."""
        keys = self.secret_keys + [k for k in other.secret_keys if k not in self.secret_keys]
        return Env.of({**self.clear, **other.clear}, keys, self._lookup or other._lookup)

    @property
    def secret_names(self) -> dict[str, str]:
        """``{env var: secret name}`` (``DB_PASSWORD:MAIN_DB_PASSWORD`` aliases a secret)."""
        names: dict[str, str] = {}
        for key in self.secret_keys:
            # Ruby's `name, secret = key.split(":")`: a third part ("A:B:C") is dropped
            parts = key.split(":")
            name = parts[0]
            names[name] = parts[1] if len(parts) > 1 and parts[1] else name
        return names

    def secrets(self) -> dict[str, str]:
        """Secret env values, looked up now (raises when a secret is missing)."""
        if self._lookup is None:
            raise ConfigurationError("No secrets available to resolve the env")
        return {name: self._lookup(secret) for name, secret in self.secret_names.items()}

    def clear_args(self) -> list[str]:
        return argumentize("--env", self.clear)

    def to_dict(self) -> dict[str, Any]:
        """Everything, secrets resolved (for rendering accessory files)."""
        return {**{k: v for k, v in self.clear.items()}, **self.secrets()}
