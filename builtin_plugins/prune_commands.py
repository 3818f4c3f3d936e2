"""Built-in plugin: ``prune all|images|containers [--retain N]`` (old containers and images of the service)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kamalpy.cli.base import current_run, group
from kamalpy.commands import auditor
from kamalpy.commands import prune as prune_commands
from kamalpy.errors import KamalpyError
from kamalpy.plugin import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.execution import Session


@group("prune")
def prune_group() -> None:
    """Prune old application images and containers."""


def prune_images() -> None:
    commander = current_run().commander
    config = commander.config

    def work(session: Session) -> None:
        session.execute(auditor.record(config, "Pruned images", performer=commander.performer), quiet=True)
        session.execute(prune_commands.dangling_images(config))
        session.execute(prune_commands.tagged_images(config))

    with commander.lock.hold():
        commander.on(commander.hosts, work)


def prune_containers(retain: int | None) -> None:
    commander = current_run().commander
    config = commander.config
    retain = config.retain_containers if retain is None else retain
    if retain < 1:
        raise KamalpyError("retain must be at least 1")

    def work(session: Session) -> None:
        session.execute(auditor.record(config, "Pruned containers", performer=commander.performer), quiet=True)
        session.execute(prune_commands.app_containers(config, retain))

    with commander.lock.hold():
        commander.on(commander.hosts, work)


@prune_group.command("all")
def prune_all() -> None:
    """Prune unused images and stopped containers."""
    with current_run().commander.lock.hold():
        prune_containers(None)
        prune_images()


@prune_group.command("images")
def prune_images_command() -> None:
    """Prune unused images."""
    prune_images()


@prune_group.command("containers")
@click.option("--retain", type=int, help="Number of containers to retain (default: retain_containers, 5).")
def prune_containers_command(retain: int | None) -> None:
    """Prune all stopped containers, except the last N."""
    prune_containers(retain)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(prune_group)
