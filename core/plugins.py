"""The plugin manager: built-in plugins first, then the ``kamalpy`` entry-point group.

See :mod:`kamalpy.hookspecs` for the override rule. Disable a plugin by name with
``--disable-plugin NAME`` (repeatable, or a comma list) or ``KAMALPY_DISABLE_PLUGINS=a,b``.
Built-in plugins are named after their module below ``kamalpy.builtin_plugins``
(e.g. ``secret_adapters.test``); entry-point plugins by their entry-point name.

``KAMALPY_PLUGINS=module.a,module.b`` registers importable modules as plugins after all others
(like ``PYTEST_PLUGINS``): a project can use a plugin of its own without packaging it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

import pluggy

from kamalpy import __version__, hookspecs
from kamalpy.errors import PluginError

ENTRY_POINT_GROUP = "kamalpy"
DISABLE_ENV = "KAMALPY_DISABLE_PLUGINS"
MODULES_ENV = "KAMALPY_PLUGINS"

BUILTIN_PLUGINS = (
    "hook_runner",
    "config_loading",
    "core_commands",
    "docs_init",
    "secrets_commands",
    "server_commands",
    "lock_commands",
    "registry_commands",
    "registry_docker",
    "registry_local",
    "prune_commands",
    "boot_rolling",
    "proxy_kamal",
    "proxy_caddy",
    "proxy_commands",
    "app_commands",
    "accessory_commands",
    "deploy_commands",
    "upgrade_commands",
    "build_commands",
    "builders",
    "secret_adapters.test",
    "secret_adapters.one_password",
    "secret_adapters.bitwarden",
    "secret_adapters.bitwarden_secrets_manager",
    "secret_adapters.aws_secrets_manager",
    "secret_adapters.doppler",
    "secret_adapters.enpass",
    "secret_adapters.gcp_secret_manager",
    "secret_adapters.last_pass",
    "secret_adapters.passbolt",
    "secret_adapters.keepassxc",
    "secret_adapters.pass_store",
    "sandbox",
    "transport_paramiko",
    "live_view",
)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


def disabled_from_env(environ: os._Environ[str] | dict[str, str] | None = None) -> set[str]:
    value = (environ if environ is not None else os.environ).get(DISABLE_ENV, "")
    return split_names([value])


def split_names(values: Iterable[str]) -> set[str]:
    return {name.strip() for value in values for name in value.split(",") if name.strip()}


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus where each plugin came from (for ``kamalpy plugins``)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.origins: dict[str, tuple[str, str]] = {}

    def register_named(self, plugin: object, name: str, distribution: str, version: str) -> None:
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:  # e.g. a hookimpl with an argument the hook does not have
            raise PluginError(f"Plugin '{name}' ({distribution or 'unknown distribution'}) is invalid: {exc}") from exc
        self.origins[name] = (distribution, version)

    def check_hooks(self) -> None:
        """pluggy's ``check_pending`` with kamalpy's message: a ``kamalpy_*`` hook no hookspec knows is an error."""
        for name in dir(self.hook):
            caller = getattr(self.hook, name)
            if not name.startswith(hookspecs.PROJECT_NAME) or getattr(caller, "spec", True) is not None:
                continue
            for impl in caller.get_hookimpls():
                if not impl.optionalhook:
                    raise PluginError(f"Plugin '{impl.plugin_name}' implements unknown hook '{name}' "
                                      "(misspelled? see docs/hooks.md)")

    def plugin_infos(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:  # blocked
                continue
            hooks = tuple(sorted(caller.name for caller in self.get_hookcallers(plugin) or ()))
            distribution, version = self.origins.get(name, ("", ""))
            infos.append(PluginInfo(name, distribution, version, hooks))
        return infos


def build_plugin_manager(disabled: Iterable[str] = (), load_entry_points: bool = True) -> PluginManager:
    """Register the built-in plugins, then every entry-point plugin, skipping disabled names."""
    disabled = set(disabled)
    pm = PluginManager()
    for name in disabled:
        pm.set_blocked(name)
    for name in BUILTIN_PLUGINS:
        if name in disabled:
            continue
        module = importlib.import_module(f"kamalpy.builtin_plugins.{name}")
        pm.register_named(module, name, "kamalpy", __version__)
    if load_entry_points:
        _load_entry_points(pm, disabled)
    for module_name in dict.fromkeys(n.strip() for n in os.environ.get(MODULES_ENV, "").split(",")):
        if not module_name or module_name in disabled:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(f"Could not load plugin '{module_name}' from {MODULES_ENV}: {exc}") from exc
        pm.register_named(module, module_name, MODULES_ENV, "")
    pm.check_hooks()
    return pm


def _load_entry_points(pm: PluginManager, disabled: set[str]) -> None:
    from kamalpy.entry_points import entry_points

    found = sorted(entry_points(ENTRY_POINT_GROUP), key=lambda ep: (ep.distribution, ep.name))
    for ep in found:
        if ep.name in disabled:
            continue
        if pm.has_plugin(ep.name):
            raise PluginError(f"Plugin name '{ep.name}' from {ep.distribution or '?'} "
                              f"is already taken by {pm.origins[ep.name][0]}")
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not produce a traceback
            raise PluginError(f"Could not load plugin '{ep.name}' ({ep.value}): {exc}") from exc
        pm.register_named(plugin, ep.name, ep.distribution, ep.version)
