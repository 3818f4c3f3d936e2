"""The top-level flows ``setup``, ``deploy``, ``redeploy``, ``rollback``, ``remove`` and ``details``.

Each is Kamal 2.11's sequence (reference kamal.md §8.2), composed only of hook calls: the named steps
plugins offer through ``kamalpy_flow_steps`` (``build.pull``, ``proxy.boot``...), the boot
(``kamalpy_boot_app``), the prune (``kamalpy_prune_steps``) and the registry strategy. A flow first
checks that every step it needs is offered, so that a disabled plugin stops it before it touches any
server, with one line naming the missing step; a step that is optional (the prune, accessories) is
left out instead. The built-in ``deploy_commands`` plugin only registers the CLI commands.

Deploy: a read-only lock check sharing the first round trip, the image onto the servers (outside the lock),
then under the deploy lock the pre-deploy hook,
the proxy, stale containers, the boot and a best-effort prune; the post-deploy hook gets
``KAMAL_RUNTIME``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from kamalpy import app_boot, builders
from kamalpy.commands import app as app_commands
from kamalpy.commands.hook import ruby_round
from kamalpy.errors import HostErrors, KamalpyError
from kamalpy.execution import Step
from kamalpy.hooks import plugin_failures
from kamalpy.plugin import FlowStep

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.execution import Session
    from kamalpy.transport import CommandResult

# What is left half-done when a step fails, and how to recover (named in the error line).
RECOVERY = {
    "build.push": "Nothing changed on the servers.",
    "build.pull": "The running version is unchanged; run the command again.",
    "proxy.boot": "The running version is unchanged; run `kamalpy proxy boot`, then deploy again.",
    "accessory.boot_missing": "The app was not deployed; run `kamalpy accessory boot all`, then deploy again.",
    "app.stale_containers": "The running version is unchanged; deploy again.",
    "server.bootstrap": "Nothing was deployed; run `kamalpy server bootstrap` again.",
    "app.remove": "The app may be partly removed; run `kamalpy remove` again.",
    "proxy.remove": "The app is removed; run `kamalpy proxy remove` again.",
    "accessory.remove_all": "The app is removed; run `kamalpy accessory remove all` again.",
}


class Flow:
    """The steps of one flow, resolved (and checked) before anything runs."""

    def __init__(self, commander: Commander, command: str, needs: Iterable[str], wants: Iterable[str] = ()) -> None:
        self.commander = commander
        self.command = command
        offered = commander.run.hooks.flow_steps()
        missing = [name for name in needs if name not in offered]
        if missing:
            raise KamalpyError(f"{command} needs the step '{missing[0]}', which no plugin offers "
                               "(kamalpy_flow_steps; is a built-in plugin disabled?)")
        self.steps: dict[str, Callable[[FlowStep], Any]] = {
            name: offered[name] for name in [*needs, *wants] if name in offered}

    def has(self, name: str) -> bool:
        return name in self.steps

    def __call__(self, name: str, **params: Any) -> Any:
        with plugin_failures(self.commander.run.hooks.pm, f"the {self.command} step '{name}'",
                             RECOVERY.get(name, "")):
            return self.steps[name](FlowStep(name, self.commander, params))


def _check_capabilities(commander: Commander, *, boot: bool = False, proxy: bool = False,
                        registry: bool = False, build: bool = False) -> None:
    """Resolve what the flow will need from plugins now, before any server is touched."""
    if build:
        builders.select(commander)  # an unknown builder strategy fails here (the build uses the same one)
    if boot:
        app_boot.require_boot(commander)
    if proxy and any(role.running_proxy for role in commander.config.roles):
        commander.proxy  # noqa: B018 - an unknown proxy driver fails here, not halfway
    if registry:
        commander.registry  # noqa: B018 - an unknown registry strategy fails here, not halfway


def _warn_on_prune_failures(commander: Commander, results: dict[str, list[CommandResult]]) -> None:
    # The new version serves already: a failed clean-up is reported, it does not fail the deploy.
    for host, found in results.items():
        for result in found:
            if not result.ok:
                detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
                commander.output.warn(f"Pruning failed on {host} (the deploy succeeded): {result.command} "
                                      f"exit status {result.exit_status} {detail[0]}".rstrip())


def deploy_steps(skip_push: bool, redeploy: bool, boot_accessories: bool) -> tuple[list[str], list[str]]:
    """The (needed, optional) steps of ``deploy``/``redeploy``/``setup``."""
    needs = [*([] if skip_push else ["build.push"]), "build.pull", *([] if redeploy else ["proxy.boot"]),
             "app.stale_containers"]
    return needs, ["accessory.boot_missing"] if boot_accessories else []


def deploy(commander: Commander, *, skip_push: bool, redeploy: bool = False, boot_accessories: bool = False,
           flow: Flow | None = None) -> None:
    """``deploy`` (``redeploy``: no proxy boot, no accessories, no prune)."""
    output = commander.output
    started = time.monotonic()
    if flow is None:
        flow = Flow(commander, "redeploy" if redeploy else "deploy", *deploy_steps(skip_push, redeploy, False))
        _check_capabilities(commander, boot=True, proxy=True, registry=True, build=not skip_push)
    commander.config.version  # noqa: B018 - the version is worked out once, before anything runs
    # A held lock stops the deploy before the pull changes anything (the check reads the pull's HostErrors).
    with _none_switched(commander), commander.lock.checked():
        deliver(commander, flow, skip_push)
    with commander.lock.hold():
        commander.run_hook("pre-deploy", secrets=True)
        with _none_switched(commander):
            if not redeploy:
                output.say("Ensure the proxy is running...")
                flow("proxy.boot")
                if boot_accessories and commander.config.accessories:
                    if flow.has("accessory.boot_missing"):
                        flow("accessory.boot_missing")
                    else:
                        output.warn("No plugin boots accessories (accessory.boot_missing): skipping them")
            output.say("Detect stale containers...")
            # The boot's clash check rides with it (app_boot.stale_containers): one round trip for both.
            flow("app.stale_containers", stop=True, boot_version=commander.config.version)
        prunes = not redeploy and bool(commander.run.hooks.implementers("kamalpy_prune_steps"))
        # The prune goes with the final `docker tag` of each app host, in the same round trip. Its steps are
        # made after the tag's audit line, so that the audit log's times are in order, as Kamal's are.
        pruning: list[Step] = []

        def prune_after_tag() -> list[Step]:
            pruning[:] = commander.run.hooks.prune_steps(commander) or []
            return pruning

        results = app_boot.boot(commander, commander.config.version, after=prune_after_tag if prunes else ())
        if prunes:
            output.say("Pruned old containers and images (with the tag, in the same round trip)")
            others = [h for h in commander.hosts if h not in results]  # hosts of accessories only
            if others and pruning:
                results.update(commander.on(others, lambda s: s.script(pruning)))
            _warn_on_prune_failures(commander, results)
    runtime = time.monotonic() - started
    output.say(f"Finished all in {runtime:.1f} seconds", colour=None)
    commander.run_hook("post-deploy", secrets=True, extra={"runtime": str(ruby_round(runtime))})


@contextlib.contextmanager
def _none_switched(commander: Commander) -> Iterator[None]:
    """A server's failure before the boot ends the deploy's message with "switched ...: none", as a failed
    boot ends it with the hosts it switched (kamalpy.app_boot)."""
    try:
        yield
    except HostErrors as error:
        raise app_boot.DeployFailed(app_boot.with_switched(str(error), commander.config.version, [])) from error


def deliver(commander: Commander, flow: Flow, skip_push: bool) -> None:
    """The image onto the app hosts: ``build deliver`` (build, push, pull), or ``build pull`` with ``-P``."""
    if skip_push:
        commander.output.say("Pull app image...")
    else:
        commander.output.say("Build and push app image...")
        flow("build.push")
    flow("build.pull")


def setup(commander: Commander, *, skip_push: bool) -> None:
    """``setup``: Docker and the run directory on the servers, then ``deploy`` with the accessories."""
    needs, wants = deploy_steps(skip_push, False, True)
    flow = Flow(commander, "setup", ["server.bootstrap", *needs], wants)
    _check_capabilities(commander, boot=True, proxy=True, registry=True, build=not skip_push)
    with commander.lock.hold():
        commander.output.say("Ensure Docker is installed...")
        flow("server.bootstrap")
        deploy(commander, skip_push=skip_push, boot_accessories=True, flow=flow)


def rollback(commander: Commander, version: str | None) -> None:
    """Go back to ``version``, whose containers are still on the servers (none: list the candidates)."""
    if not version:
        # Kamal requires VERSION; listing the candidates is more useful than an error.
        commander.config.version = commander.config.latest_tag  # no git needed just to list
        _list_versions(commander)
        return
    _check_capabilities(commander, boot=True, proxy=True)
    started = time.monotonic()
    config = commander.config
    config.version = version
    # The lock's `mkdir -p .kamal` on the app hosts goes with the version check (_available).
    with commander.lock.hold(directory_later=commander.specifics.app_hosts):
        if not _available(commander, version):
            commander.output.error(f"The app version '{version}' is not available as a container (use "
                                   "'kamalpy app containers' for available versions)")
            raise KamalpyError(f"The app version '{version}' is not available as a container")
        commander.run_hook("pre-deploy", secrets=True)
        app_boot.boot(commander, version)
    runtime = time.monotonic() - started
    commander.output.say(f"Finished all in {runtime:.1f} seconds", colour=None)
    commander.run_hook("post-deploy", secrets=True, extra={"runtime": str(ruby_round(runtime))})


def _available(commander: Commander, version: str) -> bool:
    """A container of ``version`` exists for every selected role on every app host (Kamal's check).

    The boot's clash check (the same container, then the running version) rides in the same round trip.
    """
    def work(session: Session) -> bool:
        roles = commander.specifics.roles_on(session.host)
        first = commander.lock.first_steps(session.host)  # the lock's run directory (see rollback)
        results = session.script([*first, *(step for role in roles for step in app_boot.clash_steps(role, version))])
        results = results[len(first):]
        for role, clash, current in zip(roles, results[::2], results[1::2], strict=True):
            commander.keep_ahead(app_boot.clash_key(session.host, role, version), (clash.stdout, current.stdout))
        return all(r.stdout.strip() for r in results[::2]) or commander.dry_run

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


def remove(commander: Commander) -> None:
    """The app's containers, images and files, the proxy (unless other apps use it), the accessories and the
    registry login."""
    accessories = bool(commander.config.accessories)
    flow = Flow(commander, "remove", ["app.remove", "proxy.remove"], ["accessory.remove_all"] if accessories else [])
    _check_capabilities(commander, proxy=True, registry=True)
    if accessories and not flow.has("accessory.remove_all"):
        raise KamalpyError("remove needs the step 'accessory.remove_all', which no plugin offers "
                           "(kamalpy_flow_steps; is a built-in plugin disabled?)")
    with commander.lock.hold():
        flow("app.remove")
        flow("proxy.remove", force=False)
        if accessories:
            flow("accessory.remove_all")
        logout = commander.registry.logout_step()  # a registry with nothing to log out of (local) has none
        if logout is not None:
            commander.on(commander.hosts, lambda s: s.execute(logout.command))


def details(commander: Commander) -> None:
    """The proxy, app and accessory containers of each server."""
    accessories = bool(commander.config.accessories)
    flow = Flow(commander, "details", ["proxy.details", "app.details"],
                ["accessory.details_all"] if accessories else [])
    _check_capabilities(commander, proxy=True)
    flow("proxy.details")
    flow("app.details")
    if accessories:
        if flow.has("accessory.details_all"):
            flow("accessory.details_all")
        else:
            commander.output.warn("No plugin shows accessories (accessory.details_all): skipping them")
