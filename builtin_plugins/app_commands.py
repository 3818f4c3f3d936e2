"""Built-in plugin: the read-only ``app`` commands and ``app stale_containers [--stop]``.

``details``, ``containers``, ``images``, ``version`` and ``logs`` only read, so they take no lock; each
prints Kamal's per-host block (``App Host: H``). ``stale_containers --stop`` changes things: it holds the
deploy lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import click

from kamalpy.cli.base import current_run, group
from kamalpy.commands import app as app_commands
from kamalpy.commands.base import log_lines
from kamalpy.plugin import hookimpl
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.config.roles import Role
    from kamalpy.execution import Session

@group("app")
def app_group() -> None:
    """Inspect the app containers on the servers."""


def _commander() -> Commander:
    return current_run().commander


def _app_hosts(commander: Commander) -> list[str]:
    return commander.specifics.app_hosts


def _each_role(commander: Commander, work: Callable[[Session, Role], None]) -> None:
    """``work`` for every selected role of each app host (hosts in parallel, roles in order)."""
    def per_host(session: Session) -> None:
        for role in commander.specifics.roles_on(session.host):
            work(session, role)

    commander.on(_app_hosts(commander), per_host)


def _print_per_host(commander: Commander, command: list[str]) -> None:
    commander.on(_app_hosts(commander), lambda s: commander.output.by_host(s.host, s.capture(command)))


@app_group.command("details")
def app_details() -> None:
    """Show the app containers of each role on the servers."""
    commander = _commander()
    _each_role(commander, lambda s, role: commander.output.by_host(s.host, s.capture(app_commands.info(role))))


@app_group.command("containers")
def app_containers() -> None:
    """Show every container of the app (all roles, all states) on the servers."""
    commander = _commander()
    _print_per_host(commander, app_commands.list_service_containers(commander.config))


@app_group.command("images")
def app_images() -> None:
    """Show the app images on the servers."""
    commander = _commander()
    _print_per_host(commander, app_commands.list_images(commander.config))


@app_group.command("version")
def app_version() -> None:
    """Show the app version running on each server."""
    commander = _commander()

    def work(session: Session) -> None:
        roles = commander.specifics.roles_on(session.host)
        if not roles:
            return
        version = session.capture(app_commands.current_running_version(roles[0])).strip()
        commander.output.by_host(session.host, version)

    commander.on(_app_hosts(commander), work)


@contextlib.contextmanager
def _lock_if(commander: Commander, locking: bool) -> Iterator[None]:
    if locking:
        with commander.lock.hold():
            yield
    else:
        yield


@app_group.command("stale_containers")
@click.option("-s", "--stop", is_flag=True, help="Stop the stale containers found.")
def app_stale_containers(stop: bool) -> None:
    """Find (or stop) app containers running besides the current version."""
    commander = _commander()
    output = commander.output

    def work(session: Session, role: Role) -> None:
        versions = session.capture(app_commands.list_versions(role), raise_on_non_zero=False).split("\n")
        current = session.capture(app_commands.current_running_version(role), raise_on_non_zero=False).strip()
        for version in [v for v in versions if v and v != current]:
            if stop:
                output.by_host(session.host, f"Stopping stale container for role {role.name} with version {version}")
                session.execute(app_commands.stop(role, version), raise_on_non_zero=False)
            else:
                output.by_host(session.host, f"Detected stale container for role {role.name} with version {version} "
                                             "(use `kamalpy app stale_containers --stop` to stop)")

    with _lock_if(commander, stop):
        _each_role(commander, work)


@app_group.command("logs")
@click.option("-s", "--since", help="Lines since a timestamp (2013-01-02T13:23:37Z) or a duration (42m).")
@click.option("-n", "--lines", type=int, help="Number of lines from each server (100 without --since/--grep).")
@click.option("-g", "--grep", help="Only lines matching this pattern.")
@click.option("--grep-options", help="More options for grep.")
@click.option("-T", "--skip-timestamps", is_flag=True, help="Leave out the timestamps.")
@click.option("--container-id", help="The container to read, instead of the current one.")
def app_logs(since: str | None, lines: int | None, grep: str | None, grep_options: str | None,
             skip_timestamps: bool, container_id: str | None) -> None:
    """Show the app's log lines from the servers."""
    commander = _commander()
    lines = log_lines(lines, since, grep)

    def work(session: Session, role: Role) -> None:
        command = app_commands.logs(role, container_id=container_id, timestamps=not skip_timestamps, since=since,
                                    lines=lines, grep=grep, grep_options=grep_options)
        try:
            text = session.capture(command)
        except CommandFailed:
            text = "Nothing found"
        commander.output.by_host(session.host, text)

    _each_role(commander, work)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(app_group)
