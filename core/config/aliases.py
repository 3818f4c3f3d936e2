"""``aliases:``: names for kamalpy command lines (``console: app exec -i "bin/rails console"``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kamalpy.errors import ConfigurationError

_NAME = re.compile(r"[a-z0-9_-]+")
# Kamal's own top-level commands; an alias may not shadow one of them.
BUILTIN_COMMANDS = frozenset({
    "accessory", "app", "audit", "build", "config", "deploy", "details", "docs", "init", "lock", "proxy",
    "prune", "redeploy", "registry", "remove", "rollback", "secrets", "server", "setup", "upgrade", "version",
})


def validate_aliases(raw: Any) -> None:
    if not isinstance(raw, Mapping):
        return
    for name in raw:
        name = str(name)
        if not _NAME.fullmatch(name):
            raise ConfigurationError(f"aliases/{name}: Invalid alias name: '{name}'. Must only contain lowercase "
                                     "letters, alphanumeric, hyphens and underscores.")
        if name in BUILTIN_COMMANDS:
            raise ConfigurationError(f"aliases/{name}: Alias '{name}' conflicts with a built-in command.")


def aliases(raw: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (raw or {}).items()}
