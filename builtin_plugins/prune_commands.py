"""Built-in plugin: ``prune all|images|containers [--retain N]`` (old containers and images of the service)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kamalpy.cli.base import current_run, group
from kamalpy.commands import prune as prune_commands
from kamalpy.errors import KamalpyError
from kamalpy.execution import Step
from kamalpy.plugin import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.execution import Session


@group("prune")
def prune_group() -> None:
    """Prune old application images and containers."""


def container_steps(commander: Commander, retain: int | None = None, *, check: bool = True) -> list[Step]:
    """Kamal's ``prune containers``: the audit line, then all but the newest ``retain`` stopped containers."""
    config = commander.config
    retain = config.retain_containers if retain is None else retain
    if retain < 1:
        raise KamalpyError("retain must be at least 1")
    return [commander.audit("Pruned containers", check=check),
            Step(prune_commands.app_containers(config, retain), check=check)]


def image_steps(commander: Commander, *, check: bool = True) -> list[Step]:
    """Kamal's ``prune images``: the audit line, dangling images, then tags no container uses."""
    config = commander.config
    return [commander.audit("Pruned images", check=check), Step(prune_commands.dangling_images(config), check=check),
            Step(prune_commands.tagged_images(config), check=check)]


def _prune(steps: list[Step]) -> None:
    commander = current_run().commander

    def work(session: Session) -> None:
        for step in steps:  # one command at a time, as before (deploy sends them in one round trip)
            session.execute(step.command, quiet=step.quiet)

    with commander.lock.hold():
        commander.on(commander.hosts, work)


def prune_images() -> None:
    _prune(image_steps(current_run().commander))


def prune_containers(retain: int | None) -> None:
    _prune(container_steps(current_run().commander, retain))


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


@hookimpl
def kamalpy_prune_steps(commander: Commander) -> list[Step]:
    """Kamal's ``prune all`` after a deploy (old stopped containers, then unused images), each allowed to fail."""
    return [*container_steps(commander, check=False), *image_steps(commander, check=False)]
