"""Built-in plugin: the ``accessory`` commands (Kamal's ``kamal accessory ...``).

An accessory runs on its own hosts that are also selected (``-h``/``-r``): ``accessory hosts ∩ selected``.
Commands that change the servers hold the deploy lock (nested calls share it) and write Kamal's audit
lines. Boot checks every local file of ``files:`` (and renders the ``.erb`` ones) before it touches a
server, so a missing file changes nothing. Routes of proxied accessories go through the proxy driver.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from kamalpy.cli.base import current_run, group
from kamalpy.cli.completion import complete_accessories
from kamalpy.cli.options import log_filter_options
from kamalpy.commands import accessory as accessory_commands
from kamalpy.commands import docker as docker_commands
from kamalpy.commands import registry as registry_commands
from kamalpy.commands.base import log_lines
from kamalpy.commands.layout import DRY_RUN_CONTAINER_ID
from kamalpy.config.erb import render
from kamalpy.errors import KamalpyError
from kamalpy.execution import Step, WriteFile
from kamalpy.plugin import hookimpl
from kamalpy.prompts import confirm
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.config.accessory import Accessory, MountedPath
    from kamalpy.execution import Session

UPLOAD_MODE = 0o644  # mode of an uploaded file before its `chmod` (Kamal's upload keeps the default too)


class UnknownAccessory(KamalpyError):
    """No accessory of that name (Kamal's message, printed without an ``ERROR:`` prefix)."""


@group("accessory")
def accessory_group() -> None:
    """Manage the accessories (databases, caches, ...) on their servers."""


def _commander() -> Commander:
    return current_run().commander


def _sentence(names: Sequence[str]) -> str:
    """Rails' ``to_sentence``: ``a``, ``a and b``, ``a, b, and c``."""
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + f", and {names[-1]}"


def _names(commander: Commander) -> list[str]:
    return [acc.name for acc in commander.config.accessories]


def accessory(commander: Commander, name: str) -> Accessory:
    found = commander.config.accessory(name)
    if found is None:
        names = _names(commander)
        raise UnknownAccessory(f"No accessory by the name of '{name}'"
                               + (f" (options: {_sentence(names)})" if names else ""))
    return found


def hosts_of(commander: Commander, acc: Accessory) -> list[str]:
    """The accessory's hosts that are selected, in the order of the selection."""
    return [h for h in commander.specifics.accessory_hosts if h in acc.hosts]


def _each(commander: Commander, name: str, work: Callable[[Commander, str], None]) -> None:
    """``work`` for NAME, or for every accessory when NAME is ``all``."""
    for each in _names(commander) if name == "all" else [name]:
        work(commander, each)


def _audit(commander: Commander, line: str) -> Step:
    return commander.audit(line)


def _registry_login(commander: Commander, acc: Accessory, host: str) -> Step | None:
    """``docker login`` to the accessory's registry, or the root one (once per run and host)."""
    if acc.registry is None:
        return commander.registry_login_step(host)
    if acc.registry.local:
        return None
    login = registry_commands.login(commander.config, acc.registry)
    return Step(login.command, stdin=login.stdin)


# ----- boot and its steps -----

def prepare(commander: Commander, name: str) -> None:
    """Registry login and the ``kamal`` network on the accessory's hosts ("already exists" is fine)."""
    acc = accessory(commander, name)

    def work(session: Session) -> None:
        login = _registry_login(commander, acc, session.host)
        results = session.script([*([login] if login else []), Step(docker_commands.create_network(), check=False)])
        network = results[-1]
        if not network.ok and "already exists" not in network.stderr + network.stdout:
            raise CommandFailed(network)

    commander.on(hosts_of(commander, acc), work)


def _env_for_erb(acc: Accessory) -> dict[str, str]:
    """The process environment plus the accessory's env (clear and secrets), as Kamal's ERB sees it."""
    return {**os.environ, **{str(k): str(v) for k, v in acc.env.to_dict().items()}}


def local_files(acc: Accessory) -> list[tuple[MountedPath, bytes]]:
    """Each ``files:`` entry with its content (ERB rendered); raises naming the first missing local file."""
    contents = []
    for path in acc.files:
        accessory_commands.ensure_local_file_present(path.local)
        try:
            with open(path.local, "rb") as handle:
                data = handle.read()
            if path.erb:
                data = render(data.decode(), path.local, _env_for_erb(acc)).encode()
        except OSError as error:
            raise KamalpyError(f"{acc.context}/files: cannot read {path.local}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise KamalpyError(f"{acc.context}/files: {path.local} is not valid UTF-8 "
                               f"(byte {error.start}), so it cannot be rendered as ERB") from None
        contents.append((path, data))
    return contents


def directories(commander: Commander, name: str) -> None:
    acc = accessory(commander, name)
    commands = [c for path in acc.directories for c in accessory_commands.directory_commands(path)]
    with commander.lock.hold():
        if commands:
            commander.on(hosts_of(commander, acc), lambda s: s.script(commands))


def upload(commander: Commander, name: str, files: list[tuple[MountedPath, bytes]] | None = None) -> None:
    """Each file: ``mkdir -p`` its directory, write it, ``chmod`` (755 unless set), ``chown`` when set."""
    acc = accessory(commander, name)
    files = local_files(acc) if files is None else files

    def work(session: Session) -> None:
        for path, data in files:
            session.script([accessory_commands.make_directory_for(path.host_path),
                            WriteFile(data, path.host_path, UPLOAD_MODE),
                            *accessory_commands.file_permission_commands(path)])

    with commander.lock.hold():
        if files:
            commander.on(hosts_of(commander, acc), work)


def _container_id(session: Session, acc: Accessory) -> str:
    found = session.capture(accessory_commands.container_id(acc), dry_run_output=DRY_RUN_CONTAINER_ID).strip()
    return found


def boot(commander: Commander, name: str, *, prepared: bool = False,
         files: list[tuple[MountedPath, bytes]] | None = None) -> None:
    """``accessory boot NAME|all``: skip hosts where its container exists, else files, env file, ``docker run``.

    ``files``: the accessory's local files already read (``all`` reads every accessory's before any boots).
    """
    if name == "all":
        read = {each: local_files(accessory(commander, each)) for each in _names(commander)}
        with commander.lock.hold():
            for each, found in read.items():
                boot(commander, each, prepared=prepared, files=found)
        return
    acc = accessory(commander, name)
    if files is None:
        files = local_files(acc)  # before anything changes on a server
    with commander.lock.hold():
        if not prepared:
            prepare(commander, name)
        hosts = hosts_of(commander, acc)
        found = commander.on(hosts, lambda s: s.capture(accessory_commands.info(acc, all_states=True, quiet=True))
                             .strip())
        booted = sorted(host for host, ids in found.items() if ids)
        if booted:
            commander.output.say(f"Skipping booting `{name}` on {', '.join(booted)}, a container already exists",
                                   colour="yellow")
            hosts = [h for h in hosts if h not in booted]
        directories(commander, name)
        upload(commander, name, files)
        driver = commander.proxy if acc.running_proxy else None
        body = accessory_commands.env_file_body(acc).encode()

        pulls = commander.pulls.batch()  # `docker run` pulls the image where it is missing: pull slots

        def work(session: Session) -> None:
            with pulls.slot() as turn:
                if not turn:
                    return  # another host's boot failed: the command stops with that host named
                try:
                    session.script([_audit(commander, f"Booted {name} accessory"),
                                    accessory_commands.ensure_env_directory(acc), WriteFile(body, acc.secrets_path),
                                    accessory_commands.run(acc, session.host)])
                except CommandFailed:
                    # `docker run` that could not start it (a port taken, ...) leaves a created container: remove
                    # it, so that a later boot is not skipped for "a container already exists".
                    session.execute(accessory_commands.remove_container(acc), raise_on_non_zero=False)
                    raise
            if driver is not None:
                driver.deploy_accessory(session, acc, _container_id(session, acc))

        commander.on(hosts, work)


def boot_missing(commander: Commander) -> None:
    """Boot every accessory that has no container yet (``setup``'s step)."""
    boot(commander, "all")


# ----- start, stop, restart, reboot -----

def start(commander: Commander, name: str) -> None:
    acc = accessory(commander, name)
    driver = commander.proxy if acc.running_proxy else None

    def work(session: Session) -> None:
        session.script([_audit(commander, f"Started {name} accessory"), accessory_commands.start(acc)])
        if driver is not None:
            driver.deploy_accessory(session, acc, _container_id(session, acc))

    with commander.lock.hold():
        commander.on(hosts_of(commander, acc), work)


def stop(commander: Commander, name: str) -> None:
    acc = accessory(commander, name)
    driver = commander.proxy if acc.running_proxy else None

    def work(session: Session) -> None:
        session.script([_audit(commander, f"Stopped {name} accessory"),
                        Step(accessory_commands.stop(acc), check=False)])
        if driver is not None:
            with contextlib.suppress(CommandFailed):  # a route already gone is what stop wants
                driver.remove_accessory(session, acc)

    with commander.lock.hold():
        commander.on(hosts_of(commander, acc), work)


def _simple(commander: Commander, name: str, audit: str | None, build: Callable[[Accessory], list[str]], *,
            pulls: bool = False) -> None:
    """One audited command on the accessory's hosts, under the lock (``pulls``: it pulls, in pull slots)."""
    acc = accessory(commander, name)
    steps = [*([_audit(commander, audit)] if audit else []), build(acc)]
    batch = commander.pulls.batch() if pulls else None

    def work(session: Session) -> None:
        with batch.slot() if batch is not None else contextlib.nullcontext(True) as turn:
            if turn:
                session.script(steps)

    with commander.lock.hold():
        commander.on(hosts_of(commander, acc), work)


def pull_image(commander: Commander, name: str) -> None:
    _simple(commander, name, f"Pull {name} accessory image", accessory_commands.pull_image, pulls=True)


def remove_container(commander: Commander, name: str) -> None:
    _simple(commander, name, f"Remove {name} accessory container", accessory_commands.remove_container)


def remove_image(commander: Commander, name: str) -> None:
    _simple(commander, name, f"Removed {name} accessory image", accessory_commands.remove_image)


def remove_service_directory(commander: Commander, name: str) -> None:
    _simple(commander, name, None, accessory_commands.remove_service_directory)


def reboot(commander: Commander, name: str) -> None:
    """Stop, remove and run again (no zero-downtime for accessories)."""
    with commander.lock.hold():
        for each in _names(commander) if name == "all" else [name]:
            accessory(commander, each)
            prepare(commander, each)
            pull_image(commander, each)
            stop(commander, each)
            remove_container(commander, each)
            boot(commander, each, prepared=True)


def remove(commander: Commander, name: str) -> None:
    """Stop, then remove the container, the image and the service directory (no question asked)."""
    def one(commander: Commander, each: str) -> None:
        stop(commander, each)
        remove_container(commander, each)
        remove_image(commander, each)
        remove_service_directory(commander, each)

    if name != "all":
        accessory(commander, name)
    with commander.lock.hold():
        _each(commander, name, one)


def remove_all(commander: Commander) -> None:
    """Remove every accessory (``remove``'s step)."""
    remove(commander, "all")


def details(commander: Commander, name: str) -> None:
    def one(commander: Commander, each: str) -> None:
        acc = accessory(commander, each)
        commander.on(hosts_of(commander, acc), lambda s: commander.output.by_host(
            s.host, s.capture(accessory_commands.info(acc)), kind=f"Accessory {each}"))

    _each(commander, name, one)


def details_all(commander: Commander) -> None:
    details(commander, "all")


def upgrade(commander: Commander, name: str, *, rolling: bool = False) -> None:
    """Reboot the accessories in the ``kamal`` network (Kamal 1 to 2), all hosts at once or one by one."""
    hosts = commander.specifics.accessory_hosts
    groups = [[h] for h in hosts] if rolling else [hosts] if hosts else []
    with commander.lock.hold():
        for chosen in groups:
            listed = ",".join(chosen)
            with commander.only_hosts(chosen):
                commander.output.say(f"Upgrading {name} accessories on {listed}...")
                reboot(commander, name)
                commander.output.say(f"Upgraded {name} accessories on {listed}...")


# ----- exec and logs -----

def execute(commander: Commander, name: str, cmd: Sequence[str], *, interactive: bool = False, reuse: bool = False,
            raw: bool = False) -> int:
    """``accessory exec``'s modes; the exit status of an interactive hand-over, else 0."""
    from kamalpy.handover import hand_over

    if raw and interactive:
        raise KamalpyError("Raw is not compatible with interactive")
    command = " ".join(part.strip() for part in cmd)  # Kamal's Utils.join_commands
    acc = accessory(commander, name)
    say = commander.output.say
    commander.pre_connect()
    if interactive:
        host = acc.hosts[0]
        tty = sys.stdin.isatty()  # piped input (`< dump.sql`): `docker exec -i`, as Kamal
        if reuse:
            say("Launching interactive command via SSH from existing container...")
            return hand_over(commander, accessory_commands.execute_in_existing_container_over_ssh(
                acc, host, command, tty=tty))
        say("Launching interactive command via SSH from new container...")
        login = _registry_login(commander, acc, host)
        if login is not None:
            commander.on([host], lambda s: s.execute(login.command, stdin=login.stdin))
        return hand_over(commander, accessory_commands.execute_in_new_container_over_ssh(acc, host, command, tty=tty))

    say(f"Launching command from {'existing' if reuse else 'new'} container...")

    def work(session: Session) -> None:
        login = None if reuse else _registry_login(commander, acc, session.host)
        run = (accessory_commands.execute_in_existing_container(acc, command) if reuse
               else accessory_commands.execute_in_new_container(acc, command))
        steps = [*([login] if login else []), _audit(commander, f"Executed cmd '{command}' on {name} accessory"),
                 Step(run)]
        out = session.script(steps)[-1].stdout
        if commander.dry_run:
            return
        if raw:
            click.echo(out, nl=False)
        else:
            commander.output.by_host(session.host, out.strip())

    commander.on(hosts_of(commander, acc), work)
    return 0


def logs(commander: Commander, name: str, *, since: str | None = None, lines: int | None = None,
         grep: str | None = None, grep_options: str | None = None, follow: bool = False,
         timestamps: bool = True) -> int:
    from kamalpy.handover import hand_over

    acc = accessory(commander, name)
    hosts = hosts_of(commander, acc)
    if follow:
        if not hosts:
            return 0
        line = accessory_commands.follow_logs(acc, hosts[0], timestamps=timestamps, grep=grep,
                                              grep_options=grep_options)
        commander.output.info(f"Following logs on {hosts[0]}...")
        return hand_over(commander, line)
    lines = log_lines(lines, since, grep)
    command = accessory_commands.logs(acc, timestamps=timestamps, since=since, lines=lines, grep=grep,
                                      grep_options=grep_options)

    def work(session: Session) -> None:
        text = session.capture(command)
        if not commander.dry_run:
            click.echo(text)

    commander.on(hosts, work)
    return 0


# ----- the click commands -----

def _cli(work: Callable[[], int | None]) -> None:
    """Run ``work``; an unknown name prints Kamal's line on stderr (no ``ERROR:`` prefix) and exits 1."""
    try:
        code = work()
    except UnknownAccessory as exc:
        click.echo(str(exc), err=True)
        code = 1
    if code:
        click.get_current_context().exit(code)


NAME = click.argument("name", shell_complete=complete_accessories)


@accessory_group.command("boot")
@NAME
def accessory_boot(name: str) -> None:
    """Boot an accessory on its hosts (NAME=all: every accessory); existing containers are left alone."""
    _cli(lambda: boot(_commander(), name))


@accessory_group.command("reboot")
@NAME
def accessory_reboot(name: str) -> None:
    """Reboot an accessory (stop, remove, run a new container; NAME=all: every accessory)."""
    _cli(lambda: reboot(_commander(), name))


@accessory_group.command("start")
@NAME
def accessory_start(name: str) -> None:
    """Start the existing container of an accessory."""
    _cli(lambda: start(_commander(), name))


@accessory_group.command("stop")
@NAME
def accessory_stop(name: str) -> None:
    """Stop the container of an accessory."""
    _cli(lambda: stop(_commander(), name))


@accessory_group.command("restart")
@NAME
def accessory_restart(name: str) -> None:
    """Stop, then start the container of an accessory."""
    def work() -> None:
        commander = _commander()
        with commander.lock.hold():
            stop(commander, name)
            start(commander, name)

    _cli(work)


@accessory_group.command("details")
@NAME
def accessory_details(name: str) -> None:
    """Show the container of an accessory on each host (NAME=all: every accessory)."""
    _cli(lambda: details(_commander(), name))


@accessory_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("-i", "--interactive", is_flag=True, help="Run the command over ssh with this terminal (console, bash).")
@click.option("--reuse", is_flag=True, help="Run it in the running container instead of a new one.")
@click.option("--raw", is_flag=True, help="Print the command's output unchanged.")
@NAME
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
def accessory_exec(interactive: bool, reuse: bool, raw: bool, name: str, cmd: tuple[str, ...]) -> None:
    """Run a command in a new accessory container (or in the running one with --reuse)."""
    _cli(lambda: execute(_commander(), name, cmd, interactive=interactive, reuse=reuse, raw=raw))


@accessory_group.command("logs")
@log_filter_options
@click.option("--grep-options", help="More options for grep.")
@click.option("-f", "--follow", is_flag=True, help="Follow the logs on the first host.")
@click.option("-T", "--skip-timestamps", is_flag=True, help="Leave out the timestamps.")
@NAME
def accessory_logs(since: str | None, lines: int | None, grep: str | None, grep_options: str | None,
                   follow: bool, skip_timestamps: bool, name: str) -> None:
    """Show an accessory's log lines."""
    _cli(lambda: logs(_commander(), name, since=since, lines=lines, grep=grep, grep_options=grep_options,
                      follow=follow, timestamps=not skip_timestamps))


@accessory_group.command("remove")
@click.option("-y", "--confirmed", is_flag=True, help="Do not ask for confirmation.")
@NAME
def accessory_remove(confirmed: bool, name: str) -> None:
    """Remove an accessory's container, image and directory (NAME=all: every accessory)."""
    question = f"This will remove all containers, images and data directories for {name}. Are you sure?"
    _cli(lambda: remove(_commander(), name) if confirm(question, confirmed) else None)


@accessory_group.command("upgrade")
@click.option("--rolling", is_flag=True, help="Upgrade one host at a time.")
@click.option("-y", "--confirmed", is_flag=True, help="Do not ask for confirmation.")
@NAME
def accessory_upgrade(rolling: bool, confirmed: bool, name: str) -> None:
    """Reboot accessories in the kamal network (the Kamal 1 to 2 upgrade)."""
    _cli(lambda: upgrade(_commander(), name, rolling=rolling) if confirm("This will restart all accessories",
                                                                          confirmed) else None)


def _hidden(command_name: str, work: Callable[[Commander, str], None], help_text: str) -> None:
    @accessory_group.command(command_name, hidden=True, help=help_text)
    @NAME
    def command(name: str) -> None:
        _cli(lambda: work(_commander(), name))


_hidden("upload", upload, "Upload an accessory's files to its hosts.")
_hidden("directories", directories, "Create an accessory's directories on its hosts.")
_hidden("pull_image", pull_image, "Pull an accessory's image on its hosts.")
_hidden("remove_container", remove_container, "Remove an accessory's container from its hosts.")
_hidden("remove_image", remove_image, "Remove an accessory's image from its hosts.")
_hidden("remove_service_directory", remove_service_directory, "Remove an accessory's directory from its hosts.")


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(accessory_group)


@hookimpl
def kamalpy_flow_steps() -> dict[str, Any]:
    return {"accessory.boot_missing": lambda step: boot_missing(step.commander),
            "accessory.remove_all": lambda step: remove_all(step.commander),
            "accessory.details_all": lambda step: details_all(step.commander)}
