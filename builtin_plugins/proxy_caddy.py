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

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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

    preflight_needed = True

    def preflight(self, session: Session) -> None:
        """No route of another app on this Caddy may claim a host and path prefix of ours: Caddy would send
        one app's requests to the other (kamal-proxy refuses such a deploy too)."""
        roles = [r for r in self.commander.specifics.roles_on(session.host) if r.running_proxy and r.proxy]
        if not roles or session.executor.dry_run:
            return
        results = session.script([Step(caddy.admin(self.config, "GET", caddy.routes_path(server=server)),
                                       check=False) for server in (caddy.SERVER, caddy.TLS_SERVER)])
        theirs = [r for result in results for r in caddy.parse_routes(json.dumps(self._json(session, result)))]
        ours = {i for role in roles for i in (caddy.route_id(role), caddy.tls_route_id(role))}
        for role in roles:
            for other in theirs:
                if other.get("@id") in ours:
                    continue
                clash = caddy.shared_claim(caddy.route(role), other)
                if clash:
                    raise KamalpyError(f"{session.host}: {clash} of {role.name} is already routed to "
                                       f"{other.get('@id')} by another app on {caddy.CONTAINER}; give one of "
                                       "them another host or path prefix")

    def deploy(self, session: Session, role: Role, container: str, container_id: str | None = None) -> None:
        if container_id is not None and not container_id.strip() and not session.executor.dry_run:
            raise BootError(f"Failed to get endpoint for {role.name} on {session.host}, did the container boot?")
        if caddy.uses_tls(role):
            self._deploy_tls(session, role, container)
            return
        # One round trip: wait until healthy, join the alias, check it again at its new address, read routes.
        first, second = self._probes(role, container)
        # Both servers' routes are read: a role that dropped ``ssl`` still has a route on the TLS server.
        steps = [first, *caddy.join_alias(role, container), second,
                 Step(caddy.admin(self.config, "GET", caddy.SERVERS_PATH), check=False)]
        results = self._checked(session, role, container, steps, first, second)
        servers = self._servers(session, results[-1])
        routes = caddy.server_routes(servers, caddy.SERVER)
        self._put_route(session, routes, self._wanted_route(role, routes, caddy.route(role)))
        if any(r.get("@id") == caddy.tls_route_id(role) for r in caddy.server_routes(servers, caddy.TLS_SERVER)):
            self._drop_tls(session, role)
        self._switch_wait(session)

    def _probes(self, role: Role, container: str) -> tuple[Any, Any]:
        """The health check before the new container joins the alias, and the one after (a new address)."""
        return (caddy.probe(self.config, role, container),
                caddy.probe(self.config, role, container,
                            deadline=min(caddy.REJOIN_PROBE_TIMEOUT, self.config.deploy_timeout)))

    def _checked(self, session: Session, role: Role, container: str, steps: list[Any], first: Any,
                 second: Any) -> list[CommandResult]:
        try:
            return session.script(steps)
        except CommandFailed as failed:
            self._deploy_failed(session, role, container, failed, first, second)
            raise AssertionError("unreachable") from failed

    @staticmethod
    def _switch_wait(session: Session) -> None:
        if not session.executor.dry_run:
            time.sleep(caddy.SWITCH_WAIT)  # Caddy's next lookup of the alias includes the new container

    def _deploy_tls(self, session: Session, role: Role, container: str) -> None:
        """A role with ``ssl``: its routes, policy and certificate are in place, and Caddy holds a certificate
        for each of its hosts, before the new container joins the alias (else the old one keeps serving)."""
        config = self.config
        first, second = self._probes(role, container)
        certificate = self._upload_certificate(session, role)
        root = caddy.acme_ca_root(config)
        steps = [first, *([WriteFile(_read_acme_ca_root(root), caddy.acme_ca_root_host_path(), mode=0o644)]
                          if root else []),
                 Step(caddy.admin(config, "GET", caddy.TLS_APP_PATH), check=False),
                 Step(caddy.admin(config, "GET", caddy.server_path(caddy.TLS_SERVER)), check=False),
                 Step(caddy.admin(config, "GET", caddy.routes_path()), check=False)]
        results = self._checked(session, role, container, steps, first, second)
        tls_app, tls_server, routes = (self._json(session, r) for r in results[-3:])
        wanted_app = caddy.tls_app(tls_app, role, policy=caddy.acme_policy(role, config), certificate=certificate)
        if wanted_app != (tls_app or {}):
            self._admin(session, "POST", caddy.TLS_APP_PATH, wanted_app)
        if not isinstance(tls_server, dict):
            tls_server = caddy.tls_server()
            self._admin(session, "POST", caddy.server_path(caddy.TLS_SERVER), tls_server)
        tls_routes = caddy.parse_routes(json.dumps(tls_server.get("routes")))
        self._put_route(session, tls_routes, self._wanted_route(role, tls_routes, caddy.tls_route(role)),
                        caddy.TLS_SERVER)
        http_routes = caddy.parse_routes(json.dumps(routes))
        wanted = caddy.http_route(role, config, session.host)
        self._put_route(session, http_routes, wanted if caddy.redirects_to_https(role)
                        else self._wanted_route(role, http_routes, wanted))
        self._wait_for_certificates(session, role)
        self._checked(session, role, container, [*caddy.join_alias(role, container), second], first, second)
        self._switch_wait(session)

    def _upload_certificate(self, session: Session, role: Role) -> dict[str, Any] | None:
        """The role's own certificate and key (from secrets) onto the server; their ``load_files`` entry."""
        proxy = role.proxy
        if proxy is None or not proxy.custom_ssl_certificate:
            return None
        secrets = self.config.secrets
        cert = secrets[str(proxy.certificate_pem_secret)].encode()
        key = secrets[str(proxy.private_key_pem_secret)].encode()
        directory = caddy.certificate_directory(role)
        session.execute(["mkdir", "-p", directory])
        session.upload(cert, f"{directory}/cert.pem", 0o644)
        session.upload(key, f"{directory}/key.pem", 0o600)
        return caddy.certificate_files(role, hashlib.sha256(cert + b"\0" + key).hexdigest()[:16])

    def _wait_for_certificates(self, session: Session, role: Role) -> None:
        result = session.execute(caddy.wait_for_certificates(self.config, role), raise_on_non_zero=False)
        if result.ok or session.executor.dry_run:
            return
        host = result.stdout.strip().splitlines()[-1:] or ["?"]
        logs = session.execute(caddy.recent_logs(), raise_on_non_zero=False).stdout
        error = caddy.certificate_error(logs, host[0]) or "no certificate yet (see `kamalpy proxy logs`)"
        raise BootError(f"{session.host}: Caddy holds no TLS certificate for {host[0]} after "
                        f"{self.config.deploy_timeout}s, so {role.name} was not switched: {error}")

    def _deploy_failed(self, session: Session, role: Role, container: str, failed: CommandFailed,
                       first: Any, second: Any) -> None:
        shown = failed.result.command
        first_probe, second_probe = render(first, redact=True), render(second, redact=True)
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

    @staticmethod
    def _wanted_route(role: Role, routes: list[dict[str, Any]], live: dict[str, Any]) -> dict[str, Any]:
        """The live route, or (in maintenance) the route with its current maintenance handler kept."""
        current = next((r for r in routes if r.get("@id") == live["@id"]), None)
        if current is not None and caddy.in_maintenance(current):
            return {**live, "handle": current["handle"]}
        return live

    def _put_route(self, session: Session, routes: list[dict[str, Any]], wanted: dict[str, Any],
                   server: str = caddy.SERVER) -> None:
        plan = caddy.plan_route(routes, wanted, server)
        if plan is not None:
            self._admin(session, *plan)

    def remove_app(self, session: Session, role: Role) -> None:
        self._admin(session, "DELETE", caddy.id_path(caddy.route_id(role)), missing_ok=True)
        if caddy.uses_tls(role):
            self._drop_tls(session, role)

    def _drop_tls(self, session: Session, role: Role) -> None:
        """The role's route on the TLS server, its policy and certificate files: gone."""
        self._admin(session, "DELETE", caddy.id_path(caddy.tls_route_id(role)), missing_ok=True)
        current = self._json(session, session.execute(caddy.admin(self.config, "GET", caddy.TLS_APP_PATH),
                                                      raise_on_non_zero=False))
        wanted = caddy.tls_app(current, role, policy=None, certificate=None)
        if current is not None and wanted != current:
            self._admin(session, "POST", caddy.TLS_APP_PATH, wanted)
        session.execute(["rm", "-rf", caddy.certificate_directory(role)])

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
        for server, live in self._serving_routes(session, role):
            handlers = caddy.maintenance_handlers(role, message, tls=server == caddy.TLS_SERVER)
            self._set_route(session, role, {**live, "handle": handlers}, server)

    def live(self, session: Session, role: Role) -> None:
        for server, live in self._serving_routes(session, role):
            self._set_route(session, role, live, server)

    def _serving_routes(self, session: Session, role: Role) -> list[tuple[str, dict[str, Any]]]:
        """``(server, live route)`` of each route that serves the app (not the HTTPS redirect)."""
        serving = [(caddy.TLS_SERVER, caddy.tls_route(role))] if caddy.uses_tls(role) else []
        if not caddy.redirects_to_https(role):
            serving.append((caddy.SERVER, caddy.route(role)))
        return serving

    def _set_route(self, session: Session, role: Role, wanted: dict[str, Any], server: str = caddy.SERVER) -> None:
        routes = self._routes(session, session.execute(
            caddy.admin(self.config, "GET", caddy.routes_path(server=server)), raise_on_non_zero=False), server)
        if not session.executor.dry_run and not any(r.get("@id") == wanted["@id"] for r in routes):
            raise KamalpyError(f"{session.host}: no route for {caddy.route_id(role)} on {caddy.CONTAINER}, "
                               "deploy it first")
        self._put_route(session, routes, wanted, server)

    # ----- the admin API -----

    def _routes(self, session: Session, result: CommandResult, server: str = caddy.SERVER) -> list[dict[str, Any]]:
        if session.executor.dry_run:
            return []
        return caddy.parse_routes(self._answer(session, "GET", caddy.routes_path(server=server), result))

    def _servers(self, session: Session, result: CommandResult) -> dict[str, Any]:
        """Caddy's HTTP servers by name (a ``GET`` of :data:`caddy.SERVERS_PATH`); a failed read raises."""
        if session.executor.dry_run:
            return {}
        found = json.loads(self._answer(session, "GET", caddy.SERVERS_PATH, result) or "null")
        return found if isinstance(found, dict) else {}

    @staticmethod
    def _json(session: Session, result: CommandResult) -> Any:
        """The JSON a ``GET`` answered, or None (dry run, nothing there, no answer)."""
        if session.executor.dry_run:
            return None
        status, body = caddy.admin_status(result.stdout)
        if not result.ok or not 200 <= status < 300 or not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

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
    """kamal-proxy settings the caddy driver cannot honour are refused up front, never silently dropped."""
    if config.proxy_driver != CaddyDriver.name:
        return None
    for role in config.roles:
        proxy = role.proxy
        if proxy is None:
            continue
        for key in caddy.unsupported_settings(proxy.raw):
            where = f"proxy/{key}" if _set_at_root(config.proxy.raw, key) else f"servers/{role.name}/proxy/{key}"
            return f"{where}: {caddy.UNSUPPORTED[key.split('/')[0]]}"
    root = caddy.acme_ca_root(config)
    if root and not Path(root).expanduser().is_file():
        return f"proxy/caddy/acme_ca_root: {root} is not a file (a PEM file on this machine, relative to the project)"
    return None


def _set_at_root(raw: Any, key: str) -> bool:
    value: Any = raw
    for part in key.split("/"):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def _read_acme_ca_root(path: str) -> bytes:
    """``proxy.caddy.acme_ca_root`` on the deploying machine (relative to the project root, where kamalpy runs)."""
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise KamalpyError(f"proxy/caddy/acme_ca_root: cannot read {path}: {error.strerror}") from None
