"""``servers:``: roles, their hosts and host tags, and each role's own settings merged over the root's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kamalpy.config.args import argumentize
from kamalpy.config.env import Env
from kamalpy.config.loader import RubySymbol
from kamalpy.config.options import Logging, option_args
from kamalpy.config.proxy import Proxy, validate_proxy
from kamalpy.errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

DEFAULT_ROLE = "web"


def role_names(servers: Any) -> list[str]:
    """Role names sorted by name (a plain list of hosts is the single role ``web``)."""
    if isinstance(servers, Mapping):
        return sorted(str(name) for name in servers)
    if servers is None:
        return []
    return [DEFAULT_ROLE]


def parse_hosts(entries: Any) -> dict[str, list[str]]:
    """``{host: [tags]}`` in the order written. An entry is ``host`` or ``{host: tag | [tags]}``.

    Like Kamal 2.11, a role keeps only string entries and hashes: a number, boolean or symbol entry
    (``- 1``) is no host, so ``web: [1]`` is a role without servers. The schema has checked that a
    hash names one host.
    """
    hosts: dict[str, list[str]] = {}
    for entry in entries or []:
        if isinstance(entry, Mapping):
            for host, tags in entry.items():
                hosts[str(host)] = [str(t) for t in tags] if isinstance(tags, list) else [str(tags)]
        elif isinstance(entry, str) and not isinstance(entry, RubySymbol):
            hosts[entry] = []
    return hosts


class Role:
    def __init__(self, name: str, config: Configuration) -> None:
        self.name = name
        self.config = config
        servers = config.raw.get("servers")
        spec = servers.get(name) if isinstance(servers, Mapping) else servers
        self.settings: dict[str, Any] = dict(spec) if isinstance(spec, Mapping) else {}
        entries = spec if isinstance(spec, list) else self.settings.get("hosts")
        self.tagged_hosts = parse_hosts(entries)
        self._validate(f"servers/{name}")
        self.specialized_env = Env(self.settings.get("env"), config.secret_lookup)
        self.running_proxy = self._running_proxy()

    def _validate(self, context: str) -> None:
        # Options, labels and env are the schema's; proxy certificates and `run` are checked here.
        proxy = self.settings.get("proxy")
        if isinstance(proxy, Mapping):
            validate_proxy(proxy, f"{context}/proxy")

    def _running_proxy(self) -> bool:
        setting = self.settings.get("proxy")
        if self.primary:
            return setting is not False  # the primary role runs the proxy unless it opts out
        return bool(setting)

    def __repr__(self) -> str:
        return f"Role({self.name!r})"

    @property
    def primary(self) -> bool:
        return self.name == self.config.primary_role_name

    @property
    def hosts(self) -> list[str]:
        return list(self.tagged_hosts)

    @property
    def primary_host(self) -> str | None:
        return self.hosts[0] if self.hosts else None

    def tags(self, host: str) -> list[str]:
        return list(self.tagged_hosts.get(host, []))

    @property
    def cmd(self) -> str | None:
        cmd = self.settings.get("cmd")
        return None if cmd is None else str(cmd)  # a number is Ruby's `to_s` of it (other types are refused)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.settings.get("options") or {})

    def option_args(self) -> list[str]:
        return option_args(self.options)

    @property
    def labels(self) -> dict[str, Any]:
        """Kamal's labels, then the root ``labels``, then the role's (later wins)."""
        return {"service": self.config.service, "role": self.name, "destination": self.config.destination,
                **(self.config.raw.get("labels") or {}), **(self.settings.get("labels") or {})}

    def label_args(self) -> list[str]:
        return argumentize("--label", self.labels)

    @property
    def logging(self) -> Logging:
        return self.config.logging.merge(self.settings.get("logging"))

    def logging_args(self) -> list[str]:
        return self.logging.args()

    @property
    def proxy(self) -> Proxy | None:
        """Root proxy with the role's proxy hash merged over it; None when the role runs no proxy."""
        if not self.running_proxy:
            return None
        own = self.settings.get("proxy")
        return self.config.proxy.merge(own if isinstance(own, Mapping) else {})

    @property
    def ssl(self) -> bool:
        proxy = self.proxy
        return proxy is not None and proxy.ssl

    def env(self, host: str) -> Env:
        """Root env, then the role's, then the env of each of the host's tags in the order listed."""
        env = self.config.env.merge(self.specialized_env)
        for tag in self.tags(host):
            tag_env = self.config.env_tag(tag)
            if tag_env is not None:
                env = env.merge(tag_env)
        return env

    def env_args(self, host: str) -> list[str]:
        return [*self.env(host).clear_args(), *argumentize("--env-file", self.secrets_path)]

    @property
    def secrets_path(self) -> str:
        return f"{self.config.env_directory}/roles/{self.name}.env"

    @property
    def container_prefix(self) -> str:
        return "-".join(p for p in (self.config.service, self.name, self.config.destination) if p)

    def container_name(self, version: str | None = None) -> str:
        return f"{self.container_prefix}-{version or self.config.version}"

    @property
    def asset_path(self) -> str | None:
        raw = self.settings.get("asset_path") or self.config.raw.get("asset_path")
        return str(raw).split(":", 1)[0] if raw else None

    @property
    def asset_path_options(self) -> str | None:
        raw = self.settings.get("asset_path") or self.config.raw.get("asset_path")
        parts = str(raw).split(":", 1) if raw else []
        return parts[1] if len(parts) == 2 else None

    @property
    def assets(self) -> bool:
        return bool(self.asset_path) and self.running_proxy

    def ensure_one_host_for_ssl(self) -> None:
        proxy = self.proxy
        if proxy is not None and proxy.ssl and len(self.hosts) > 1 and not proxy.custom_ssl_certificate:
            raise ConfigurationError(
                "SSL is only supported on a single server unless you provide custom certificates, "
                f"found {len(self.hosts)} servers for role {self.name}")
