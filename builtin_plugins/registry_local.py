"""Built-in plugin: the ``local`` registry strategy (``registry.server: localhost:PORT``).

The registry is a container on the deploying machine, published on its loopback only; the servers pull
from ``localhost:PORT`` through SSH reverse forwards opened for the pulls (kamalpy.local_registry).
There is nothing to log in to: ``registry login``/``logout`` refuse, as Kamal's do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kamalpy import local_registry
from kamalpy.commands import registry as registry_commands
from kamalpy.plugin import RegistryStrategy, hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.plugin import Session, Step


class LocalRegistry(RegistryStrategy):
    name = "local"

    def login_step(self) -> Step | None:
        return None

    def logout_step(self) -> Step | None:
        return None

    def login_here(self, session: Session) -> None:
        local_registry.start(self.commander)  # the registry must run before the build pushes to it

    @contextmanager
    def pull_access(self, hosts: Sequence[str]) -> Iterator[None]:
        with local_registry.forwards(self.commander, hosts):
            yield

    def setup(self, *, skip_local: bool, skip_remote: bool) -> None:
        if not skip_local:
            local_registry.ensure_docker()
            local_registry.start(self.commander)

    def remove(self, *, skip_local: bool, skip_remote: bool) -> None:
        if not skip_local:
            local_registry.stop(self.commander)

    def login(self, *, skip_local: bool, skip_remote: bool) -> None:
        registry_commands.login(self.config)  # Kamal's refusal, before anything runs

    def logout(self, *, skip_local: bool, skip_remote: bool) -> None:
        registry_commands.logout(self.config)


@hookimpl
def kamalpy_registry_strategies() -> dict[str, Any]:
    return {LocalRegistry.name: LocalRegistry}
