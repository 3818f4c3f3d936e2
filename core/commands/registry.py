"""Registry login/logout and the local registry container (``registry.server: localhost:PORT``).

Login differs from Kamal on purpose: ``docker login SERVER -u "USER" --password-stdin`` with the
password sent on the command's standard input, so it is on no command line, in no process list and
in no log. The username is marked sensitive like Kamal's (logs show ``[REDACTED]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from kamalpy.commands.base import Command, Sensitive, any_of, combine, docker
from kamalpy.config.args import escape_shell_value
from kamalpy.errors import HostErrors, KamalpyError
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration
    from kamalpy.config.registry import Registry

LOCAL_REGISTRY_CONTAINER = "kamal-docker-registry"
LOCAL_REGISTRY_CONTAINER_PORT = 5000  # where the registry listens inside its container


class LocalRegistryError(KamalpyError):
    """``registry login``/``logout`` asked of a ``localhost:PORT`` registry (Kamal raises a RuntimeError)."""


class RegistryLoginError(KamalpyError):
    """``docker login`` was refused (bad credentials, unreachable registry)."""


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


def login_failed(registry: Registry, error: KamalpyError) -> KamalpyError:
    """One line for a failed ``docker login``: which registry, where, and docker's reason.

    Other errors (a host that could not be reached, say) are returned unchanged.
    """
    failures = error.errors if isinstance(error, HostErrors) else {"local": error}
    if not failures or not all(isinstance(failure, CommandFailed) for failure in failures.values()):
        return error
    first = next(iter(failures.values()))
    assert isinstance(first, CommandFailed)
    reason = (first.result.stderr or first.result.stdout).strip().splitlines()
    detail = reason[-1] if reason else f"exit status {first.result.exit_status}"
    if "401" in detail or "unauthorized" in detail.lower():
        detail += " (check registry.username and registry.password)"
    where = ", ".join(failure.result.host for failure in failures.values() if isinstance(failure, CommandFailed))
    return RegistryLoginError(f"Registry login to {registry.server or 'Docker Hub'} failed on {where}: {detail}")


def logout(config: Configuration, registry: Registry | None = None) -> Command:
    registry = _registry(config, registry)
    if registry.local:
        raise LocalRegistryError(
            "Cannot use logout command with a local registry. Use `kamal registry remove` instead.")
    return docker("logout", registry.server)


def setup(config: Configuration, registry: Registry | None = None) -> Command:
    """Start the local registry container, creating it on first use (runs on the deploying machine).

    Published on the loopback only: the servers reach it through SSH reverse forwards, nobody else at all.
    The image is Kamal's ``registry:3`` unless kamalpy's ``registry.local_image`` names another.
    """
    registry = _registry(config, registry)
    return any_of(docker("start", LOCAL_REGISTRY_CONTAINER),
                  docker("run", "--detach", "-p", f"127.0.0.1:{registry.local_port}:{LOCAL_REGISTRY_CONTAINER_PORT}",
                         "--name", LOCAL_REGISTRY_CONTAINER, registry.local_image))


def remove() -> Command:
    """Stop and remove the local registry container (its images go with it: nothing else keeps them)."""
    return combine(docker("stop", LOCAL_REGISTRY_CONTAINER), docker("rm", LOCAL_REGISTRY_CONTAINER))
