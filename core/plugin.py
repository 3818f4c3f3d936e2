"""The public API for plugin authors: ``from kamalpy.plugin import hookimpl, ConfigKey, ...``.

A plugin is a module (or object) with ``@hookimpl`` functions named after the hooks in
:mod:`kamalpy.hookspecs`, registered through the ``kamalpy`` entry-point group::

    [project.entry-points.kamalpy]
    deploy_window = "kamalpy_deploy_window.plugin"
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


def command(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """``click.command`` that adds kamalpy's global options and fires the lifecycle hooks."""
    from kamalpy.cli.base import command as _command

    return _command(*args, **kwargs)


def group(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """``click.group`` whose subcommands get kamalpy's global options and lifecycle hooks."""
    from kamalpy.cli.base import group as _group

    return _group(*args, **kwargs)
