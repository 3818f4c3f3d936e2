"""Built-in plugin: ``upgrade``, Kamal's move from Kamal 1.x to 2 (Traefik replaced by kamal-proxy).

Under the deploy lock: ``proxy upgrade`` and ``accessory upgrade all`` on every host, or host by host with
``--rolling``. Both are run through the command tree (:func:`kamalpy.cli.invoke.invoke`), as Kamal's
``invoke`` does, so whichever plugin provides them is used.
"""

from __future__ import annotations

import click

from kamalpy.cli.base import command, current_run
from kamalpy.cli.invoke import invoke
from kamalpy.plugin import hookimpl
from kamalpy.prompts import confirm


@command("upgrade")
@click.option("-y", "--confirmed", is_flag=True, help="Proceed without confirmation question.")
@click.option("--rolling", is_flag=True, help="Upgrade one host at a time.")
def upgrade(confirmed: bool, rolling: bool) -> None:
    """Upgrade from Kamal 1.x to 2.0."""
    if not confirm("This will replace Traefik with kamal-proxy and restart all accessories", confirmed):
        return
    commander = current_run().commander
    say = commander.output.say
    with commander.lock.hold():
        if not rolling:
            say("Upgrading all hosts...")
            invoke("proxy", "upgrade", "-y")
            invoke("accessory", "upgrade", "all", "-y")
            say("Upgraded all hosts")
            return
        for host in list(commander.hosts):
            with commander.only_hosts([host]):
                say(f"Upgrading {host}...")
                invoke("proxy", "upgrade", "-y")
                if host in commander.specifics.accessory_hosts:
                    invoke("accessory", "upgrade", "all", "-y")
                say(f"Upgraded {host}")


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(upgrade)
