"""The configuration object model: a validated ``deploy.yml`` with every value Kamal derives from it.

Pure: parsing and checks only. The one outside query is git, and only when the version is asked for
and neither ``--version`` nor ``VERSION`` gives it. Secrets are read on first use.

Checks run in Kamal 2.11's order (sections as they are built, then the whole-configuration rules), so
that a configuration with several mistakes gets the same first message as from Kamal. Everything one
section's schema can say (types, keys, reserved names, one-section rules) is checked by
:mod:`kamalpy.config.schema` first; the checks here are those it cannot express: merged role settings,
rules across sections, files, and values such as versions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from kamalpy import KAMAL_COMPAT_VERSION
from kamalpy.config import values
from kamalpy.config.accessory import Accessory
from kamalpy.config.aliases import aliases as parse_aliases
from kamalpy.config.args import argumentize, is_present
from kamalpy.config.boot import Boot
from kamalpy.config.builder import Builder, validate_builder
from kamalpy.config.env import Env
from kamalpy.config.gem_version import newer as version_newer
from kamalpy.config.kamalpy import KEY as KAMALPY_KEY
from kamalpy.config.kamalpy import KamalpyOptions
from kamalpy.config.loader import RubySymbol
from kamalpy.config.options import Logging
from kamalpy.config.proxy import DEFAULT_PROXY_DRIVER, PROXY_ROOT_ONLY_KEYS, Proxy, validate_proxy
from kamalpy.config.registry import Registry
from kamalpy.config.roles import Role, role_names
from kamalpy.config.ssh import Ssh, Sshkit
from kamalpy.errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.specifics import Specifics
    from kamalpy.hooks import Hooks
    from kamalpy.plugin import ConfigKey

RUN_DIRECTORY = ".kamal"  # Kamal 2.11 ignores `run_directory:` and always uses this
DEFAULT_HOOKS_PATH = ".kamal/hooks"
DEFAULT_SECRETS_PATH = ".kamal/secrets"
HOOKS_OUTPUT_LEVELS = ("quiet", "verbose")
OLD_PROXY_HOOKS = ("pre-traefik-reboot", "post-traefik-reboot")
_SERVICE_NAME = re.compile(r"[a-z0-9_-]+", re.IGNORECASE)


def _schema_validate(raw: Mapping[str, Any], extension_keys: Mapping[str, ConfigKey]) -> None:
    try:
        from kamalpy.config import schema
    except ImportError:  # pragma: no cover - the schema module arrives separately
        return
    validate = getattr(schema, "validate", None)  # `schema/` (the JSON files) imports as a namespace until then
    if validate is not None:
        validate(raw, extension_keys)


def _hooks_output_level(value: Any) -> str | None:
    """Ruby's ``value.to_sym.to_s`` for a symbol or string (``quiet`` for ``:quiet``, ``:quiet`` for ``":quiet"``)."""
    if isinstance(value, RubySymbol):
        return value.name
    return value if isinstance(value, str) else None


def _ruby_to_s(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class Configuration:
    def __init__(self, raw: Mapping[str, Any], *, destination: str | None = None, version: str | None = None,
                 config_file: Path | str = Path("config/deploy.yml"),
                 extension_keys: Mapping[str, ConfigKey] | None = None, hooks: Hooks | None = None) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigurationError("Configuration must be a mapping")
        self.raw: dict[str, Any] = dict(raw)
        self.destination = destination
        self.config_file = Path(config_file)
        self.extension_keys: dict[str, ConfigKey] = dict(extension_keys or {})
        self.hooks = hooks
        self._declared_version = version
        self._version: str | None = None
        self._secrets: Any = None

        _schema_validate(self.raw, self.extension_keys)

        # Sections in the order Kamal builds (and so validates) them.
        self.role_names = role_names(self.raw.get("servers"))
        self.roles = [Role(name, self) for name in self.role_names]
        self.registry = Registry(self.raw.get("registry"), self.secret_lookup)
        self.accessories = [Accessory(str(name), self) for name in self.raw.get("accessories") or {}]
        self.aliases = parse_aliases(self.raw.get("aliases"))
        validate_builder(self.raw.get("builder"))
        self.builder = Builder(self.raw.get("builder"), service=str(self.service), image=self.image,
                               registry_server=self.registry.server)
        self.env = Env(self.raw.get("env"), self.secret_lookup)
        self.logging = Logging(self.raw.get("logging"))
        validate_proxy(self.raw.get("proxy"), "proxy")
        self.proxy = Proxy(self.raw.get("proxy"))
        self.ssh = Ssh(self.raw.get("ssh"))
        self.sshkit = Sshkit(self.raw.get("sshkit"))
        self.kamalpy = KamalpyOptions(self.raw.get(KAMALPY_KEY))  # kamalpy's own settings (x-kamalpy)

        self._ensure_destination_if_required()
        self._ensure_required_keys_present()
        self._ensure_valid_kamal_version()
        self._ensure_retain_containers_valid()
        self._ensure_valid_service_name()
        self._ensure_no_traefik_reboot_hooks()
        self._ensure_valid_role_proxies()
        self._ensure_driver_only_in_root_proxy()
        self._ensure_unique_hosts_for_ssl_roles()
        self._ensure_local_registry_remote_builder_has_ssh_url()
        self._ensure_no_conflicting_proxy_runs()
        self._ensure_valid_hooks_output()
        self._ensure_safe_values()

    # ----- plain values -----

    @property
    def service(self) -> str | None:
        service = self.raw.get("service")
        return None if service is None else str(service)

    @property
    def image(self) -> str | None:
        image = self.raw.get("image")
        if is_present(image):
            return str(image)
        return self.service if self.registry.local else None

    @property
    def labels(self) -> dict[str, Any]:
        return dict(self.raw.get("labels") or {})

    @property
    def service_and_destination(self) -> str:
        return "-".join(p for p in (self.service, self.destination) if p)

    @property
    def require_destination(self) -> bool:
        return bool(self.raw.get("require_destination"))

    @property
    def primary_role_name(self) -> str:
        return str(self.raw.get("primary_role") or "web")

    @property
    def allow_empty_roles(self) -> bool:
        return bool(self.raw.get("allow_empty_roles"))

    @property
    def retain_containers(self) -> int:
        value = self.raw.get("retain_containers")
        return 5 if value is None else int(value)

    @property
    def minimum_version(self) -> str | None:
        """As Kamal reads it: unset when nil or false (Ruby truthiness), else the value's ``to_s``."""
        value = self.raw.get("minimum_version")
        return None if value is None or value is False else _ruby_to_s(value)

    @property
    def readiness_delay(self) -> int:
        return self.raw.get("readiness_delay") or 7

    @property
    def deploy_timeout(self) -> int:
        return self.raw.get("deploy_timeout") or 30

    @property
    def drain_timeout(self) -> int:
        return self.raw.get("drain_timeout") or 30

    @property
    def stop_timeout(self) -> int | None:
        return self.raw.get("stop_timeout")

    @property
    def asset_path(self) -> str | None:
        return self.raw.get("asset_path")

    @property
    def error_pages_path(self) -> str | None:
        return self.raw.get("error_pages_path")

    @property
    def hooks_path(self) -> str:
        return str(self.raw.get("hooks_path") or DEFAULT_HOOKS_PATH)

    @property
    def secrets_path(self) -> str:
        return str(self.raw.get("secrets_path") or DEFAULT_SECRETS_PATH)

    # ----- on-host layout -----

    @property
    def run_directory(self) -> str:
        return RUN_DIRECTORY

    @property
    def apps_directory(self) -> str:
        return f"{RUN_DIRECTORY}/apps"

    @property
    def app_directory(self) -> str:
        return f"{self.apps_directory}/{self.service_and_destination}"

    @property
    def env_directory(self) -> str:
        return f"{self.app_directory}/env"

    @property
    def assets_directory(self) -> str:
        return f"{self.app_directory}/assets"

    # ----- version and image names -----

    @property
    def version(self) -> str:
        """``--version``, else ``VERSION`` from the environment, else the git commit (see ``core/git.py``)."""
        if self._version is None:
            if is_present(self._declared_version):
                self._version = str(self._declared_version)
            elif os.environ.get("VERSION") is not None:
                self._version = os.environ["VERSION"]
            else:
                self._version = self._git_version()
        return self._version

    @version.setter
    def version(self, value: str | None) -> None:
        self._declared_version, self._version = value, None

    def _git_version(self) -> str:
        from kamalpy import git

        revision = git.revision() if git.used() else None
        if revision is None:
            raise ConfigurationError(f"Can't use commit hash as version, no git repository found in {os.getcwd()}")
        # A git-clone build builds the commit, so local changes can't be in the image; otherwise mark them.
        if not self.builder.git_clone(True) and git.uncommitted_changes():
            revision += f"_uncommitted_{os.urandom(8).hex()}"
        return revision

    @property
    def abbreviated_version(self) -> str:
        return self.version if "_" in self.version else self.version[:7]

    @property
    def repository(self) -> str:
        return "/".join(p for p in (self.registry.server, self.image) if p)

    @property
    def absolute_image(self) -> str:
        return f"{self.repository}:{self.version}"

    @property
    def latest_tag(self) -> str:
        return "-".join(p for p in ("latest", self.destination) if p)

    @property
    def latest_image(self) -> str:
        return f"{self.repository}:{self.latest_tag}"

    @property
    def service_with_version(self) -> str:
        return f"{self.service}-{self.version}"

    def volume_args(self) -> list[str]:
        return argumentize("--volume", self.raw.get("volumes") or [])

    def logging_args(self) -> list[str]:
        return self.logging.args()

    # ----- roles, hosts, accessories -----

    def role(self, name: str) -> Role | None:
        return next((role for role in self.roles if role.name == str(name)), None)

    def accessory(self, name: str) -> Accessory | None:
        return next((acc for acc in self.accessories if acc.name == str(name)), None)

    @property
    def primary_role(self) -> Role | None:
        return self.role(self.primary_role_name)

    @property
    def primary_host(self) -> str | None:
        role = self.primary_role
        return role.primary_host if role else None

    @property
    def all_hosts(self) -> list[str]:
        """Hosts of the roles (sorted by role name), then of the accessories, each once."""
        hosts = [h for role in self.roles for h in role.hosts] + [h for a in self.accessories for h in a.hosts]
        return list(dict.fromkeys(hosts))

    @property
    def app_hosts(self) -> list[str]:
        return list(dict.fromkeys(h for role in self.roles for h in role.hosts))

    def host_roles(self, host: str) -> list[Role]:
        return [role for role in self.roles if host in role.hosts]

    def host_accessories(self, host: str) -> list[Accessory]:
        return [acc for acc in self.accessories if host in acc.hosts]

    @property
    def proxy_roles(self) -> list[Role]:
        return [role for role in self.roles if role.running_proxy]

    @property
    def proxy_role_names(self) -> list[str]:
        return [role.name for role in self.proxy_roles]

    @property
    def proxy_accessories(self) -> list[Accessory]:
        return [acc for acc in self.accessories if acc.running_proxy]

    @property
    def proxy_hosts(self) -> list[str]:
        hosts = [h for r in self.proxy_roles for h in r.hosts] + [h for a in self.proxy_accessories for h in a.hosts]
        return list(dict.fromkeys(hosts))

    def proxy_run(self, host: str) -> dict[str, Any] | None:
        """The proxy ``run`` settings for a host (validated to be the same for everything on it)."""
        runs = self._proxy_runs(host)
        return runs[0] if runs else None

    def _proxy_runs(self, host: str) -> list[dict[str, Any]]:
        proxies = [r.proxy for r in self.host_roles(host)] + [a.proxy for a in self.host_accessories(host)]
        return [p.run for p in proxies if p is not None and p.run is not None]

    def env_tag(self, name: str) -> Env | None:
        tags = (self.raw.get("env") or {}).get("tags") if isinstance(self.raw.get("env"), Mapping) else None
        if not isinstance(tags, Mapping) or str(name) not in {str(k) for k in tags}:
            return None
        raw = next(v for k, v in tags.items() if str(k) == str(name))
        return Env(raw, self.secret_lookup)

    @property
    def boot(self) -> Boot:
        return Boot(self.raw.get("boot"), len(self.all_hosts))

    def specifics(self, hosts: Any = None, roles: Any = None, primary: bool = False) -> Specifics:
        """Hosts and roles selected by ``-h``/``-r``/``-p`` (raises ``No --hosts match for ...``)."""
        from kamalpy.config.specifics import Specifics

        return Specifics(self, hosts, roles, primary)

    # ----- hooks, secrets, plugins -----

    def hooks_output_for(self, hook: str) -> str | None:
        """``quiet``/``verbose`` for a hook's output, or None for the default (also for values Kamal ignores)."""
        setting = self.raw.get("hooks_output")
        if isinstance(setting, Mapping):
            setting = setting.get(hook)
        return _hooks_output_level(setting)

    @property
    def secrets(self) -> Any:
        """The secrets of this destination (``.kamal/secrets[-common]``), read on first use."""
        if self._secrets is None:
            from kamalpy.secrets.store import Secrets

            self._secrets = Secrets(self.secrets_path, self.destination, self.hooks)
        return self._secrets

    def secret_lookup(self, name: str) -> str:
        return self.secrets[name]

    def extension(self, name: str) -> Any:
        """A plugin key's validated value, or the default its ``ConfigKey`` declares."""
        if name in self.raw:
            return self.raw[name]
        key = self.extension_keys.get(name)
        return key.default if key is not None else None

    def to_h(self) -> dict[str, Any]:
        """What ``kamalpy config`` prints (the same data as ``kamal config``)."""
        from kamalpy.config.dump import config_to_h

        return config_to_h(self)

    # ----- whole-configuration checks -----

    def _ensure_destination_if_required(self) -> None:
        if self.require_destination and self.destination is None:
            raise ConfigurationError("You must specify a destination")

    def _ensure_required_keys_present(self) -> None:
        for key in ("service", "registry"):
            if not is_present(self.raw.get(key)):
                raise ConfigurationError(f"Missing required configuration for {key}")
        if not is_present(self.image):
            raise ConfigurationError("Missing required configuration for image")
        if self.raw.get("servers") is None:
            if not is_present(self.raw.get("accessories")):
                raise ConfigurationError("No servers or accessories specified")
            return
        primary = self.primary_role
        if primary is None:
            raise ConfigurationError(f"The primary_role {self.primary_role_name} isn't defined")
        if not primary.hosts:
            raise ConfigurationError(f"No servers specified for the {primary.name} primary_role")
        if not self.allow_empty_roles:
            for role in self.roles:
                if not role.hosts:
                    raise ConfigurationError(f"No servers specified for the {role.name} role. "
                                             "You can ignore this with allow_empty_roles: true")

    def _ensure_valid_kamal_version(self) -> None:
        minimum = self.minimum_version
        if minimum is not None and version_newer(minimum, KAMAL_COMPAT_VERSION):
            raise ConfigurationError(f"Current version is {KAMAL_COMPAT_VERSION}, minimum required is {minimum}")

    def _ensure_retain_containers_valid(self) -> None:
        if self.retain_containers < 1:
            raise ConfigurationError("Must retain at least 1 container")

    def _ensure_valid_service_name(self) -> None:
        if not _SERVICE_NAME.fullmatch(str(self.service)):
            raise ConfigurationError(
                "Service name can only include alphanumeric characters, hyphens, and underscores")

    def _ensure_no_traefik_reboot_hooks(self) -> None:
        found = [name for name in OLD_PROXY_HOOKS if (Path(self.hooks_path) / name).exists()]
        if found:
            raise ConfigurationError(f"Found {', '.join(found)}, these should be renamed to (pre|post)-proxy-reboot")

    def _ensure_valid_role_proxies(self) -> None:
        for role in self.roles:
            proxy = role.proxy
            if proxy is not None:
                # Kamal checks the merged proxy again, under the root's name.
                validate_proxy(proxy.raw, "proxy")
            role.ensure_one_host_for_ssl()

    def _ensure_driver_only_in_root_proxy(self) -> None:
        # One proxy container per host serves every role and accessory on it, so one driver for all.
        sections = [(f"servers/{role.name}/proxy", role.settings.get("proxy")) for role in self.roles]
        sections += [(f"{acc.context}/proxy", acc.raw.get("proxy")) for acc in self.accessories]
        for context, raw in sections:
            if isinstance(raw, Mapping):
                for key in PROXY_ROOT_ONLY_KEYS:
                    if key in raw:
                        raise ConfigurationError(f"{context}/{key}: can only be set in the root proxy section")

    @property
    def proxy_driver(self) -> str:
        """The proxy driver's name (kamalpy's ``proxy.driver``; ``kamal-proxy`` by default)."""
        return str(self.proxy.raw.get("driver") or DEFAULT_PROXY_DRIVER)

    def _ensure_unique_hosts_for_ssl_roles(self) -> None:
        hosts = [h for role in self.roles if role.ssl for h in role.proxy.hosts]  # type: ignore[union-attr]
        duplicates = [h for h in dict.fromkeys(hosts) if hosts.count(h) > 1]
        if duplicates:
            raise ConfigurationError(f"Different roles can't share the same host for SSL: {', '.join(duplicates)}")

    def _ensure_local_registry_remote_builder_has_ssh_url(self) -> None:
        remote = self.builder.remote
        # Kamal asks Docker whether the remote builder will be used; without Docker here, any remote counts.
        if self.registry.local and remote and urlparse(str(remote)).scheme != "ssh":
            raise ConfigurationError("Local registry with remote builder requires an SSH URL (e.g., ssh://user@host)")

    def _ensure_no_conflicting_proxy_runs(self) -> None:
        # Compared by value: roles sharing the root `proxy.run` agree (Kamal 2.11 compared objects and refused).
        for host in self.all_hosts:
            distinct: list[dict[str, Any]] = []
            for run in self._proxy_runs(host):
                if run not in distinct:
                    distinct.append(run)
            if len(distinct) > 1:
                raise ConfigurationError(f"Conflicting proxy run configurations for host {host}")

    def _ensure_valid_hooks_output(self) -> None:
        # Kamal checks a symbol or string, or each value of a hash; any other value (1, true) is ignored.
        setting = self.raw.get("hooks_output")
        if isinstance(setting, Mapping):
            for hook, level in setting.items():
                self._check_hooks_output_level(level, hook)
        elif isinstance(setting, str):
            self._check_hooks_output_level(setting)

    def _ensure_safe_values(self) -> None:
        # kamalpy's own checks (after Kamal's, so Kamal's messages come first): see config/values.py.
        values.check_configuration(self)
        if is_present(self._declared_version):
            values.check_version(str(self._declared_version))
        elif os.environ.get("VERSION") is not None:
            values.check_version(os.environ["VERSION"], "VERSION")

    @staticmethod
    def _check_hooks_output_level(level: Any, hook: Any = None) -> None:
        # In a hash Kamal calls `level.to_sym`, which fails for numbers and booleans: refused here too.
        name = _hooks_output_level(level)
        if name not in HOOKS_OUTPUT_LEVELS:
            where = f" for hook '{_ruby_to_s(hook)}'" if hook is not None else ""
            shown = _ruby_to_s(level) if name is None else name
            raise ConfigurationError(
                f"Invalid hooks_output '{shown}'{where}, must be one of: {', '.join(HOOKS_OUTPUT_LEVELS)}")
