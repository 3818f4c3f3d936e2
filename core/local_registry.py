"""The local registry mode (``registry.server: localhost:PORT``): no registry shared with anybody.

The registry is a container on the deploying machine, published on its loopback only. Servers pull
from ``localhost:PORT`` too: for the pulls, each server's port PORT is an SSH reverse forward back to
this machine (Kamal opens the same forwards with net-ssh), closed again as soon as the pulls are done.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from kamalpy.commands import registry as registry_commands
from kamalpy.errors import KamalpyError
from kamalpy.transport import CommandFailed, TransportError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.execution import Session
    from kamalpy.transport import Forward

# What dockerd says when the published port is taken (docker-proxy's bind, or another container's port).
PORT_TAKEN = ("address already in use", "port is already allocated")
NO_IMAGE = "Unable to find image"  # docker run's first line before it tries to pull


class DependencyError(KamalpyError):
    """A tool the deploying machine needs is missing (Kamal: ``Kamal::Cli::DependencyError``)."""


def ensure_docker() -> None:
    """The docker CLI must be on this machine; the registry needs no buildx, so only docker is checked."""
    if shutil.which("docker") is None:
        raise DependencyError("Docker is not installed locally")


def start(commander: Commander) -> None:
    """``docker start kamal-docker-registry || docker run ...`` here, with one clear line when it fails."""
    registry = commander.config.registry
    session = commander.executor.local()
    try:
        session.execute(registry_commands.setup(commander.config))
    except CommandFailed as exc:
        output = exc.result.stderr + exc.result.stdout
        if any(marker in output for marker in PORT_TAKEN):
            # `docker run` created the container before its port failed: drop it, so that a later
            # `docker start` does not find a container that can never start.
            _remove_never_started(session)
            raise KamalpyError(f"Cannot start the local registry: port {registry.local_port} is already in use "
                               f"on this machine (free it, or choose another port in registry.server)") from exc
        if NO_IMAGE in output:
            raise KamalpyError(f"Cannot start the local registry: image {registry.local_image} is not here and cannot "
                               f"be pulled ({_reason(output)}); set registry.local_image to an image this machine "
                               f"can pull") from exc
        raise


def _reason(output: str) -> str:
    """Docker's own error line (not its ``Run 'docker run --help'`` footer)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "rror" in line]
    return (errors or lines or ["no reason given"])[-1]


def _remove_never_started(session: Session) -> None:
    name = registry_commands.LOCAL_REGISTRY_CONTAINER
    state = session.execute(["docker", "container", "inspect", "-f", "'{{.State.Status}}'", name],
                            raise_on_non_zero=False, quiet=True)
    if state.ok and state.stdout.strip() == "created":
        session.execute(["docker", "container", "rm", name], raise_on_non_zero=False, quiet=True)


def stop(commander: Commander) -> None:
    """Stop and remove the registry container; a registry that is not there is fine (as in Kamal)."""
    commander.executor.local().execute(registry_commands.remove(), raise_on_non_zero=False)


@contextlib.contextmanager
def forwards(commander: Commander, hosts: Sequence[str]) -> Iterator[None]:
    """For a local registry: each host's ``localhost:PORT`` forwarded here while the block runs.

    Nothing happens for another registry, in a dry run, or without hosts. Every forward is closed on
    the way out, also when the block fails, so no server keeps listening on PORT afterwards.
    """
    registry = commander.config.registry
    if not registry.local or commander.dry_run or not hosts:
        yield
        return
    port = int(registry.local_port or 0)
    opened: list[Forward] = []
    lock = threading.Lock()

    def open_forward(session: Session) -> None:
        connection = session.executor.connection(session.host)
        try:
            forward = connection.forward_remote(port, "localhost", port)
        except TransportError:
            raise
        except Exception as exc:  # paramiko's SSHException when the server refuses the forward
            raise KamalpyError(f"{session.host}: cannot forward port {port} to the local registry ({exc}); "
                               f"is something on that server listening on port {port}?") from exc
        with lock:
            opened.append(forward)

    try:
        commander.on(hosts, open_forward)
        yield
    finally:
        for forward in opened:
            with contextlib.suppress(Exception):  # best effort: the connection closes at the end of the run
                forward.close()
