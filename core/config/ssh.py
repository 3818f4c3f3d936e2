"""The ``ssh:`` and ``sshkit:`` sections: connection options and connection-pool settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"
KEEPALIVE_INTERVAL = 30
DEFAULT_LOG_LEVEL = "fatal"
DEFAULT_CONNECT_TIMEOUT = 10  # kamalpy's own key (decisions.md); Kamal leaves it to net-ssh
DEFAULT_MAX_CONCURRENT_STARTS = 30
DEFAULT_POOL_IDLE_TIMEOUT = 900
DEFAULT_DNS_RETRIES = 3


def plain_symbol(value: Any) -> Any:
    """A Ruby symbol read as ``:name`` becomes the plain string ``name``."""
    return value[1:] if isinstance(value, str) and value.startswith(":") and len(value) > 1 else value


class Ssh:
    def __init__(self, raw: Mapping[str, Any] | None) -> None:
        self.raw: dict[str, Any] = dict(raw or {})

    @property
    def user(self) -> str:
        return str(self.raw.get("user", "root"))

    @property
    def port(self) -> int | str:
        """As written: Kamal passes a quoted port through as a string."""
        return self.raw.get("port", 22)

    @property
    def proxy_jump(self) -> str | None:
        """Jump host as ``user@host[:port]`` (``root@`` when no user is given)."""
        proxy = self.raw.get("proxy")
        if not proxy:
            return None
        proxy = str(proxy)
        return proxy if "@" in proxy else f"root@{proxy}"

    @property
    def proxy_command(self) -> str | None:
        if self.raw.get("proxy"):
            return None  # a jump host wins over a proxy command
        command = self.raw.get("proxy_command")
        return str(command) if command else None

    @property
    def proxy(self) -> str | None:
        """The jump string or the proxy command, whichever is configured."""
        return self.proxy_jump or self.proxy_command

    @property
    def keys_only(self) -> bool | None:
        return self.raw.get("keys_only")

    @property
    def keys(self) -> list[str] | None:
        keys = self.raw.get("keys")
        return None if keys is None else [str(k) for k in keys]

    @property
    def key_data(self) -> list[str] | None:
        """Entries as written: secret names, or (deprecated) inline PEM keys."""
        data = self.raw.get("key_data")
        return None if data is None else [str(k) for k in data]

    def key_data_values(self, lookup: Any) -> list[str] | None:
        """Private keys: inline PEM entries as they are, other entries looked up as secrets."""
        data = self.key_data
        if data is None:
            return None
        return [k if "-----BEGIN" in k else lookup(k) for k in data]

    @property
    def config(self) -> bool | str | list[str] | None:
        """``true``: read ~/.ssh/config; ``false``: ignore it; a file or files to read instead."""
        return self.raw.get("config")

    @property
    def connect_timeout(self) -> int:
        """Seconds to wait for each server's SSH connection (kamalpy only: ``ssh.connect_timeout``)."""
        return int(self.raw.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))

    @property
    def log_level(self) -> str:
        return str(plain_symbol(self.raw.get("log_level", DEFAULT_LOG_LEVEL)))

    def to_h(self) -> dict[str, Any]:
        """``kamal config``'s ``ssh_options``, in Kamal's key order; key data redacted."""
        options: dict[str, Any] = {
            "user": self.user,
            "port": self.port,
            "proxy": self.proxy,
            "keepalive": True,
            "keepalive_interval": KEEPALIVE_INTERVAL,
            "keys_only": self.keys_only,
            "keys": self.keys,
            "key_data": None if self.key_data is None else [REDACTED] * len(self.key_data),
            "config": self.config,
            "log_level": self.log_level,
            # kamalpy's own key: shown only when set, so Kamal's output stays identical otherwise
            "connect_timeout": self.raw.get("connect_timeout"),
        }
        return {k: v for k, v in options.items() if v is not None}


class Sshkit:
    def __init__(self, raw: Mapping[str, Any] | None) -> None:
        self.raw: dict[str, Any] = dict(raw or {})

    @property
    def max_concurrent_starts(self) -> int:
        return int(self.raw.get("max_concurrent_starts", DEFAULT_MAX_CONCURRENT_STARTS))

    @property
    def pool_idle_timeout(self) -> int:
        return int(self.raw.get("pool_idle_timeout", DEFAULT_POOL_IDLE_TIMEOUT))

    @property
    def dns_retries(self) -> int:
        return int(self.raw.get("dns_retries", DEFAULT_DNS_RETRIES))

    def to_h(self) -> dict[str, Any]:
        return dict(self.raw)
