"""Built-in plugin: the ``app`` commands (Kamal's ``kamal app ...``).

Readers (``details``, ``containers``, ``images``, ``version``, ``logs``, ``stale_containers`` without
``--stop``) take no lock. Everything that changes the servers holds the deploy lock, nested calls share
it (``remove`` runs ``stop``, ``remove_containers``, ...), and writes Kamal's audit lines. Routes go
through the configured proxy driver (``commander.proxy``), never kamal-proxy calls directly, so the
caddy driver gets the same ``start``/``stop``/``maintenance``/``live``.

Independent steps of one host (audit line, registry login, the command) go in one round trip
(:meth:`Session.script`); the commands and their order are Kamal's. ``exec`` takes no lock (Kamal's does
not either); ``exec -i`` hands the terminal to the local ``ssh -t`` line Kamal builds.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from kamalpy.cli.base import current_run, group
from kamalpy.cli.options import log_filter_options
from kamalpy.commands import app as app_commands
from kamalpy.commands import app_proxy
from kamalpy.commands import server as server_commands
from kamalpy.commands.base import log_lines
from kamalpy.commands.layout import DRY_RUN_CONTAINER_ID
from kamalpy.config.values import check_version
from kamalpy.errors import KamalpyError
from kamalpy.execution import Step, WriteFile
from kamalpy.handover import hand_over
from kamalpy.plugin import hookimpl
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.config.roles import Role
    from kamalpy.execution import Session

# What a dry run shows for values only the servers know (the running version, a container id).
DRY_RUN_VERSION = "<version>"
NO_COMMAND = "No command provided. You must specify a command to execute."


@group("app")
def app_group() -> None:
    """Manage the app containers on the servers."""


def _commander() -> Commander:
    return current_run().commander


def _app_hosts(commander: Commander) -> list[str]:
    return commander.specifics.app_hosts


def _each_role(commander: Commander, work: Callable[[Session, Role], None],
               hosts: Sequence[str] | None = None) -> None:
    """``work`` for every selected role of each app host (hosts in parallel, roles in order)."""
    def per_host(session: Session) -> None:
        for role in commander.specifics.roles_on(session.host):
            work(session, role)

    commander.on(_app_hosts(commander) if hosts is None else hosts, per_host)


def _print_per_host(commander: Commander, command: list[str]) -> None:
    commander.on(_app_hosts(commander), lambda s: commander.output.by_host(s.host, s.capture(command)))


def _audit(commander: Commander, line: str, role: Role | None = None) -> Step:
    return commander.audit(line, role=role.name if role is not None else None)


def _running_version(session: Session, role: Role) -> str:
    """The role's current running version on this host ('' when none runs)."""
    return session.capture(app_commands.current_running_version(role), raise_on_non_zero=False,
                           dry_run_output=DRY_RUN_VERSION).strip()


def _proxied(commander: Commander) -> bool:
    return any(role.running_proxy for role in commander.specifics.roles)


@contextlib.contextmanager
def _using_version(commander: Commander, version: str | None) -> Iterator[str]:
    """Kamal's ``using_version``: act on ``version`` (when given) for the block, then restore."""
    config = commander.config
    if not version:
        yield config.version
        return
    config.version = version
    try:
        yield version
    finally:
        config.version = commander.run.options.version  # what the loader declared (None: VERSION or git)


# ----- read-only commands -----

@app_group.command("details")
def app_details() -> None:
    """Show the app containers of each role on the servers."""
    details(_commander())


def details(commander: Commander) -> None:
    """``docker ps`` of each role's containers, per host (also part of the top-level ``details``)."""
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
    from kamalpy.app_boot import stale_containers

    commander = _commander()
    with _lock_if(commander, stop):
        stale_containers(commander, stop=stop)


@app_group.command("logs")
@log_filter_options
@click.option("--grep-options", help="More options for grep.")
@click.option("-f", "--follow", is_flag=True, help="Follow the log on the primary server (or the host set by --hosts).")
@click.option("-T", "--skip-timestamps", is_flag=True, help="Leave out the timestamps.")
@click.option("--container-id", help="The container to read, instead of the current one.")
def app_logs(since: str | None, lines: int | None, grep: str | None, grep_options: str | None,
             follow: bool, skip_timestamps: bool, container_id: str | None) -> None:
    """Show the app's log lines from the servers."""
    commander = _commander()
    if follow:
        code = follow_logs(commander, container_id=container_id, timestamps=not skip_timestamps,
                           lines=lines if lines else (None if since or grep else 10), grep=grep,
                           grep_options=grep_options)
        if code:
            click.get_current_context().exit(code)
        return
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


def follow_logs(commander: Commander, *, container_id: str | None, timestamps: bool, lines: int | None,
                grep: str | None, grep_options: str | None) -> int:
    """Kamal's ``app logs -f``: ``ssh -t`` to the primary host, following its first role's container.

    As in Kamal, ``--since`` is not passed on; the last 10 lines come first unless ``--since``/``--grep``.
    """
    host = commander.primary_host
    roles = commander.specifics.roles_on(host)
    if not roles:
        raise KamalpyError(f"No app role runs on {host}")
    commander.output.info(f"Following logs on {host}...")
    line = app_commands.follow_logs(roles[0], host, container_id=container_id, timestamps=timestamps, lines=lines,
                                    grep=grep, grep_options=grep_options)
    return hand_over(commander, line)


# ----- boot, start, stop -----

@app_group.command("boot")
def app_boot() -> None:
    """Boot the app on the servers with zero downtime (or reboot it if already running)."""
    from kamalpy.app_boot import boot  # the zero-downtime core; imported only when booting

    boot(_commander(), current_run().options.version)


def start(commander: Commander) -> None:
    """``app start``: start the existing container of the version; proxied roles get their route back."""
    with commander.lock.hold():
        driver = commander.proxy if _proxied(commander) else None
        version = commander.config.version

        def work(session: Session, role: Role) -> None:
            session.script([_audit(commander, f"Started app version {version}"),
                            Step(app_commands.start(role), check=False)])
            if role.running_proxy and driver is not None:
                current = _running_version(session, role)
                # The driver looks the id up and fails with Kamal's "Failed to get endpoint ..." when none.
                driver.deploy(session, role, app_commands.container_name(role, current))

        _each_role(commander, work)


def stop(commander: Commander) -> None:
    """``app stop``: drop the proxied roles' routes (when a container runs), then stop the current container."""
    with commander.lock.hold():
        driver = commander.proxy if _proxied(commander) else None

        def work(session: Session, role: Role) -> None:
            steps = [_audit(commander, "Stopped app", role)]
            if role.running_proxy:
                steps.append(Step(app_commands.current_running_version(role), check=False))
            results = session.script(steps)
            if role.running_proxy and driver is not None:
                version = DRY_RUN_VERSION if session.executor.dry_run else results[-1].stdout.strip()
                if version and _container_id(session, role, version):
                    with contextlib.suppress(CommandFailed):  # Kamal ignores a failed removal here
                        driver.remove_app(session, role)
            session.execute(app_commands.stop(role), raise_on_non_zero=False)

        _each_role(commander, work)


def _container_id(session: Session, role: Role, version: str) -> str:
    return session.capture(app_commands.container_id_for_version(role, version), raise_on_non_zero=False,
                           dry_run_output=DRY_RUN_CONTAINER_ID).strip()


@app_group.command("start")
def app_start() -> None:
    """Start the existing app container on the servers (and route traffic to it)."""
    start(_commander())


@app_group.command("stop")
def app_stop() -> None:
    """Stop the app container on the servers (after taking it out of the proxy)."""
    stop(_commander())


# ----- maintenance and live -----

def _on_proxied_roles(commander: Commander, work: Callable[[Session, Role], None]) -> None:
    """``work`` for each proxied role on the proxy hosts, under the lock."""
    with commander.lock.hold():
        def per_host(session: Session) -> None:
            for role in commander.specifics.roles_on(session.host):
                if role.running_proxy:
                    work(session, role)

        commander.on(commander.specifics.proxy_hosts, per_host)


def maintenance(commander: Commander, drain_timeout: int | None = None, message: str | None = None) -> None:
    """``app maintenance``: the proxy answers the roles' requests with a 503 page (``message`` on it)."""
    driver = commander.proxy
    timeout = drain_timeout or commander.config.drain_timeout
    _on_proxied_roles(commander, lambda s, role: driver.maintenance(s, role, drain_timeout=timeout, message=message))


def live(commander: Commander) -> None:
    """``app live``: serve the roles from the app again."""
    driver = commander.proxy
    _on_proxied_roles(commander, driver.live)


@app_group.command("maintenance")
@click.option("--drain-timeout", type=int, metavar="N",
              help="Seconds in-flight requests may take to finish (default: drain_timeout of the config).")
@click.option("--message", help="Message shown to clients while in maintenance.")
def app_maintenance(drain_timeout: int | None, message: str | None) -> None:
    """Put the app in maintenance mode (the proxy answers with a 503 page)."""
    maintenance(_commander(), drain_timeout, message)


@app_group.command("live")
def app_live() -> None:
    """Take the app out of maintenance mode."""
    live(_commander())


# ----- remove -----

def fully_removed_hosts(commander: Commander) -> list[str]:
    """App hosts all of whose roles are selected: images and app directories are shared by a host's roles."""
    specifics, roles = commander.specifics, commander.config.roles
    return [host for host in _app_hosts(commander)
            if {r.name for r in specifics.roles_on(host)} == {r.name for r in roles if host in r.hosts}]


def _shared_hosts(commander: Commander, what: str) -> list[str]:
    hosts = fully_removed_hosts(commander)
    for host in _app_hosts(commander):
        if host not in hosts:
            commander.output.info(f"Keeping the app {what} on {host}: other roles of the app remain there")
    return hosts


def remove_container(commander: Commander, version: str) -> None:
    with commander.lock.hold():
        _each_role(commander, lambda s, role: s.script([
            _audit(commander, f"Removed app container with version {version}", role),
            app_commands.remove_container(role, version)]))


def remove_containers(commander: Commander) -> None:
    with commander.lock.hold():
        def per_host(session: Session) -> None:
            steps: list[Step | list[str]] = []
            for role in commander.specifics.roles_on(session.host):
                steps += [_audit(commander, "Removed all app containers", role), app_commands.remove_containers(role)]
            session.script(steps)

        commander.on(_app_hosts(commander), per_host)


def remove_images(commander: Commander) -> None:
    with commander.lock.hold():
        steps = [_audit(commander, "Removed all app images"), app_commands.remove_images(commander.config)]
        commander.on(_shared_hosts(commander, "images"), lambda s: s.script(steps))


def remove_app_directories(commander: Commander) -> None:
    """``.kamal/apps/<svc>`` and the proxy's ``apps-config/<svc>`` (missing ones are fine), audited as Kamal does.

    Kamal 2.11 runs the ``rm`` once per role of the host and writes one audit line per host, without a role.
    """
    config = commander.config

    def per_host(session: Session) -> None:
        steps: list[Step] = [Step(server_commands.remove_app_directory(config), check=False)
                             for _ in commander.specifics.roles_on(session.host)]
        steps += [_audit(commander, f"Removed {config.app_directory}"),
                  Step(app_proxy.remove_proxy_app_directory(config), check=False)]
        session.script(steps)

    with commander.lock.hold():
        commander.on(_shared_hosts(commander, "directories"), per_host)


def remove(commander: Commander) -> None:
    """``app remove`` (also the top-level ``remove``): stop, then remove containers, images and directories."""
    with commander.lock.hold():
        stop(commander)
        remove_containers(commander)
        remove_images(commander)
        remove_app_directories(commander)


@app_group.command("remove")
def app_remove() -> None:
    """Remove the app containers, images and directories from the servers."""
    remove(_commander())


@app_group.command("remove_container", hidden=True)
@click.argument("container_version", metavar="VERSION")  # `version` would clash with the global --version
def app_remove_container(container_version: str) -> None:
    """Remove the app container of VERSION from the servers."""
    check_version(container_version, "VERSION")
    remove_container(_commander(), container_version)


@app_group.command("remove_containers", hidden=True)
def app_remove_containers() -> None:
    """Remove all app containers from the servers."""
    remove_containers(_commander())


@app_group.command("remove_images", hidden=True)
def app_remove_images() -> None:
    """Remove all app images from the servers."""
    remove_images(_commander())


@app_group.command("remove_app_directories", hidden=True)
def app_remove_app_directories() -> None:
    """Remove the app directories from the servers."""
    remove_app_directories(_commander())


# ----- exec -----

def parse_env(values: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` or Kamal's ``KEY:VALUE`` (the first ``=`` or ``:`` separates); later keys win."""
    env: dict[str, str] = {}
    for value in values:
        positions = [p for p in (value.find("="), value.find(":")) if p > 0]
        if not positions:
            raise KamalpyError(f"Invalid --env value {value!r}: expected KEY=VALUE (or KEY:VALUE)")
        cut = min(positions)
        env[value[:cut]] = value[cut + 1:]
    return env


def _check_exec_options(cmd: Sequence[str], interactive: bool, reuse: bool, detach: bool) -> None:
    incompatible = [name for name, given in (("interactive", interactive), ("reuse", reuse)) if detach and given]
    if incompatible:
        raise KamalpyError(f"Detach is not compatible with {' or '.join(incompatible)}")
    if not cmd:
        raise KamalpyError(NO_COMMAND)


def _current_version_or_none(commander: Commander) -> str | None:
    """The running version of the primary host's first role (Kamal's ``current_running_version``)."""
    host = commander.primary_host

    def work(session: Session) -> str:
        roles = commander.specifics.roles_on(host)
        return _running_version(session, roles[0]) if roles else ""

    return commander.on([host], work)[host] or None


def _primary_role(commander: Commander) -> Role:
    role = commander.specifics.primary_role
    if role is None:
        raise KamalpyError("No primary role")
    return role


def execute(commander: Commander, cmd: Sequence[str], *, interactive: bool = False, reuse: bool = False,
            env: Mapping[str, str] | None = None, detach: bool = False) -> int:
    """``app exec``'s four modes; the exit status of an interactive hand-over, else 0."""
    _check_exec_options(cmd, interactive, reuse, detach)
    command = " ".join(part.strip() for part in cmd)  # Kamal's Utils.join_commands
    say = commander.output.say
    given = commander.run.options.version
    commander.pre_connect()
    tty = sys.stdin.isatty()

    if reuse:
        if not given:
            say("Get current version of running container...")
        version = given or _current_version_or_none(commander)
    else:
        if not given:
            say("Get most recent version available as an image...")
        version = given or commander.config.latest_tag

    with _using_version(commander, version) as version:
        if interactive:
            host, role = commander.primary_host, _primary_role(commander)
            origin = "existing" if reuse else "new"
            say(f"Launching interactive command with version {version} via SSH from {origin} container on {host}...")
            if reuse:
                line = app_commands.execute_in_existing_container_over_ssh(role, host, command, env=env, tty=tty)
            else:
                commander.on([host], commander.registry_login)
                line = app_commands.execute_in_new_container_over_ssh(role, host, command, env=env, tty=tty)
            return hand_over(commander, line)

        say(f"Launching command with version {version} from {'existing' if reuse else 'new'} container...")

        def per_host(session: Session) -> None:
            if not reuse:
                _write_env_files(session, commander.specifics.roles_on(session.host))
            login = None if reuse else commander.registry_login_step(session.host)
            steps: list[Step] = [login] if login else []
            outputs = []  # the steps whose output is printed
            for role in commander.specifics.roles_on(session.host):
                if reuse:
                    steps.append(_audit(commander, f"Executed cmd '{command}' on app version {version}", role))
                    run = app_commands.execute_in_existing_container(role, command, env=env)
                else:
                    steps.append(_audit(commander, f"Executed cmd '{command}' on app version {version}"))
                    run = app_commands.execute_in_new_container(role, session.host, command, env=env, detach=detach)
                outputs.append(len(steps))
                steps.append(Step(run))
            results = session.script(steps)
            for index in outputs:
                commander.output.by_host(session.host, results[index].stdout.rstrip("\n"))

        commander.on(_app_hosts(commander), per_host)
        return 0


def _write_env_files(session: Session, roles: Sequence[Role]) -> None:
    """The roles' current env files, before a new container is run with them (``--env-file``).

    Kamal writes them only in ``app boot``: a pre-deploy hook's ``app exec`` (migrations) then finds none on
    a first deploy and the previous deploy's after a secret changed (kamal#1700, #1652). Written 0600 from
    stdin, as ``app boot`` does; one round trip per role (one stdin per round trip).
    """
    for role in roles:
        session.script([app_commands.make_env_directory(role),
                        WriteFile(app_commands.env_file_body(role, session.host).encode(), role.secrets_path, 0o600)])


@app_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("-i", "--interactive", is_flag=True,
              help="Run the command over ssh on the primary host, with this terminal (console, bash).")
@click.option("--reuse", is_flag=True, help="Run it in the running container instead of a new one.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE",
              help="Environment variable for the command (repeatable; KEY:VALUE also works).")
@click.option("--detach", is_flag=True, help="Run the command in a detached container.")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
def app_exec(interactive: bool, reuse: bool, env: tuple[str, ...], detach: bool, cmd: tuple[str, ...]) -> None:
    """Run a command in a new app container (or in the running one with --reuse) on the servers."""
    code = execute(_commander(), cmd, interactive=interactive, reuse=reuse, env=parse_env(env), detach=detach)
    if code:
        click.get_current_context().exit(code)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(app_group)


@hookimpl
def kamalpy_flow_steps() -> dict[str, Any]:
    from kamalpy.app_boot import stale_containers

    return {"app.stale_containers": lambda step: stale_containers(step.commander, stop=bool(step.params.get("stop")),
                                                                  boot_version=step.params.get("boot_version")),
            "app.remove": lambda step: remove(step.commander),
            "app.details": lambda step: details(step.commander)}
