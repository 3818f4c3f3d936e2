"""The public API for plugin authors: ``from kamalpy.plugin import hookimpl, ConfigKey, ...``.

A plugin is a module (or object) with ``@hookimpl`` functions named after the hooks in
:mod:`kamalpy.hookspecs`, registered through the ``kamalpy`` entry-point group::

    [project.entry-points.kamalpy]
    deploy_window = "kamalpy_deploy_window.plugin"

Everything a plugin needs is importable from here; the other modules may change between versions.
The base classes, session and step types and errors live in their own modules and are loaded on first
use (:data:`__getattr__`), so that importing this module stays cheap for every command.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pluggy

from kamalpy.hookspecs import PROJECT_NAME

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True)
class ConfigKey:
    """A top-level configuration key owned by a plugin.

    ``schema`` is a JSON Schema (draft 2020-12) for the key's value; ``default`` is used when the
    key is absent (it is not validated). ``description`` appears in ``kamalpy docs``.
    """

    name: str
    schema: Mapping[str, Any]
    default: Any = None
    description: str = ""


@dataclass
class CommandContext:
    """What lifecycle hooks know about the running command."""

    path: tuple[str, ...]
    """Command path without the program name, e.g. ``("deploy",)`` or ``("app", "boot")``."""
    options: Any
    """The global options (:class:`kamalpy.cli.options.GlobalOptions`)."""
    params: dict[str, Any] = field(default_factory=dict)
    """The command's own parameters, by name."""
    _config_loader: Callable[[], Configuration] | None = None

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def config(self) -> Configuration:
        """The configuration, loaded on first use (raises ConfigurationError when invalid)."""
        if self._config_loader is None:
            raise RuntimeError("this command has no configuration")
        return self._config_loader()


@dataclass
class HookContext:
    """A Kamal hook moment (``pre-connect``, ``pre-deploy``, ``docker-setup``, ...)."""

    name: str
    """The Kamal hook name."""
    commander: Any
    """The run's :class:`kamalpy.commander.Commander` (config, hosts, output, executor)."""
    env_factory: Callable[[], dict[str, str]] = field(default=dict, repr=False)

    @functools.cached_property
    def env(self) -> dict[str, str]:
        """Kamal's ``KAMAL_*`` variables for this moment (plus secrets where Kamal passes them)."""
        return self.env_factory()


class SecretAdapter:
    """Base class for secret adapters offered through ``kamalpy_secret_adapters``.

    Subclasses set ``requires_account`` and implement :meth:`fetch`. Errors are raised as
    :class:`kamalpy.errors.SecretsError` with a one-line message that never contains a value.
    """

    requires_account: ClassVar[bool] = False

    def fetch(self, secrets: list[str], account: str | None = None, from_: str | None = None) -> dict[str, str]:
        raise NotImplementedError


@dataclass
class FlowStep:
    """One step of a core flow (``deploy``, ``setup``, ``remove``...), given to a ``kamalpy_flow_steps`` function."""

    name: str
    """The step's name, e.g. ``proxy.boot``."""
    commander: Any
    """The run's :class:`kamalpy.commander.Commander` (config, hosts, output, executor, lock, proxy, registry)."""
    params: dict[str, Any] = field(default_factory=dict)
    """What the flow passes to this step (e.g. ``force`` for ``proxy.remove``)."""


@dataclass
class BootContext:
    """What ``kamalpy_boot_app`` gets: boot ``version`` on ``hosts``, replacing what runs there."""

    commander: Any
    """The run's :class:`kamalpy.commander.Commander`."""
    version: str
    hosts: list[str]
    """The selected app hosts, in order."""
    role_boot: Callable[..., None] = field(repr=False, default=lambda *a, **k: None)
    role_version: Callable[..., str | None] = field(repr=False, default=lambda *a, **k: None)

    def roles_on(self, host: str) -> list[Any]:
        """The selected roles of ``host``."""
        return list(self.commander.specifics.roles_on(host))

    def boot_role(self, session: Any, role: Any, barrier: Any = None) -> None:
        """Kamal's replacement of one role's container on the session's host: rename a clashing container,
        start the new one (env file, ``docker run``), let the proxy switch to it once healthy (or wait until
        Docker reports it ready), then stop the old one. Raises :class:`BootError` when it never gets healthy."""
        self.role_boot(session, role, barrier)

    def running_version(self, session: Any, role: Any) -> str | None:
        """The version of ``role``'s running container on the session's host (Kamal's ``docker ps``), None when
        none runs: what a plugin boots back after a failed canary."""
        return self.role_version(session, role)

    def run_hook(self, name: str, hosts: list[str]) -> None:
        """Fire a Kamal hook moment (``pre-app-boot``, ``post-app-boot``) for ``hosts``."""
        self.commander.run_hook(name, hosts=hosts)


# Loaded on first use: the base classes and types of other modules, re-exported as the public API.
_LAZY = {
    "BuilderStrategy": "kamalpy.builders",
    "BuildRequest": "kamalpy.builders",
    "ProxyDriver": "kamalpy.proxy_driver",
    "BootError": "kamalpy.proxy_driver",
    "RegistryStrategy": "kamalpy.registry_strategy",
    "Session": "kamalpy.execution",
    "LocalSession": "kamalpy.execution",
    "Step": "kamalpy.execution",
    "WriteFile": "kamalpy.execution",
    "CommandResult": "kamalpy.transport",
    "Stream": "kamalpy.transport",
    "CommandFailed": "kamalpy.transport",
    "Transport": "kamalpy.transport",
    "Connection": "kamalpy.transport",
    "SshSettings": "kamalpy.transport",
    "TransportError": "kamalpy.transport",
    "KamalpyError": "kamalpy.errors",
    "ConfigurationError": "kamalpy.errors",
    "SecretsError": "kamalpy.errors",
    "PluginError": "kamalpy.errors",
    "HookError": "kamalpy.errors",
    "CommandRefused": "kamalpy.errors",
    "Configuration": "kamalpy.config.model",
    "current_run": "kamalpy.cli.base",
    "Commander": "kamalpy.commander",
    "Output": "kamalpy.output",
    "render": "kamalpy.commands.base",  # a Kamal command array as SSHKit sends it (redact=True: as logs show it)
    "shell_quote_single": "kamalpy.commands.base",
}

__all__ = ["hookimpl", "ConfigKey", "CommandContext", "HookContext", "SecretAdapter", "FlowStep", "BootContext",
           "command", "group", "run_cli", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def run_cli(args: list[str]) -> int:
    """Run kamalpy in-process with ``args`` (for plugin tests); returns the exit code."""
    from kamalpy.cli.main import main

    return main(args, standalone=False)


def command(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """``click.command`` that adds kamalpy's global options and fires the lifecycle hooks."""
    from kamalpy.cli.base import command as _command

    return _command(*args, **kwargs)


def group(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """``click.group`` whose subcommands get kamalpy's global options and lifecycle hooks."""
    from kamalpy.cli.base import group as _group

    return _group(*args, **kwargs)
