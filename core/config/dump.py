"""``kamalpy config``: the data ``kamal config`` (2.11) prints, as plain YAML/JSON-ready values.

Kamal's output uses Ruby symbols and objects; here keys are plain strings, ``ssh_options.proxy`` is the
jump string or the proxy command, and secret values (``ssh.key_data``) are redacted.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration


def config_to_h(config: Configuration) -> dict[str, Any]:
    data: dict[str, Any] = {
        "roles": list(config.role_names),
        "hosts": config.all_hosts,
        "primary_host": config.primary_host,  # None (dropped) for an accessories-only configuration
        "version": config.version,
        "repository": config.repository,
        "absolute_image": config.absolute_image,
        "service_with_version": config.service_with_version,
        "volume_args": config.volume_args(),
        "ssh_options": config.ssh.to_h(),
        "sshkit": config.sshkit.to_h(),
        "builder": config.builder.to_h(),
        "accessories": config.raw.get("accessories"),
        "logging": config.logging_args(),
    }
    return {key: plain_data(value) for key, value in data.items() if value is not None}


_SYMBOL = re.compile(r":[A-Za-z_][A-Za-z0-9_]*[?!]?")


def plain_data(value: Any) -> Any:
    """Ruby symbols (kept by the YAML reader as ``":name"``) as plain strings, recursively."""
    if isinstance(value, str):
        return value[1:] if _SYMBOL.fullmatch(value) else value
    if isinstance(value, dict):
        return {plain_data(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    return value
