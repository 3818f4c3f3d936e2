"""The registry strategy interface: how Docker clients here and on the servers reach the image registry.

A strategy is offered by a plugin through ``kamalpy_registry_strategies`` (``{name: class}``) and chosen
with ``registry.strategy: NAME`` (a kamalpy extension). Without it, a ``localhost:PORT`` server picks
the built-in ``local`` strategy and any other server ``docker``.

The commands around a strategy are the same for every strategy: ``registry setup|remove|login|logout``
with ``-L``/``-R``, the once-per-host login before pulls (``build pull``, ``proxy boot``), ``remove``'s
logout. A short-lived-token registry overrides :meth:`RegistryStrategy.password`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

from kamalpy.commands import registry as registry_commands
from kamalpy.errors import KamalpyError
from kamalpy.execution import Step
from kamalpy.local_registry import ensure_docker

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.config.model import Configuration
    from kamalpy.config.registry import Registry
    from kamalpy.execution import Session

STRATEGY_KEY = "strategy"  # registry.strategy (kamalpy extension)
DOCKER, LOCAL = "docker", "local"


class RegistryStrategy:
    """Base class of registry strategies: ``docker login``/``docker logout`` with the configured credentials.

    A subclass sets :attr:`name` and overrides what differs: :meth:`password` (a token fetched at login
    time), :meth:`login_step`/:meth:`logout_step` (other commands), :meth:`pull_access` (something the
    servers need while they pull), :meth:`setup`/:meth:`remove` (a registry of its own to run).
    """

    name: ClassVar[str] = ""

    def __init__(self, commander: Commander) -> None:
        self.commander = commander

    @property
    def config(self) -> Configuration:
        return self.commander.config

    @property
    def registry(self) -> Registry:
        return self.config.registry

    # ----- what every command uses -----

    def password(self) -> str:
        """The password ``docker login`` reads on its standard input (default: ``registry.password``)."""
        return self.registry.password or ""

    def login_step(self) -> Step | None:
        """The step that logs a Docker client in (here or on a server); None when there is nothing to log in to."""
        login = registry_commands.login(self.config)
        return Step(login.command, stdin=self.password().encode())

    def logout_step(self) -> Step | None:
        return Step(registry_commands.logout(self.config))

    def login_failed(self, error: KamalpyError) -> KamalpyError:
        """One line for a failed login (which registry, where, and why)."""
        return registry_commands.login_failed(self.registry, error)

    def login_here(self, session: Session) -> None:
        """Before a build pushes: log in on the deploying machine."""
        step = self.login_step()
        if step is not None:
            session.execute(step.command, stdin=step.stdin)

    @contextlib.contextmanager
    def pull_access(self, hosts: Sequence[str]) -> Iterator[None]:
        """While the block runs, ``hosts`` can pull from the registry (the login is a step of the pull itself)."""
        yield

    # ----- ``registry setup|remove|login|logout`` -----

    def setup(self, *, skip_local: bool, skip_remote: bool) -> None:
        """``registry setup``: log in locally and on the servers."""
        self.login(skip_local=skip_local, skip_remote=skip_remote)

    def remove(self, *, skip_local: bool, skip_remote: bool) -> None:
        """``registry remove``: log out locally and on the servers."""
        self.logout(skip_local=skip_local, skip_remote=skip_remote)

    def login(self, *, skip_local: bool, skip_remote: bool) -> None:
        commander = self.commander
        step = self.login_step()
        if step is None:
            return
        if not skip_local:
            ensure_docker()
        try:
            if not skip_local:
                commander.executor.local().execute(step.command, stdin=step.stdin)
            if not skip_remote:
                commander.on(commander.hosts, lambda s: s.execute(step.command, stdin=step.stdin))
        except KamalpyError as exc:
            raise self.login_failed(exc) from exc

    def logout(self, *, skip_local: bool, skip_remote: bool) -> None:
        commander = self.commander
        step = self.logout_step()
        if step is None:
            return
        if not skip_local:
            commander.executor.local().execute(step.command)
        if not skip_remote:
            commander.on(commander.hosts, lambda s: s.execute(step.command))


def strategy_name(config: Configuration) -> str:
    """``registry.strategy`` when set, else ``local`` for a ``localhost:PORT`` server and ``docker`` otherwise."""
    chosen = config.registry.raw.get(STRATEGY_KEY)
    return str(chosen) if chosen else (LOCAL if config.registry.local else DOCKER)


def select(commander: Commander) -> RegistryStrategy:
    """The strategy for this configuration, from the plugins that offer one."""
    wanted = strategy_name(commander.config)
    strategies = commander.run.hooks.registry_strategies()
    if wanted not in strategies:
        available = ", ".join(sorted(strategies)) or "none"
        raise KamalpyError(f"registry/{STRATEGY_KEY}: unknown registry strategy {wanted!r} (available: {available})")
    strategy = strategies[wanted](commander)
    if not isinstance(strategy, RegistryStrategy):
        raise KamalpyError(f"registry/{STRATEGY_KEY}: {wanted!r} is not a RegistryStrategy")
    return strategy
