"""Built-in plugin: ``kamalpy sandbox up [N] | down | status | image NAME``, disposable test servers on this machine.

Each server is a network namespace with its own sshd and dockerd, on a private bridge, next to an
image registry; see docs/sandbox.md. Linux and root only. The logic lives in the modules beside this
one (:mod:`.lifecycle` is the entry point for code and the pytest fixtures).
"""

from __future__ import annotations

import json

import click

from kamalpy.cli.base import current_run, group
from kamalpy.plugin import hookimpl


@group("sandbox")
def sandbox_group() -> None:
    """Disposable test servers (netns + sshd + dockerd) and a registry on this machine (root)."""


@sandbox_group.command("up", lifecycle=False)
@click.argument("count", type=int, default=3, required=False)
@click.option("--registry-auth", metavar="USER:PASSWORD", help="Make the registry require this login.")
@click.option("--no-images", is_flag=True, help="Skip making and pushing the base images.")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON instead of text.")
def up_command(count: int, registry_auth: str | None, no_images: bool, as_json: bool) -> None:
    """Create COUNT servers (default 3), the registry and the base images."""
    from kamalpy.builtin_plugins.sandbox import lifecycle, registry, report
    from kamalpy.builtin_plugins.sandbox.state import Spec

    spec = Spec.from_env()
    auth = registry.parse_auth(registry_auth)
    verbose = current_run().options.verbose
    state = lifecycle.up(spec, count, auth, with_images=not no_images,
                         log=lambda line: click.echo(line, err=True) if verbose or not line.startswith(" ") else None)
    click.echo(json.dumps(state, indent=2) if as_json else report.summary(state))


@sandbox_group.command("down", lifecycle=False)
def down_command() -> None:
    """Remove every server, the registry, the bridge and the sandbox directory."""
    from kamalpy.builtin_plugins.sandbox import lifecycle
    from kamalpy.builtin_plugins.sandbox.state import Spec

    removed = lifecycle.down(Spec.from_env())
    if removed["servers"]:
        click.echo(f"Sandbox down: removed {removed['servers']} servers")


@sandbox_group.command("status", lifecycle=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def status_command(as_json: bool) -> None:
    """Show the servers and the registry, checked live; exit 1 when down or unhealthy."""
    from kamalpy.builtin_plugins.sandbox import lifecycle, report
    from kamalpy.builtin_plugins.sandbox.state import Spec

    state = lifecycle.status(Spec.from_env())
    if state is None:
        click.echo("{}" if as_json else "Sandbox is not up")
        raise click.exceptions.Exit(1)
    click.echo(json.dumps(state, indent=2) if as_json else report.status_text(state), nl=as_json)
    if not state["ok"]:
        raise click.exceptions.Exit(1)


@sandbox_group.command("image", lifecycle=False)
@click.argument("names", nargs=-1, type=click.Choice(["postgres", "python", "redis"]), required=True)
def image_command(names: tuple[str, ...]) -> None:
    """Make an extra image from Debian's packages and push it to the registry (once); print its tag."""
    from kamalpy.builtin_plugins.sandbox.handle import Sandbox
    from kamalpy.builtin_plugins.sandbox.state import Spec

    sandbox = Sandbox.load(Spec.from_env())
    for name in names:
        click.echo(sandbox.redis_image() if name == "redis" else sandbox.example_image(name))


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(sandbox_group)
