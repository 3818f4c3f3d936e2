"""Registry login/logout and the local registry container.

Login differs from Kamal on purpose: ``docker login SERVER -u "USER" --password-stdin`` with the
password sent on the command's standard input, so it is on no command line, in no process list and
in no log. The username is marked sensitive like Kamal's (logs show ``[REDACTED]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from kamalpy.commands.base import Command, Sensitive, any_of, combine, docker
from kamalpy.config.args import escape_shell_value
from kamalpy.errors import KamalpyError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration
    from kamalpy.config.registry import Registry

LOCAL_REGISTRY_CONTAINER = "kamal-docker-registry"
LOCAL_REGISTRY_IMAGE = "registry:3"
LOCAL_REGISTRY_CONTAINER_PORT = 5000


class LocalRegistryError(KamalpyError):
    """``registry login``/``logout`` asked of a ``localhost:PORT`` registry (Kamal raises a RuntimeError)."""


class Login(NamedTuple):
    command: Command
    stdin: bytes  # the password, for the command's standard input


def _registry(config: Configuration, registry: Registry | None) -> Registry:
    return registry if registry is not None else config.registry


def login(config: Configuration, registry: Registry | None = None) -> Login:
    """Log in to ``registry`` (default: the app's); no server means Docker Hub."""
    registry = _registry(config, registry)
    if registry.local:
        raise LocalRegistryError("Cannot use login command with a local registry. Use `kamal registry setup` instead.")
    command = docker("login", registry.server, "-u", Sensitive(escape_shell_value(registry.username)),
                     "--password-stdin")
    return Login(command, (registry.password or "").encode())


def logout(config: Configuration, registry: Registry | None = None) -> Command:
    registry = _registry(config, registry)
    if registry.local:
        raise LocalRegistryError(
            "Cannot use logout command with a local registry. Use `kamal registry remove` instead.")
    return docker("logout", registry.server)


def setup(config: Configuration, registry: Registry | None = None) -> Command:
    """Start the local registry container, creating it on first use (runs on the deploying machine)."""
    port = _registry(config, registry).local_port
    return any_of(docker("start", LOCAL_REGISTRY_CONTAINER),
                  docker("run", "--detach", "-p", f"127.0.0.1:{port}:{LOCAL_REGISTRY_CONTAINER_PORT}",
                         "--name", LOCAL_REGISTRY_CONTAINER, LOCAL_REGISTRY_IMAGE))


def remove() -> Command:
    return combine(docker("stop", LOCAL_REGISTRY_CONTAINER), docker("rm", LOCAL_REGISTRY_CONTAINER))
