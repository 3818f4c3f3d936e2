"""Built-in plugin: ``proxy boot|start|stop|restart|details|logs|remove`` (the kamal-proxy container).

``boot`` follows Kamal 2.11: the ``kamal`` network on every host (an existing one is fine), then on the
proxy hosts a registry login (skipped for a local registry), the running proxy's version checked against
the minimum, the apps-config directory, and ``docker container start kamal-proxy || docker run ...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kamalpy.cli.base import current_run, group
from kamalpy.commands import auditor
from kamalpy.commands import docker as docker_commands
from kamalpy.commands import proxy as proxy_commands
from kamalpy.commands import registry as registry_commands
from kamalpy.commands import server as server_commands
from kamalpy.commands.base import log_lines
from kamalpy.plugin import hookimpl
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.execution import Session

@group("proxy")
def proxy_group() -> None:
    """Manage kamal-proxy on the servers."""


def _commander() -> Commander:
    return current_run().commander


def _record(commander: Commander, session: Session, line: str) -> None:
    session.execute(auditor.record(commander.config, line, performer=commander.performer), quiet=True)


def create_network(commander: Commander) -> None:
    """``docker network create kamal`` on every selected host; "already exists" is not an error."""
    def work(session: Session) -> None:
        try:
            session.execute(docker_commands.create_network())
        except CommandFailed as exc:
            if "already exists" not in str(exc):
                raise

    commander.on(commander.hosts, work)


def boot(commander: Commander) -> None:
    """Kamal's ``proxy boot`` (callers hold the deploy lock)."""
    config = commander.config
    create_network(commander)
    login = None if config.registry.local else registry_commands.login(config)

    def work(session: Session) -> None:
        if login is not None:
            session.execute(login.command, stdin=login.stdin)
        proxy_commands.check_minimum_version(session.capture(proxy_commands.version()))
        session.execute(proxy_commands.ensure_apps_config_directory())
        session.execute(proxy_commands.start_or_run(config, session.host))

    commander.on(commander.specifics.proxy_hosts, work)


@proxy_group.command("boot")
def proxy_boot() -> None:
    """Boot kamal-proxy on the servers (start it, or run it when there is no container)."""
    commander = _commander()
    with commander.lock.hold():
        boot(commander)


def _start(commander: Commander) -> None:
    def work(session: Session) -> None:
        _record(commander, session, "Started proxy")
        session.execute(proxy_commands.start())

    with commander.lock.hold():
        commander.on(commander.specifics.proxy_hosts, work)


def _stop(commander: Commander) -> None:
    def work(session: Session) -> None:
        _record(commander, session, "Stopped proxy")
        session.execute(proxy_commands.stop(), raise_on_non_zero=False)

    with commander.lock.hold():
        commander.on(commander.specifics.proxy_hosts, work)


@proxy_group.command("start")
def proxy_start() -> None:
    """Start the existing kamal-proxy container on the servers."""
    _start(_commander())


@proxy_group.command("stop")
def proxy_stop() -> None:
    """Stop the kamal-proxy container on the servers."""
    _stop(_commander())


@proxy_group.command("restart")
def proxy_restart() -> None:
    """Stop, then start the kamal-proxy container on the servers."""
    commander = _commander()
    with commander.lock.hold():
        _stop(commander)
        _start(commander)


@proxy_group.command("details")
def proxy_details() -> None:
    """Show the kamal-proxy container of each server."""
    commander = _commander()
    commander.on(commander.specifics.proxy_hosts,
                 lambda s: commander.output.by_host(s.host, s.capture(proxy_commands.info()), kind="Proxy"))


@proxy_group.command("logs")
@click.option("-s", "--since", help="Lines since a timestamp (2013-01-02T13:23:37Z) or a duration (42m).")
@click.option("-n", "--lines", type=int, help="Number of lines from each server (100 without --since/--grep).")
@click.option("-g", "--grep", help="Only lines matching this pattern.")
@click.option("-T", "--skip-timestamps", is_flag=True, help="Leave out the timestamps.")
def proxy_logs(since: str | None, lines: int | None, grep: str | None, skip_timestamps: bool) -> None:
    """Show kamal-proxy's log lines from the servers."""
    commander = _commander()
    lines = log_lines(lines, since, grep)
    command = proxy_commands.logs(timestamps=not skip_timestamps, since=since, lines=lines, grep=grep)
    commander.on(commander.specifics.proxy_hosts,
                 lambda s: commander.output.by_host(s.host, s.capture(command), kind="Proxy"))


def _removal_allowed(commander: Commander, force: bool) -> bool:
    """Kamal's check: no app directory may be left under ``.kamal/apps`` on any proxy host."""
    config = commander.config
    counts = commander.on(commander.specifics.proxy_hosts,
                          lambda s: s.capture(server_commands.app_directory_count(config)).strip())
    if all(int(count or 0) == 0 for count in counts.values()):
        return True
    if force:
        commander.output.say("Forcing, so removing the proxy, even though other apps are installed")
    else:
        commander.output.say("Not removing the proxy, as other apps are installed, "
                             "ignore this check with kamalpy proxy remove --force")
    return force


@proxy_group.command("remove")
@click.option("--force", is_flag=True, help="Remove the proxy even when apps are still installed.")
def proxy_remove(force: bool) -> None:
    """Remove the kamal-proxy container, image and directory from the servers."""
    commander = _commander()
    hosts = commander.specifics.proxy_hosts

    def step(line: str, command: list[str], raise_on_non_zero: bool = True, audit: bool = True) -> None:
        def work(session: Session) -> None:
            if audit:
                _record(commander, session, line)
            session.execute(command, raise_on_non_zero=raise_on_non_zero)

        commander.on(hosts, work)

    with commander.lock.hold():
        if _removal_allowed(commander, force):
            _stop(commander)
            step("Removed proxy container", proxy_commands.remove_container())
            step("Removed proxy image", proxy_commands.remove_image())
            step("", proxy_commands.remove_proxy_directory(), raise_on_non_zero=False, audit=False)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(proxy_group)
