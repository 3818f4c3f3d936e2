"""Built-in plugin: ``build pull`` (reference 6.6): the app image pulled onto the app hosts.

Log in on the app hosts (not for a local registry: their pulls reach it through SSH reverse port
forwards instead). With several hosts, one host per distinct registry mirror pulls first to seed it.
Each host then records the pull, drops its copy of the image, pulls it and checks its ``service`` label.
Building and pushing come with the builders.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from kamalpy.cli.base import current_run, group
from kamalpy.commands import auditor, builder_pull
from kamalpy.execution import Step
from kamalpy.plugin import hookimpl
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.execution import Session
    from kamalpy.transport import Forward

NO_MIRROR = "error calling index: reflect: slice index out of range"  # docker info on a host without mirrors


@group("build")
def build_group() -> None:
    """Build the app image and get it onto the servers."""


def pull(commander: Commander) -> None:
    """Kamal's ``build pull``: log in, pull the version and check its ``service`` label on the app hosts."""
    hosts = commander.specifics.app_hosts
    with _local_registry_forwards(commander, hosts):
        first = _mirror_hosts(commander, hosts)
        if first:
            commander.output.say(f"Pulling image on {', '.join(first)} to seed the "
                                 f"{'mirror' if len(first) == 1 else 'mirrors'}...")
            _pull_on(commander, first)
            commander.output.say("Pulling image on remaining hosts...")
            _pull_on(commander, [h for h in hosts if h not in first])
        else:
            _pull_on(commander, hosts)


def _mirror_hosts(commander: Commander, hosts: list[str]) -> list[str]:
    """The first host (in host order) of each distinct first registry mirror; none for a single host."""
    if len(hosts) < 2:
        return []

    def mirror(session: Session) -> str | None:
        login = commander.registry_login_step(session.host)  # Kamal logs in first: same round trip
        result = session.script([*([login] if login else []), Step(builder_pull.first_mirror(), check=False)])[-1]
        if not result.ok:
            if NO_MIRROR not in result.stderr + result.stdout:
                raise CommandFailed(result)
            return None
        return result.stdout.strip() or None

    found = commander.on(hosts, mirror)
    seeds: dict[str, str] = {}
    for host in hosts:
        if found.get(host):
            seeds.setdefault(found[host], host)
    return list(seeds.values())


def _pull_on(commander: Commander, hosts: list[str]) -> None:
    config = commander.config
    record = auditor.record(config, f"Pulled image with version {config.version}", performer=commander.performer)

    def work(session: Session) -> None:
        # Kamal's commands in Kamal's order, in one round trip (the login only once per host and run).
        login = commander.registry_login_step(session.host)
        session.script([*([login] if login else []), Step(record, quiet=True),
                        Step(builder_pull.clean(config), check=False), builder_pull.pull(config),
                        builder_pull.validate_image(config)])

    if hosts:
        commander.on(hosts, work)


@contextlib.contextmanager
def _local_registry_forwards(commander: Commander, hosts: list[str]) -> Iterator[None]:
    """A ``localhost:PORT`` registry: each host's port PORT forwarded back to this machine for the pulls."""
    registry = commander.config.registry
    if not registry.local or commander.dry_run or not hosts:
        yield
        return
    port = int(registry.local_port or 0)
    forwards: list[Forward] = []

    def open_forward(session: Session) -> None:
        forwards.append(session.executor.connection(session.host).forward_remote(port, "localhost", port))

    try:
        commander.on(hosts, open_forward)
        yield
    finally:
        for forward in forwards:
            with contextlib.suppress(Exception):  # closing is best effort, the run ends anyway
                forward.close()


@build_group.command("pull")
def build_pull() -> None:
    """Pull the app image from the registry onto the servers."""
    pull(current_run().commander)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(build_group)
