"""``accessories:``: one long-lived container per name (database, cache, ...) on the hosts it is placed on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kamalpy.config.args import argumentize
from kamalpy.config.env import Env
from kamalpy.config.options import option_args
from kamalpy.config.proxy import Proxy, validate_proxy
from kamalpy.config.registry import Registry
from kamalpy.errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

DEFAULT_NETWORK = "kamal"
DEFAULT_FILE_MODE = "755"


@dataclass(frozen=True)
class MountedPath:
    """A file or directory from ``files:`` / ``directories:``."""

    local: str
    host_path: str
    """Path on the server: relative to the SSH user's home unless absolute."""
    container_path: str
    options: str | None
    mode: str | None
    owner: str | None

    @property
    def erb(self) -> bool:
        """A local file ending in ``erb`` is rendered with the accessory's env before upload."""
        return self.local.endswith("erb")

    def volume(self) -> str:
        """``--volume`` value (relative host paths are mounted from ``$PWD``)."""
        host = self.host_path if self.host_path.startswith("/") else f"$PWD/{self.host_path}"
        return ":".join(p for p in (host, self.container_path, self.options) if p)


def _parse_path(entry: Any, default_mode: str | None) -> tuple[str, str, str | None, str | None, str | None]:
    if isinstance(entry, Mapping):
        return (str(entry.get("local")), str(entry.get("remote")), entry.get("options"),
                str(entry["mode"]) if entry.get("mode") is not None else default_mode, entry.get("owner"))
    local, remote, *rest = str(entry).split(":", 2) + [""]
    return local, remote, rest[0] or None, default_mode, None


class Accessory:
    def __init__(self, name: str, config: Configuration) -> None:
        self.name = name
        self.config = config
        self.context = f"accessories/{name}"
        raw = (config.raw.get("accessories") or {}).get(name)
        self.raw: dict[str, Any] = dict(raw) if isinstance(raw, Mapping) else {}
        self._validate()
        self.env = Env(self.raw.get("env"), config.secret_lookup)
        self.registry = Registry(self.raw.get("registry"), config.secret_lookup) if self.raw.get("registry") else None

    def _validate(self) -> None:
        # Keys, placement (one of host/hosts/role/...), labels, options, env and registry are the schema's;
        # role names need the servers section, proxy certificates and `run` need values.
        known = set(self.config.role_names)
        if "roles" in self.raw:
            missing = [str(r) for r in self.raw["roles"] or [] if str(r) not in known]
            if missing:
                raise ConfigurationError(f"{self.context}: unknown roles {', '.join(missing)}")
        elif "role" in self.raw and str(self.raw["role"]) not in known:
            raise ConfigurationError(f"{self.context}: unknown role {self.raw['role']}")
        validate_proxy(self.raw.get("proxy"), f"{self.context}/proxy")

    def __repr__(self) -> str:
        return f"Accessory({self.name!r})"

    @property
    def service_name(self) -> str:
        return str(self.raw.get("service") or f"{self.config.service}-{self.name}")

    @property
    def image(self) -> str:
        server = self.registry.server if self.registry else None
        return "/".join(p for p in (server, str(self.raw.get("image") or "")) if p)

    @property
    def hosts(self) -> list[str]:
        raw = self.raw
        if "host" in raw:
            found = [raw["host"]]
        elif "hosts" in raw:
            found = list(raw["hosts"] or [])
        elif "role" in raw or "roles" in raw:
            names = [raw["role"]] if "role" in raw else list(raw["roles"] or [])
            found = [host for name in names for host in self.config.role(str(name)).hosts]
        else:
            tags = [raw["tag"]] if "tag" in raw else list(raw["tags"] or [])
            # Exact tag names, from every role however it is written (Kamal 2.11 matched substrings of
            # tags and only saw roles written as plain lists).
            found = [host for tag in tags for role in self.config.roles for host in role.hosts
                     if str(tag) in role.tags(host)]
        return list(dict.fromkeys(str(h) for h in found))

    @property
    def port(self) -> str | None:
        port = self.raw.get("port")
        if port is None or str(port) == "":
            return None
        port = str(port)
        return port if ":" in port else f"{port}:{port}"

    def publish_args(self) -> list[str]:
        return argumentize("--publish", self.port) if self.port else []

    @property
    def network(self) -> str:
        return str(self.raw.get("network") or DEFAULT_NETWORK)

    def network_args(self) -> list[str]:
        return argumentize("--network", self.network)

    @property
    def labels(self) -> dict[str, Any]:
        return {"service": self.service_name, **(self.raw.get("labels") or {})}

    def label_args(self) -> list[str]:
        return argumentize("--label", self.labels)

    @property
    def cmd(self) -> str | None:
        cmd = self.raw.get("cmd")
        return None if cmd is None else str(cmd)  # a number is Ruby's `to_s` of it (other types are refused)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.raw.get("options") or {})

    def option_args(self) -> list[str]:
        return option_args(self.options)

    @property
    def secrets_path(self) -> str:
        return f"{self.config.env_directory}/accessories/{self.name}.env"

    def env_args(self) -> list[str]:
        return [*self.env.clear_args(), *argumentize("--env-file", self.secrets_path)]

    @property
    def files(self) -> list[MountedPath]:
        result = []
        for entry in self.raw.get("files") or []:
            local, remote, options, mode, owner = _parse_path(entry, DEFAULT_FILE_MODE)
            result.append(MountedPath(local, f"{self.service_name}{remote}", remote, options, mode, owner))
        return result

    @property
    def directories(self) -> list[MountedPath]:
        result = []
        for entry in self.raw.get("directories") or []:
            local, remote, options, mode, owner = _parse_path(entry, None)
            host_path = local if local.startswith("/") else f"{self.service_name}/{local}"
            result.append(MountedPath(local, host_path, remote, options, mode, owner))
        return result

    @property
    def volumes(self) -> list[str]:
        return [str(v) for v in self.raw.get("volumes") or []]

    def volume_args(self) -> list[str]:
        paths = [p.volume() for p in (*self.files, *self.directories)]
        return argumentize("--volume", self.volumes) + argumentize("--volume", paths)

    @property
    def running_proxy(self) -> bool:
        return bool(self.raw.get("proxy"))

    @property
    def proxy(self) -> Proxy | None:
        return Proxy(self.raw["proxy"], f"{self.context}/proxy") if self.running_proxy else None
