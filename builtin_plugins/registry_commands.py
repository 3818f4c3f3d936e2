"""Built-in plugin: ``registry setup|remove|login|logout`` (reference 2.9), each with ``-L``/``-R``.

A local registry (``registry.server: localhost:PORT``) is a container on this machine: ``setup`` starts
it, ``remove`` removes it, and there is nothing to log in to. Any other registry: ``setup`` logs in
here and on the servers, ``remove`` logs out. The password goes to ``docker login --password-stdin``
on the command's standard input: it is on no command line, in no process list, log or dry-run output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kamalpy import local_registry
from kamalpy.cli.base import current_run, group
from kamalpy.commands import registry as registry_commands
from kamalpy.errors import KamalpyError
from kamalpy.plugin import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander

_skip_local = click.option("-L", "--skip-local", is_flag=True, help="Skip the deploying machine.")
_skip_remote = click.option("-R", "--skip-remote", is_flag=True, help="Skip the servers.")


@group("registry")
def registry_group() -> None:
    """Set up the image registry (a local one, or a login), or remove it."""


@registry_group.command("setup")
@_skip_local
@_skip_remote
def registry_setup(skip_local: bool, skip_remote: bool) -> None:
    """Start the local registry, or log in to the registry locally and on the servers."""
    commander = current_run().commander
    if not skip_local:
        local_registry.ensure_docker()
    if commander.config.registry.local:
        if not skip_local:
            local_registry.start(commander)
    else:
        _login(commander, skip_local, skip_remote)


@registry_group.command("remove")
@_skip_local
@_skip_remote
def registry_remove(skip_local: bool, skip_remote: bool) -> None:
    """Remove the local registry, or log out of the registry locally and on the servers."""
    commander = current_run().commander
    if commander.config.registry.local:
        if not skip_local:
            local_registry.stop(commander)
    else:
        _logout(commander, skip_local, skip_remote)


@registry_group.command("login")
@_skip_local
@_skip_remote
def registry_login(skip_local: bool, skip_remote: bool) -> None:
    """Log in to the registry locally and on the servers."""
    commander = current_run().commander
    registry_commands.login(commander.config)  # refuses a local registry before anything runs
    if not skip_local:
        local_registry.ensure_docker()
    _login(commander, skip_local, skip_remote)


@registry_group.command("logout")
@_skip_local
@_skip_remote
def registry_logout(skip_local: bool, skip_remote: bool) -> None:
    """Log out of the registry locally and on the servers."""
    commander = current_run().commander
    _logout(commander, skip_local, skip_remote)


def _login(commander: Commander, skip_local: bool, skip_remote: bool) -> None:
    login = registry_commands.login(commander.config)
    try:
        if not skip_local:
            commander.executor.local().execute(login.command, stdin=login.stdin)
        if not skip_remote:
            commander.on(commander.hosts, lambda s: s.execute(login.command, stdin=login.stdin))
    except KamalpyError as exc:
        raise registry_commands.login_failed(commander.config.registry, exc) from exc


def _logout(commander: Commander, skip_local: bool, skip_remote: bool) -> None:
    command = registry_commands.logout(commander.config)
    if not skip_local:
        commander.executor.local().execute(command)
    if not skip_remote:
        commander.on(commander.hosts, lambda s: s.execute(command))


def setup_local(commander: Commander) -> None:
    """Start the local registry on this machine (``build push`` calls this before building)."""
    local_registry.start(commander)


def logout_servers(commander: Commander) -> None:
    """``docker logout`` on the servers (``remove`` does this; a local registry has no login to undo)."""
    if commander.config.registry.local:
        return
    command = registry_commands.logout(commander.config)
    commander.on(commander.hosts, lambda s: s.execute(command))


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(registry_group)
