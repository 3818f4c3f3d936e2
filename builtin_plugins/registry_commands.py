"""Built-in plugin: ``registry login|logout`` for remote registries (the local registry mode comes later).

The password goes to ``docker login --password-stdin`` on the command's standard input: it is on no
command line, in no process list, log or dry-run output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kamalpy.cli.base import current_run, group
from kamalpy.commands import registry as registry_commands
from kamalpy.plugin import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander

_skip_local = click.option("-L", "--skip-local", is_flag=True, help="Skip the deploying machine.")
_skip_remote = click.option("-R", "--skip-remote", is_flag=True, help="Skip the servers.")


@group("registry")
def registry_group() -> None:
    """Log in to and out of the image registry."""


@registry_group.command("login")
@_skip_local
@_skip_remote
def registry_login(skip_local: bool, skip_remote: bool) -> None:
    """Log in to the registry locally and on the servers."""
    commander = current_run().commander
    login = registry_commands.login(commander.config)
    if not skip_local:
        commander.executor.local().execute(login.command, stdin=login.stdin)
    if not skip_remote:
        commander.on(commander.hosts, lambda s: s.execute(login.command, stdin=login.stdin))


@registry_group.command("logout")
@_skip_local
@_skip_remote
def registry_logout(skip_local: bool, skip_remote: bool) -> None:
    """Log out of the registry locally and on the servers."""
    commander = current_run().commander
    command = registry_commands.logout(commander.config)
    if not skip_local:
        commander.executor.local().execute(command)
    if not skip_remote:
        commander.on(commander.hosts, lambda s: s.execute(command))


def logout_servers(commander: Commander) -> None:
    """``docker logout`` on the servers (``remove`` does this; a local registry has no login to undo)."""
    if commander.config.registry.local:
        return
    command = registry_commands.logout(commander.config)
    commander.on(commander.hosts, lambda s: s.execute(command))


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(registry_group)
