"""Built-in plugin: ``server exec``, ``server bootstrap`` and ``audit``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from kamalpy.cli.base import command, current_run, group
from kamalpy.commands import auditor
from kamalpy.commands import docker as docker_commands
from kamalpy.commands import server as server_commands
from kamalpy.commands.ssh import run_over_ssh
from kamalpy.errors import KamalpyError
from kamalpy.execution import Step
from kamalpy.plugin import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.execution import Session


@group("server")
def server_group() -> None:
    """Bootstrap servers with Docker and run commands on them."""


@server_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("-i", "--interactive", is_flag=True, help="Run the command interactively (primary host only).")
@click.argument("cmd", nargs=-1, required=True)
def server_exec(interactive: bool, cmd: tuple[str, ...]) -> None:
    """Run a custom command on the servers."""
    commander = current_run().commander
    line = " ".join(cmd)
    if interactive:
        host = commander.primary_host
        commander.output.say(f"Running '{line}' on {host} interactively...")
        ssh = run_over_ssh(commander.config, line, host)
        if commander.dry_run:
            commander.output.dry_run("local", ssh)
            return
        commander.pre_connect()
        os.execvp("sh", ["sh", "-c", ssh])  # hand the terminal over to the system ssh, as Kamal does
    hosts = commander.hosts
    commander.output.say(f"Running '{line}' on {', '.join(hosts)}...")

    def work(session: Session) -> None:
        # Kamal's audit line, then the command: one round trip.
        found = session.script([commander.audit(f"Executed cmd '{line}' on {session.host}"), Step([line])])
        commander.output.by_host(session.host, found[-1].stdout.rstrip("\n"))

    commander.on(hosts, work)


@server_group.command("bootstrap")
def server_bootstrap() -> None:
    """Set up Docker to run Kamal apps (and the run directory)."""
    bootstrap(current_run().commander)


def bootstrap(commander: Commander) -> None:
    """Kamal's ``server bootstrap``: Docker installed where missing (as root), the run directory, docker-setup."""
    missing: list[str] = []

    def work(session: Session) -> None:
        # Usually Docker is there: the check and the run directory in one round trip.
        installed, _ = session.script([Step(docker_commands.installed(), check=False),
                                       server_commands.ensure_run_directory()])
        if installed.ok:
            return
        if session.test(docker_commands.superuser()):
            commander.output.info(f"Missing Docker on {session.host}. Installing...")
            session.execute(docker_commands.install())
        else:
            missing.append(session.host)

    with commander.lock.hold():
        hosts = commander.hosts
        commander.on(hosts, work)
        if missing:
            raise KamalpyError(
                f"Docker is not installed on {', '.join(missing)} and can't be automatically installed without "
                "having root access and either `curl` or `wget` installed. Install Docker manually: "
                "https://docs.docker.com/engine/install/")
        commander.run_hook("docker-setup")


@command("audit")
def audit_command() -> None:
    """Show the audit log of each host."""
    commander = current_run().commander
    commander.on(commander.hosts,
                 lambda s: commander.output.by_host(s.host, s.capture(auditor.reveal(commander.config))))



@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(server_group)
    cli.add_command(audit_command)


@hookimpl
def kamalpy_flow_steps() -> dict[str, Any]:
    return {"server.bootstrap": lambda step: bootstrap(step.commander)}
