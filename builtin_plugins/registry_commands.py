"""Built-in plugin: ``registry setup|remove|login|logout`` (reference 2.9), each with ``-L``/``-R``.

What each does is the registry strategy's (``registry.strategy``; kamalpy.registry_strategy):

A local registry (``registry.server: localhost:PORT``) is a container on this machine: ``setup`` starts
it, ``remove`` removes it, and there is nothing to log in to. Any other registry: ``setup`` logs in
here and on the servers, ``remove`` logs out. The password goes to ``docker login --password-stdin``
on the command's standard input: it is on no command line, in no process list, log or dry-run output.
"""

from __future__ import annotations

import click

from kamalpy.cli.base import current_run, group
from kamalpy.plugin import hookimpl

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
    current_run().commander.registry.setup(skip_local=skip_local, skip_remote=skip_remote)


@registry_group.command("remove")
@_skip_local
@_skip_remote
def registry_remove(skip_local: bool, skip_remote: bool) -> None:
    """Remove the local registry, or log out of the registry locally and on the servers."""
    current_run().commander.registry.remove(skip_local=skip_local, skip_remote=skip_remote)


@registry_group.command("login")
@_skip_local
@_skip_remote
def registry_login(skip_local: bool, skip_remote: bool) -> None:
    """Log in to the registry locally and on the servers."""
    current_run().commander.registry.login(skip_local=skip_local, skip_remote=skip_remote)


@registry_group.command("logout")
@_skip_local
@_skip_remote
def registry_logout(skip_local: bool, skip_remote: bool) -> None:
    """Log out of the registry locally and on the servers."""
    current_run().commander.registry.logout(skip_local=skip_local, skip_remote=skip_remote)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(registry_group)
