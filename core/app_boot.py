"""``app boot``: start a version of the app on every app host with no request lost (Kamal 2.11, §8.3).

For each (host, role): rename a container of the same version out of the way, start the new container
(its secret env file written with mode 0600 in the same round trip), let the proxy driver switch traffic
to it once healthy (or, for a role without proxy, wait until Docker reports it running or healthy), then
stop the old one. Hosts boot in groups (``boot.limit``, ``boot.wait``); other roles wait at a barrier
until the first primary-role container is healthy. Kamal's commands, in Kamal's order, in as few round
trips as the order allows.

:func:`boot` is the flow (core); how the new containers replace the old ones across hosts is the
``kamalpy_boot_app`` hook, built in as :func:`rolling_boot` (the ``boot_rolling`` plugin). This module is a
helper shared by the flows and that plugin, not a plugin itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from kamalpy.commands import app as app_commands
from kamalpy.commands import app_proxy, assets
from kamalpy.commands.base import file_join
from kamalpy.commands.layout import container_hostname, error_pages_directory, replaced_version
from kamalpy.errors import HostErrors, KamalpyError
from kamalpy.execution import Step, WriteFile
from kamalpy.plugin import BootContext
from kamalpy.proxy_driver import BootError
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.config.roles import Role
    from kamalpy.execution import Session
    from kamalpy.transport import CommandResult

HEALTHY_STATUSES = ("running", "healthy")
SHORT_ID = 12  # the length of the container ids `docker container ls --quiet` prints
NO_BOOT = "No plugin boots the app: the kamalpy_boot_app hook has no implementation (is boot_rolling disabled?)"


class Barrier:
    """Kamal's boot barrier: other roles wait until the first primary-role container is healthy."""

    def __init__(self) -> None:
        self._decided = threading.Event()
        self._opened = False
        self._lock = threading.Lock()

    def _decide(self, opened: bool) -> bool:
        with self._lock:
            if self._decided.is_set():
                return False
            self._opened = opened
            self._decided.set()
            return True

    def open(self) -> bool:
        """Let the waiting roles boot; True for the first decision."""
        return self._decide(True)

    def close(self) -> bool:
        """Halt the waiting roles; True for the first decision (that caller reports why)."""
        return self._decide(False)

    def wait(self) -> bool:
        self._decided.wait()
        return self._opened


def boot(commander: Commander, version: str | None = None,
         after: Sequence[Step] | Callable[[], Sequence[Step]] = ()) -> dict[str, list[CommandResult]]:
    """Boot ``version`` (default: the ``--version`` option, else the latest tag) on the selected app hosts.

    ``after``: steps to run on each app host in the same round trip as the final ``docker tag`` (``deploy``
    passes its prune there); their results by host are returned. A callable is called after the tag's audit
    line is made, so audit lines made by the steps carry later times, as Kamal's do.
    """
    require_boot(commander)
    config = commander.config
    options = commander.run.options
    config.version = version or options.version or config.latest_tag
    output = commander.output
    output.say(f"Start container with version {config.version} (or reboot if already running)...")
    with commander.lock.hold():
        hosts = commander.specifics.app_hosts
        _preflight(commander, hosts)
        _prepare(commander, hosts)
        # How the new containers replace the old ones: the kamalpy_boot_app hook (built in: boot_rolling).
        switched = Switched(commander, config.version, hosts)

        def role_boot(session: Session, role: Role, barrier: Barrier | None = None) -> None:
            booting = RoleBoot(commander, session, role, barrier)
            booting.run()
            switched.record(session.host, role.name, booting.version)

        context = BootContext(commander, config.version, hosts, role_boot=role_boot, role_version=running_version)
        try:
            booted = commander.run.hooks.boot_app(context)
        except KamalpyError as error:  # Kamal's semantics: no other group boots; say which hosts did
            raise DeployFailed(switched.message(error)) from error
        if not booted:
            raise KamalpyError(NO_BOOT)
        record = commander.audit(f"Tagging {config.absolute_image} as the latest image")
        steps = list(after() if callable(after) else after)
        results = commander.on(hosts, lambda s: s.script([record,
                                                          app_commands.tag_latest_image(config), *steps]))
        return {host: found[2:] for host, found in results.items()}


class DeployFailed(KamalpyError):
    """A deploy (or rollback) stopped on a host; the message ends with the hosts already switched."""


def with_switched(message: str, version: str, hosts: Sequence[str]) -> str:
    """A failed deploy's message, ending with the hosts that run ``version`` now (or ``none``)."""
    listed = ", ".join(hosts) or "none"
    if message.endswith("."):  # a message of sentences (a plugin's failure with how to recover)
        return f"{message} Hosts switched to {version} before the failure: {listed}."
    return f"{message}; hosts switched to {version} before the failure: {listed}"


class Switched:
    """Which roles of which hosts run the new version, as the boot goes (a boot plugin may boot a role back)."""

    def __init__(self, commander: Commander, version: str, hosts: Sequence[str]) -> None:
        self.commander = commander
        self.version = version
        self.hosts = list(hosts)
        self._versions: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def record(self, host: str, role: str, version: str) -> None:
        with self._lock:
            self._versions[(host, role)] = version

    def names(self) -> list[str]:
        """``host``, or ``host (role, ...)`` when only some of its roles were switched, in host order."""
        found = []
        for host in self.hosts:
            roles = [r.name for r in self.commander.specifics.roles_on(host)]
            done = [r for r in roles if self._versions.get((host, r)) == self.version]
            if done:
                found.append(host if len(done) == len(roles) else f"{host} ({', '.join(done)})")
        return found

    def message(self, error: BaseException) -> str:
        return with_switched(str(error), self.version, self.names())


def running_version(session: Session, role: Role) -> str | None:
    """The version of the role's running container on the session's host; None when none runs."""
    return session.capture(app_commands.current_running_version(role), raise_on_non_zero=False).strip() or None


def require_boot(commander: Commander) -> None:
    """Refuse before touching any server when no plugin boots apps (e.g. ``--disable-plugin boot_rolling``)."""
    if not commander.run.hooks.implementers("kamalpy_boot_app"):
        raise KamalpyError(NO_BOOT)


def rolling_boot(boot: BootContext) -> None:
    """Kamal's rolling boot: groups of ``boot.limit`` hosts (``boot.wait`` apart), each role on each host
    replaced by :meth:`BootContext.boot_role`; other roles wait at a barrier until the first primary-role
    container is healthy; ``boot.parallel_roles`` boots the roles of a host side by side."""
    commander, config = boot.commander, boot.commander.config
    roles = [role for host in boot.hosts for role in boot.roles_on(host)]
    primary = config.primary_role_name
    barrier = Barrier() if any(r.name == primary for r in roles) and any(
        r.name != primary for r in roles) else None
    for group in _boot_groups(commander, boot.hosts):
        boot.run_hook("pre-app-boot", group)
        _boot_group(boot, group, barrier)
        boot.run_hook("post-app-boot", group)
        wait = config.boot.wait
        if wait:
            commander.output.info(f"Waiting {wait}s before booting the next group...")
            if not commander.dry_run:
                time.sleep(float(wait))


def _boot_groups(commander: Commander, hosts: list[str]) -> list[list[str]]:
    limit = commander.config.boot.limit
    if not limit:
        return [hosts]
    return [hosts[i:i + limit] for i in range(0, len(hosts), limit)]


def _boot_group(boot: BootContext, hosts: list[str], barrier: Barrier | None) -> None:
    commander = boot.commander
    if commander.config.boot.parallel_roles and not commander.dry_run:
        # One thread per (host, role); they share the host's connection (each command its own channel).
        pairs = [(host, role) for host in hosts for role in boot.roles_on(host)]
        errors: dict[str, BaseException] = {}
        with ThreadPoolExecutor(max_workers=max(1, len(pairs)), thread_name_prefix="kamalpy-role") as pool:
            futures = {f"{host} ({role.name})": pool.submit(
                lambda h=host, r=role: commander.on([h], lambda s: boot.boot_role(s, r, barrier)))
                for host, role in pairs}
            for key, future in futures.items():
                try:
                    future.result()
                except KamalpyError as exc:
                    errors[key] = exc
        if errors:
            raise HostErrors(errors)
        return

    def per_host(session: Session) -> None:
        for role in boot.roles_on(session.host):
            boot.boot_role(session, role, barrier)

    commander.on(hosts, per_host)


# ----- before booting: the proxy's checks, error pages, custom certificates, assets -----

def _preflight(commander: Commander, hosts: list[str]) -> None:
    """The proxy driver's read-only checks on the hosts with a proxied role (none: the driver is not asked)."""
    proxied = [h for h in hosts if any(r.running_proxy for r in commander.specifics.roles_on(h))]
    if proxied and commander.proxy.preflight_needed:
        commander.on(proxied, commander.proxy.preflight)


def _prepare(commander: Commander, hosts: list[str]) -> None:
    config = commander.config
    pages = _error_pages(config.error_pages_path)

    def work(session: Session) -> None:
        if pages:
            directory = file_join(error_pages_directory(config), config.version)
            session.execute(["mkdir", "-p", directory])
            for name, data in pages.items():
                session.upload(data, file_join(directory, name), 0o700)
        for role in commander.specifics.roles_on(session.host):
            if role.running_proxy and role.proxy is not None and role.proxy.custom_ssl_certificate:
                session.execute(app_proxy.create_tls_directory(role))
                for path, (secret, mode) in app_proxy.tls_files(role).items():
                    session.upload(config.secrets[secret].encode(), path, mode)
                commander.proxy.tls_key_uploaded(session, role)
            if role.assets:
                session.execute(assets.extract_assets(role))
                old = session.capture(app_commands.current_running_version(role), raise_on_non_zero=False).strip()
                session.execute(assets.sync_asset_volumes(role, old or None))

    if pages or any(r.assets or (r.proxy is not None and r.proxy.custom_ssl_certificate) for r in config.roles):
        commander.on(hosts, work)


def _error_pages(path: str | None) -> dict[str, bytes]:
    """``{NNN.html: content}`` of the 4xx/5xx pages in ``error_pages_path``."""
    if not path or not Path(path).is_dir():
        return {}
    return {f.name: f.read_bytes() for f in sorted(Path(path).iterdir())
            if f.is_file() and f.suffix == ".html" and len(f.stem) == 3 and f.stem[0] in "45" and f.stem.isdigit()}


# ----- one role on one host -----

class RoleBoot:
    """Kamal's ``Cli::App::Boot``: the new version of ``role`` on the session's host."""

    def __init__(self, commander: Commander, session: Session, role: Role, barrier: Barrier | None) -> None:
        self.commander = commander
        self.session = session
        self.role = role
        self.barrier = barrier
        self.config = commander.config
        self.version = self.config.version
        self.host = session.host
        self._rename: list[Step] = []  # a clashing container's rename, when it goes with the start

    @property
    def gatekeeper(self) -> bool:
        return self.barrier is not None and self.role.primary

    @property
    def queuer(self) -> bool:
        return self.barrier is not None and not self.role.primary

    def _audit(self, line: str) -> Step:
        return self.commander.audit(line, role=self.role.name)

    def run(self) -> None:
        try:
            old_version = self._old_version_renamed_if_clashing()
        except KamalpyError as error:  # e.g. the host went away (SSH, Docker) since the last step
            raise self._failed(error) from error
        if self.queuer:
            self._wait_at_barrier()
        try:
            stopped = self._start_new_version(old_version)
        except BaseException as error:
            self.commander.output.error(f"Failed to boot {self.role.name} on {self.host}")
            if self.gatekeeper and self.barrier.close():  # type: ignore[union-attr]
                self._report_failure()
            try:
                if not self._rename_failed(error):  # a failed rename started nothing (the name is the old one's)
                    self.session.execute(app_commands.stop(self.role, self.version), raise_on_non_zero=False)
            except KamalpyError:
                pass  # the host itself failed (no SSH, no Docker): the error below says so
            if isinstance(error, KamalpyError):
                raise self._failed(error) from error
            raise
        if self.gatekeeper and self.barrier.open():  # type: ignore[union-attr]
            self.commander.output.info(f"First {self.role.name} container is healthy on {self.host}, "
                                       "booting any other roles")
        if old_version and not stopped:
            self.session.script(self._stop_old_version(old_version))

    def _old_version_renamed_if_clashing(self) -> str | None:
        role = self.role
        known = self.commander.take_ahead(clash_key(self.host, role, self.version))
        if isinstance(known, tuple):  # fetched with an earlier check (stale containers, rollback's)
            clash, current = known
        else:
            clash, current = (r.stdout for r in self.session.script(clash_steps(role, self.version)))
        old = current.strip() or None
        if clash.strip():
            renamed = replaced_version(self.version)
            self.commander.output.info(f"Renaming container {self.version} to {renamed} as already deployed "
                                       f"on {self.host}")
            rename = [self._audit(f"Renaming container {self.version} to {renamed}"),
                      Step(app_commands.rename_container(role, self.version, renamed))]
            if known is not None and not self.queuer:
                self._rename = rename  # sent with the start of the new version: the same round trip
            else:
                self.session.script(rename)
            if old == self.version:
                old = renamed  # the running container now has the new name
        return old

    def _rename_failed(self, error: BaseException) -> bool:
        return isinstance(error, CommandFailed) and any(error.step is step for step in self._rename)

    def _failed(self, error: KamalpyError) -> BootError:
        """``<host>: Failed to boot <role>: <reason>``: the host and the step, for any failure of the boot."""
        detail = str(error).removeprefix(f"{self.host}: ")
        return BootError(f"{self.host}: Failed to boot {self.role.name}: {detail}")

    def _wait_at_barrier(self) -> None:
        primary = self.config.primary_role_name
        self.commander.output.info(f"Waiting for the first healthy {primary} container before booting "
                                   f"{self.role.name} on {self.host}...")
        if not self.barrier.wait():  # type: ignore[union-attr]
            raise BootError(f"{self.host}: Failed to boot {self.role.name}: Halted at barrier")
        self.commander.output.info(f"First {primary} container is healthy, booting {self.role.name} on {self.host}...")

    def _start_new_version(self, old_version: str | None) -> bool:
        """Start the new container and switch to it; True when the old one's stop went in the same round
        trip as the switch or the readiness check (not a gatekeeper's: its stop waits for the barrier)."""
        role, session = self.role, self.session
        name = app_commands.container_name(role, self.version)
        env_body = app_commands.env_file_body(role, self.host).encode()
        results = session.script([
            *self._rename,
            self._audit(f"Booted app version {self.version}"),
            app_commands.make_env_directory(role),
            WriteFile(env_body, role.secrets_path, 0o600),
            app_commands.run(role, self.host, hostname=container_hostname(self.host)),
        ])
        then = self._stop_old_version(old_version) if old_version and not self.gatekeeper else []
        if role.running_proxy:
            # `docker run --detach` prints the new container's full id: its first 12 characters are the id
            # Kamal's `docker container ls --quiet` would print next (one docker process fewer per host).
            started = (results[-1].stdout.strip().splitlines() or [""])[-1]
            self.commander.proxy.deploy_then(session, role, name, started[:SHORT_ID], then)
        else:
            self._wait_until_ready(then)
        return bool(then)

    def _wait_until_ready(self, then: Sequence[Step]) -> None:
        """Until Docker reports the container healthy, or running (again after ``readiness_delay``): one
        round trip, the polling done on the server (:func:`kamalpy.commands.app.wait_until_ready`).

        ``then`` (the old container's stop) runs in the same round trip once the container is ready, and not
        at all when it is not. A gatekeeper's stop waits for its own round trip, after the barrier opens.
        """
        timeout = self.config.deploy_timeout
        wait = Step(app_commands.wait_until_ready(self.role, self.version, timeout, self.config.readiness_delay))
        try:
            self.session.script([wait, *then])
        except CommandFailed as failed:
            if failed.step is not wait:
                raise
            status = (failed.result.stdout.strip().splitlines() or ["missing"])[-1]
            raise BootError(f"container not ready after {timeout} seconds ({status})") from None

    def _report_failure(self) -> None:
        """The first failure closing the barrier shows the new container's logs and health."""
        role, session = self.role, self.session
        logs = session.capture(app_commands.logs(role, container_id=app_commands.container_id_for_version(
            role, self.version), lines=50), raise_on_non_zero=False)
        health = session.capture(app_commands.container_health_log(role, self.version), raise_on_non_zero=False)
        output = self.commander.output
        for line in logs.splitlines():
            output.info(f"  {line}")
        if health.strip() and health.strip() != "null":
            output.info(f"  Health: {health.strip()}")

    def _stop_old_version(self, old_version: str) -> list[Step]:
        """The old container's stop (and the clean-up of its assets and error pages): Kamal's, not checked."""
        role, config = self.role, self.config
        args = self.commander.proxy.stop_args(role) if role.running_proxy else None
        steps: list[Step] = [Step(app_commands.stop(role, old_version, args=args), check=False)]
        if role.assets:
            steps.append(Step(assets.clean_up_assets(role), check=False))
        if config.error_pages_path:
            steps.append(Step(app_proxy.clean_up_error_pages(config), check=False))
        return steps


def clash_steps(role: Role, version: str) -> list[Step]:
    """The boot's clash check: a container of ``version`` (any state; rename it first), the running version."""
    return [Step(app_commands.container_id_for_version(role, version), check=False),
            Step(app_commands.current_running_version(role), check=False)]


def clash_key(host: str, role: Role, version: str) -> tuple[str, ...]:
    """Where an earlier round trip keeps the clash check's answers for the boot (Commander.keep_ahead)."""
    return ("clash", host, role.name, version)


def stale_containers(commander: Commander, *, stop: bool, boot_version: str | None = None) -> None:
    """Kamal's ``app stale_containers [--stop]``: containers of the role besides the current version.

    With ``boot_version`` (a deploy, which boots it next), the boot's clash check rides in the same round
    trip (the running version is asked once for both); stopping stale containers changes neither answer.
    """
    output = commander.output

    def per_host(session: Session) -> None:
        for role in commander.specifics.roles_on(session.host):
            found = session.script([
                Step(app_commands.list_versions(role), check=False),
                Step(app_commands.current_running_version(role), check=False),
                *(clash_steps(role, boot_version)[:1] if boot_version else [])])
            listed, current = found[:2]
            if boot_version:
                commander.keep_ahead(clash_key(session.host, role, boot_version), (found[2].stdout, current.stdout))
            running = current.stdout.strip()
            stale = [v for v in listed.stdout.split("\n") if v and v != running]
            for version in stale:
                if stop:
                    output.by_host(session.host,
                                   f"Stopping stale container for role {role.name} with version {version}")
                else:
                    output.by_host(session.host,
                                   f"Detected stale container for role {role.name} with version {version} "
                                   "(use `kamalpy app stale_containers --stop` to stop)")
            if stop and stale:
                session.script([Step(app_commands.stop(role, v), check=False) for v in stale])

    commander.on(commander.specifics.app_hosts, per_host)

