"""Built-in plugin: the CLI commands ``setup``, ``deploy``, ``redeploy``, ``rollback``, ``remove``, ``details``.

The flows themselves are in core (kamalpy.flows), composed of hook calls, so that every step of them can
be replaced by a plugin.
"""

from __future__ import annotations

import click

from kamalpy import flows
from kamalpy.cli.base import command, current_run
from kamalpy.config.values import check_version
from kamalpy.plugin import hookimpl
from kamalpy.prompts import confirm

SKIP_PUSH = click.option("-P", "--skip-push", is_flag=True, help="Skip the image build and push (pull only).")
NO_CACHE = click.option("--no-cache", is_flag=True, help="Build without the builder's cache.")


@command("deploy")
@SKIP_PUSH
@NO_CACHE
def deploy(skip_push: bool, no_cache: bool) -> None:
    """Deploy the app to the servers: the image, the proxy, the new containers, no request lost."""
    flows.deploy(current_run().commander, skip_push=skip_push)


@command("redeploy")
@SKIP_PUSH
@NO_CACHE
def redeploy(skip_push: bool, no_cache: bool) -> None:
    """Deploy without booting the proxy or pruning (quicker, for a running setup)."""
    flows.deploy(current_run().commander, skip_push=skip_push, redeploy=True)


@command("setup")
@SKIP_PUSH
@NO_CACHE
def setup(skip_push: bool, no_cache: bool) -> None:
    """Set up the servers (Docker, the run directory) and deploy the app."""
    flows.setup(current_run().commander, skip_push=skip_push)


@command("rollback")
@click.argument("rollback_version", metavar="VERSION", required=False)
def rollback(rollback_version: str | None) -> None:
    """Go back to VERSION, an earlier version whose containers are still on the servers (none: list them)."""
    if rollback_version:
        check_version(rollback_version, "VERSION")
    flows.rollback(current_run().commander, rollback_version)


@command("remove")
@click.option("-y", "--confirmed", is_flag=True, help="Do not ask for confirmation.")
def remove(confirmed: bool) -> None:
    """Remove the app's containers, images and files, the proxy (unless other apps use it), the accessories
    and the registry login."""
    if confirm("This will remove all containers and images. Are you sure?", confirmed):
        flows.remove(current_run().commander)


@command("details")
def details() -> None:
    """Show the proxy, app and accessory containers of each server."""
    flows.details(current_run().commander)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    for cmd in (deploy, redeploy, setup, rollback, remove, details):
        cli.add_command(cmd)
