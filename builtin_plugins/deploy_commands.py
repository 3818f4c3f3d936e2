"""Built-in plugin: the top-level flows ``setup``, ``deploy``, ``redeploy``, ``rollback``, ``remove``, ``details``.

Each is Kamal 2.11's sequence (reference kamal.md §8.2): the image onto the servers (outside the lock),
then under the deploy lock the pre-deploy hook, the proxy, stale containers, ``app boot`` and a
best-effort prune; the post-deploy hook gets ``KAMAL_RUNTIME``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from kamalpy import app_boot
from kamalpy.cli.base import command, current_run
from kamalpy.commands import app as app_commands
from kamalpy.commands.hook import ruby_round
from kamalpy.config.values import check_version
from kamalpy.errors import KamalpyError
from kamalpy.execution import Step
from kamalpy.plugin import hookimpl
from kamalpy.prompts import confirm

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.execution import Session
    from kamalpy.transport import CommandResult

SKIP_PUSH = click.option("-P", "--skip-push", is_flag=True, help="Skip the image build and push (pull only).")
NO_CACHE = click.option("--no-cache", is_flag=True, help="Build without the builder's cache.")


def _commander() -> Commander:
    return current_run().commander


def deliver(commander: Commander, skip_push: bool) -> None:
    """The image onto the app hosts: ``build deliver`` (build, push, pull), or ``build pull`` with ``-P``."""
    from kamalpy.builtin_plugins import build_commands

    if skip_push:
        commander.output.say("Pull app image...")
    else:
        commander.output.say("Build and push app image...")
        build_commands.push(commander)
    build_commands.pull(commander)


def prune_steps(commander: Commander) -> list[Step]:
    """Kamal's ``prune all`` (old stopped containers, then unused images), each step allowed to fail."""
    from kamalpy.builtin_plugins import prune_commands

    return [*prune_commands.container_steps(commander, check=False),
            *prune_commands.image_steps(commander, check=False)]


def _warn_on_prune_failures(commander: Commander, results: dict[str, list[CommandResult]]) -> None:
    # The new version serves already: a failed clean-up is reported, it does not fail the deploy.
    for host, found in results.items():
        for result in found:
            if not result.ok:
                detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
                commander.output.warn(f"Pruning failed on {host} (the deploy succeeded): {result.command} "
                                      f"exit status {result.exit_status} {detail[0]}".rstrip())


def deploy_flow(commander: Commander, *, skip_push: bool, redeploy: bool = False,
                boot_accessories: bool = False) -> None:
    """``deploy`` (``redeploy``: no proxy boot, no accessories, no prune)."""
    from kamalpy.builtin_plugins import proxy_commands

    output = commander.output
    started = time.monotonic()
    commander.config.version  # noqa: B018 - the version is worked out once, before anything runs
    deliver(commander, skip_push)
    with commander.lock.hold():
        commander.run_hook("pre-deploy", secrets=True)
        if not redeploy:
            output.say("Ensure the proxy is running...")
            proxy_commands.boot(commander)
            if boot_accessories and commander.config.accessories:
                from kamalpy.builtin_plugins import accessory_commands

                accessory_commands.boot_missing(commander)
        output.say("Detect stale containers...")
        app_boot.stale_containers(commander, stop=True)
        # The prune goes with the final `docker tag` of each app host, in the same round trip. Its steps are
        # made after the tag's audit line, so that the audit log's times are in order, as Kamal's are.
        pruning: list[Step] = []

        def prune_after_tag() -> list[Step]:
            pruning[:] = prune_steps(commander)
            return pruning

        results = app_boot.boot(commander, commander.config.version, after=() if redeploy else prune_after_tag)
        if not redeploy:
            output.say("Pruned old containers and images (with the tag, in the same round trip)")
            others = [h for h in commander.hosts if h not in results]  # hosts of accessories only
            if others:
                steps = pruning or prune_steps(commander)
                results.update(commander.on(others, lambda s: s.script(steps)))
            _warn_on_prune_failures(commander, results)
    runtime = time.monotonic() - started
    output.say(f"Finished all in {runtime:.1f} seconds")
    commander.run_hook("post-deploy", secrets=True, extra={"runtime": str(ruby_round(runtime))})


@command("deploy")
@SKIP_PUSH
@NO_CACHE
def deploy(skip_push: bool, no_cache: bool) -> None:
    """Deploy the app to the servers: the image, the proxy, the new containers, no request lost."""
    deploy_flow(_commander(), skip_push=skip_push)


@command("redeploy")
@SKIP_PUSH
@NO_CACHE
def redeploy(skip_push: bool, no_cache: bool) -> None:
    """Deploy without booting the proxy or pruning (quicker, for a running setup)."""
    deploy_flow(_commander(), skip_push=skip_push, redeploy=True)


@command("setup")
@SKIP_PUSH
@NO_CACHE
def setup(skip_push: bool, no_cache: bool) -> None:
    """Set up the servers (Docker, the run directory) and deploy the app."""
    from kamalpy.builtin_plugins import server_commands

    commander = _commander()
    with commander.lock.hold():
        commander.output.say("Ensure Docker is installed...")
        server_commands.bootstrap(commander)
        deploy_flow(commander, skip_push=skip_push, boot_accessories=True)


@command("rollback")
@click.argument("rollback_version", metavar="VERSION", required=False)
def rollback(rollback_version: str | None) -> None:
    """Go back to VERSION, an earlier version whose containers are still on the servers (none: list them)."""
    if rollback_version:
        check_version(rollback_version, "VERSION")
    commander = _commander()
    version = rollback_version
    if not version:
        # Kamal requires VERSION; listing the candidates is more useful than an error.
        commander.config.version = commander.config.latest_tag  # no git needed just to list
        _list_versions(commander)
        return
    started = time.monotonic()
    config = commander.config
    config.version = version
    with commander.lock.hold():
        if not _available(commander, version):
            commander.output.error(f"The app version '{version}' is not available as a container (use "
                                   "'kamalpy app containers' for available versions)")
            raise KamalpyError(f"The app version '{version}' is not available as a container")
        commander.run_hook("pre-deploy", secrets=True)
        app_boot.boot(commander, version)
    runtime = time.monotonic() - started
    commander.output.say(f"Finished all in {runtime:.1f} seconds")
    commander.run_hook("post-deploy", secrets=True, extra={"runtime": str(ruby_round(runtime))})


def _available(commander: Commander, version: str) -> bool:
    """A container of ``version`` exists for every selected role on every app host (Kamal's check)."""
    def work(session: Session) -> bool:
        roles = commander.specifics.roles_on(session.host)
        results = session.script([Step(app_commands.container_id_for_version(role, version), check=False)
                                  for role in roles])
        return all(r.stdout.strip() for r in results) or commander.dry_run

    return all(commander.on(commander.specifics.app_hosts, work).values())


def _list_versions(commander: Commander) -> None:
    """``rollback`` without a version: the versions each app host could roll back to, newest first."""
    def work(session: Session) -> list[str]:
        versions: list[str] = []
        for role in commander.specifics.roles_on(session.host):
            listed = session.capture(app_commands.list_versions(role, "--all"), raise_on_non_zero=False)
            versions += [v for v in listed.split("\n") if v and "_replaced_" not in v and v not in versions]
        return versions

    found = commander.on(commander.specifics.app_hosts, work)
    for host, versions in found.items():
        commander.output.by_host(host, "\n".join(versions) or "No versions found")
    commander.output.say("Roll back with: kamalpy rollback VERSION")


@command("remove")
@click.option("-y", "--confirmed", is_flag=True, help="Do not ask for confirmation.")
def remove(confirmed: bool) -> None:
    """Remove the app's containers, images and files, the proxy (unless other apps use it), the accessories
    and the registry login."""
    from kamalpy.builtin_plugins import app_commands, proxy_commands, registry_commands

    commander = _commander()
    if not confirm("This will remove all containers and images. Are you sure?", confirmed):
        return
    with commander.lock.hold():
        app_commands.remove(commander)
        proxy_commands.remove_proxy(commander, force=False)
        if commander.config.accessories:
            from kamalpy.builtin_plugins import accessory_commands

            accessory_commands.remove_all(commander)
        registry_commands.logout_servers(commander)


@command("details")
def details() -> None:
    """Show the proxy, app and accessory containers of each server."""
    from kamalpy.builtin_plugins import app_commands, proxy_commands

    commander = _commander()
    proxy_commands.details(commander)
    app_commands.details(commander)
    if commander.config.accessories:
        from kamalpy.builtin_plugins import accessory_commands

        accessory_commands.details_all(commander)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    for cmd in (deploy, redeploy, setup, rollback, remove, details):
        cli.add_command(cmd)
