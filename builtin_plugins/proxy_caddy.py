"""Built-in plugin: the ``caddy`` proxy driver (Caddy >= 2.6, switched without a config load).

One container per server, ``kamalpy-caddy`` (label ``kamalpy.proxy=caddy``), on the ``kamal`` network;
its admin API is published on the server's loopback and called with ``curl`` over SSH. Each role's route
sends its traffic to whatever containers hold the network alias ``<service>-<role>[-<destination>]``;
a deploy health-checks the new container from inside Caddy's network namespace, moves it into the alias
and waits for Caddy's next lookup. The caller then stops the old container, whose app drains on SIGTERM.
Caddy's config is loaded only to add, change or remove a route (or for maintenance), never per deploy.
Routes live in Caddy's autosave (a named volume, ``caddy run --resume``), so a new container keeps them.
Builders: :mod:`kamalpy.commands.caddy`; measurements and the reasoning: docs/caddy-switch.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kamalpy.commands import caddy
from kamalpy.commands.base import render
from kamalpy.errors import KamalpyError
from kamalpy.execution import Step, WriteFile
from kamalpy.plugin import hookimpl
from kamalpy.proxy_driver import BootError, ProxyDriver
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.accessory import Accessory
    from kamalpy.config.model import Configuration
    from kamalpy.config.roles import Role
    from kamalpy.execution import Session
    from kamalpy.transport import CommandResult

NO_PROXY_STATUS = 125  # docker run's status when a probe container can't join the proxy's namespace


class CaddyDriver(ProxyDriver):
    name = "caddy"

    # ----- the container -----

    def boot(self, session: Session, before: Sequence[Step] = ()) -> None:
        self._script(session, before, [*self._prepare(), caddy.start_or_run(self.config, session.host),
                                       caddy.wait_for_admin(self.config)])

    def reboot(self, session: Session, before: Sequence[Step] = ()) -> None:
        # The routes are in the config volume: the new container resumes them. Stopping first lets Caddy
        # finish the requests in flight.
        self._script(session, before, [Step(caddy.stop(), check=False), Step(caddy.remove_container(), check=False),
                                       *self._prepare(), caddy.run(self.config, session.host),
                                       caddy.wait_for_admin(self.config)])

    @staticmethod
    def _script(session: Session, before: Sequence[Step], steps: list[Any]) -> None:
        """``before`` and ``steps`` in one round trip, unless both read stdin (a login and our config file)."""
        if any(step.stdin is not None for step in before):
            session.script(list(before))
            session.script(steps)
        else:
            session.script([*before, *steps])

    def _prepare(self) -> list[Any]:
        """The initial config on the server (used only while the volume holds no autosave)."""
        return [caddy.make_host_directory(),
                WriteFile(caddy.initial_config_json(), caddy.INITIAL_CONFIG_FILE, mode=0o644)]

    def start(self, session: Session) -> None:
        session.script([caddy.start(), caddy.wait_for_admin(self.config)])

    def stop(self, session: Session) -> None:
        session.execute(caddy.stop(), raise_on_non_zero=False)

    def details(self, session: Session) -> str:
        return session.capture(caddy.info())

    def logs(self, session: Session, *, timestamps: bool = True, since: str | None = None,
             lines: int | None = None, grep: str | None = None) -> str:
        return session.capture(caddy.logs(timestamps=timestamps, since=since, lines=lines, grep=grep))

    def follow_logs(self, host: str, *, timestamps: bool = True, lines: int | None = None,
                    grep: str | None = None) -> str:
        return caddy.follow_logs(self.config, host, timestamps=timestamps, lines=lines, grep=grep)

    # Images and volumes may be gone already (or the probe image used by others): best effort.

    def remove_container(self, session: Session) -> None:
        session.script([Step(caddy.remove_probes(), check=False), Step(caddy.remove_container(), check=False)])

    def remove_image(self, session: Session) -> None:
        probe_image = caddy.remove_probe_image(self.config)
        session.script([Step(caddy.remove_image(self.config, session.host), check=False),
                        *([Step(probe_image, check=False)] if probe_image else [])])

    def remove_files(self, session: Session) -> None:
        session.script([Step(caddy.remove_volumes(), check=False), caddy.remove_host_directory()])

    # ----- routes -----

    def deploy(self, session: Session, role: Role, container: str, container_id: str | None = None) -> None:
        if container_id is not None and not container_id.strip() and not session.executor.dry_run:
            raise BootError(f"Failed to get endpoint for {role.name} on {session.host}, did the container boot?")
        # One round trip: wait until healthy, join the alias, check it again at its new address, read routes.
        steps = [caddy.probe(self.config, role, container), *caddy.join_alias(role, container),
                 caddy.probe(self.config, role, container,
                             deadline=min(caddy.REJOIN_PROBE_TIMEOUT, self.config.deploy_timeout)),
                 Step(caddy.admin(self.config, "GET", caddy.routes_path()), check=False)]
        try:
            results = session.script(steps)
        except CommandFailed as failed:
            self._deploy_failed(session, role, container, failed, steps)
            raise AssertionError("unreachable") from failed
        routes = self._routes(session, results[-1])
        plan = caddy.plan_route(routes, self._wanted_route(role, routes))
        if plan is not None:
            self._admin(session, *plan)
        if not session.executor.dry_run:
            time.sleep(caddy.SWITCH_WAIT)  # Caddy's next lookup of the alias includes the new container

    def _deploy_failed(self, session: Session, role: Role, container: str, failed: CommandFailed,
                       steps: list[Any]) -> None:
        shown = failed.result.command
        first_probe, second_probe = render(steps[0], redact=True), render(steps[3], redact=True)
        if failed.result.exit_status == NO_PROXY_STATUS and shown in (first_probe, second_probe):
            raise KamalpyError(f"{session.host}: no {caddy.CONTAINER} container to health-check {container} from, "
                               f"run `kamalpy proxy boot` ({failed})") from None
        if shown == first_probe:
            raise BootError(f"{session.host}: {container} did not become healthy within "
                            f"{self.config.deploy_timeout}s ({caddy.health_url(role, container)})") from None
        if shown == second_probe:
            # It answered before it joined the alias: take it out again so it gets no traffic.
            session.script([Step(c, check=False) for c in caddy.leave_alias(container)])
            raise BootError(f"{session.host}: {container} stopped answering "
                            f"{caddy.health_url(role, container)} after joining {caddy.alias(role)}") from None
        raise failed

    def _wanted_route(self, role: Role, routes: list[dict[str, Any]]) -> dict[str, Any]:
        """The live route, or (in maintenance) the route with its current maintenance handler kept."""
        current = next((r for r in routes if r.get("@id") == caddy.route_id(role)), None)
        if current is not None and caddy.in_maintenance(current):
            return caddy.route(role, current["handle"])
        return caddy.route(role)

    def remove_app(self, session: Session, role: Role) -> None:
        self._admin(session, "DELETE", caddy.id_path(caddy.route_id(role)), missing_ok=True)

    # ----- accessories: routed like a role whose alias is the accessory's service name -----

    def deploy_accessory(self, session: Session, accessory: Accessory, container_id: str) -> None:
        route = _AccessoryRoute.of(accessory)
        self.deploy(session, route, accessory.service_name, container_id)  # type: ignore[arg-type]

    def remove_accessory(self, session: Session, accessory: Accessory) -> None:
        self.remove_app(session, _AccessoryRoute.of(accessory))  # type: ignore[arg-type]

    def stop_args(self, role: Role) -> list[str]:
        # Caddy sends requests to the old container until it stops: its app drains them after SIGTERM,
        # so give it drain_timeout (Kamal gives proxied roles Docker's default, kamal-proxy drained them).
        timeout = role.settings.get("stop_timeout") or role.config.stop_timeout or role.config.drain_timeout
        return ["-t", str(timeout)]

    def maintenance(self, session: Session, role: Role, *, drain_timeout: int | None = None,
                    message: str | None = None) -> None:
        # Requests in flight finish on the old server instance of the config load (Caddy's graceful stop).
        self._set_route(session, role, caddy.route(role, caddy.maintenance_handlers(role, message)))

    def live(self, session: Session, role: Role) -> None:
        self._set_route(session, role, caddy.route(role))

    def _set_route(self, session: Session, role: Role, wanted: dict[str, Any]) -> None:
        routes = self._routes(session, session.execute(caddy.admin(self.config, "GET", caddy.routes_path()),
                                                       raise_on_non_zero=False))
        if not session.executor.dry_run and not any(r.get("@id") == wanted["@id"] for r in routes):
            raise KamalpyError(f"{session.host}: no route for {caddy.route_id(role)} on {caddy.CONTAINER}, "
                               "deploy it first")
        plan = caddy.plan_route(routes, wanted)
        if plan is not None:
            self._admin(session, *plan)

    # ----- the admin API -----

    def _routes(self, session: Session, result: CommandResult) -> list[dict[str, Any]]:
        if session.executor.dry_run:
            return []
        return caddy.parse_routes(self._answer(session, "GET", caddy.routes_path(), result))

    def _admin(self, session: Session, method: str, path: str, body: Any = None, *,
               missing_ok: bool = False) -> str:
        result = session.execute(caddy.admin(self.config, method, path, body), raise_on_non_zero=False)
        if session.executor.dry_run:
            return ""
        return self._answer(session, method, path, result, missing_ok=missing_ok)

    def _answer(self, session: Session, method: str, path: str, result: CommandResult, *,
                missing_ok: bool = False) -> str:
        status, body = caddy.admin_status(result.stdout)
        if status == 404 and missing_ok:
            return ""
        if not result.ok or not 200 <= status < 300:
            detail = " ".join((body or result.stderr).split())[:400] or f"curl exit status {result.exit_status}"
            raise KamalpyError(f"{session.host}: Caddy admin API {method} {path} failed "
                               f"(HTTP {status or 'no answer'}): {detail}")
        return body

@dataclass(frozen=True)
class _AccessoryRoute:
    """What the route builders read of a role (name, alias, proxy settings), for an accessory."""

    name: str
    container_prefix: str
    proxy: Any
    config: Any

    @classmethod
    def of(cls, accessory: Accessory) -> _AccessoryRoute:
        return cls(accessory.name, accessory.service_name, accessory.proxy, accessory.config)


@hookimpl
def kamalpy_proxy_drivers() -> dict[str, Any]:
    return {CaddyDriver.name: CaddyDriver}


@hookimpl
def kamalpy_validate_config(config: Configuration) -> str | None:
    """The caddy driver manages no certificates: refuse ``proxy.ssl`` up front rather than serve plain HTTP."""
    if config.proxy_driver != CaddyDriver.name:
        return None
    for role in config.roles:
        proxy = role.proxy
        if proxy is not None and proxy.raw.get("ssl"):
            where = "proxy/ssl" if config.proxy.raw.get("ssl") else f"servers/{role.name}/proxy/ssl"
            return (f"{where}: the caddy proxy driver does not manage TLS; use the kamal-proxy driver "
                    "or terminate TLS in front of the servers")
    return None
