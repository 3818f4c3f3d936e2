"""Built-in plugin: ``lock status|acquire|release`` (Kamal's deploy lock, see kamalpy.locking)."""

from __future__ import annotations

import click

from kamalpy.cli.base import current_run, group
from kamalpy.commands import lock as lock_commands
from kamalpy.errors import HostErrors
from kamalpy.plugin import hookimpl

NO_LOCK = "There is no deploy lock"


@group("lock")
def lock_group() -> None:
    """Manage the deploy lock."""


@lock_group.command("status")
def lock_status() -> None:
    """Report the lock status."""
    commander = current_run().commander
    try:
        details = commander.lock.status_text()
        if not commander.dry_run:  # a dry run's stdout is its command lines only
            click.echo(details)
    except HostErrors as exc:
        if lock_commands.MISSING_MARKER not in str(exc):
            raise
        click.echo(NO_LOCK)


@lock_group.command("acquire")
@click.option("-m", "--message", required=True, help="A lock message.")
def lock_acquire(message: str) -> None:
    """Acquire the deploy lock."""
    commander = current_run().commander
    commander.lock.acquire(message, wait=False)  # Kamal's `lock acquire` never waits
    commander.output.say("Acquired the deploy lock", colour=None)


@lock_group.command("release")
def lock_release() -> None:
    """Release the deploy lock."""
    commander = current_run().commander
    try:
        commander.on_primary(lambda s: s.execute(lock_commands.release(commander.config), quiet=True))
    except HostErrors as exc:
        if lock_commands.MISSING_MARKER not in str(exc):
            raise
        click.echo(NO_LOCK)
        return
    commander.output.say("Released the deploy lock", colour=None)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(lock_group)
