"""The ``caddy`` proxy driver's commands and JSON: Caddy's container, its config and routes, admin API calls.

Pure builders (no I/O); :mod:`kamalpy.builtin_plugins.proxy_caddy` runs them. How the switch works and
why (docs/caddy-switch.md, docs/proxy-drivers.md): each role's route is a ``reverse_proxy`` whose upstreams
are the addresses of the Docker network alias ``<service>-<role>[-<destination>]`` (``dynamic_upstreams``
of source ``a``, looked up at most every :data:`REFRESH`). A deploy moves the alias from the old container
to the new one with Docker; Caddy's config is loaded only when a route is added, changed or removed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kamalpy.commands.base import Command, any_of, docker, file_join, join, pipe, shell_quote_single
from kamalpy.commands.layout import NETWORK, volume_arg
from kamalpy.commands.proxy import DEFAULT_HTTP_PORT, DEFAULT_HTTPS_PORT, DEFAULT_LOG_MAX_SIZE, publish_args
from kamalpy.commands.ssh import run_over_ssh
from kamalpy.config.args import argumentize, is_present, optionize
from kamalpy.config.model import RUN_DIRECTORY

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration
    from kamalpy.config.proxy import Proxy
    from kamalpy.config.roles import Role

CONTAINER = "kamalpy-caddy"
LABEL = "kamalpy.proxy=caddy"  # finds the proxy container (remove, details)
PROBE_LABEL = "kamalpy.proxy=caddy-probe"  # the one-off health-check containers
SERVER = "kamalpy"  # the name of Caddy's HTTP server holding every route
DEFAULT_ADMIN_PORT = 2019
ADMIN_CONTAINER_PORT = 2019
DEFAULT_REPOSITORY = "caddy"
DEFAULT_VERSION = "2"
CONFIG_VOLUME = "kamalpy-caddy-config"  # Caddy's autosave.json: the routes survive a new container
DATA_VOLUME = "kamalpy-caddy-data"
HOST_DIRECTORY = file_join(RUN_DIRECTORY, "caddy")  # the initial config on the server
INITIAL_CONFIG_FILE = file_join(HOST_DIRECTORY, "caddy.json")
CONTAINER_CONFIG_DIRECTORY = "/etc/kamalpy"
CONTAINER_CONFIG_FILE = f"{CONTAINER_CONFIG_DIRECTORY}/caddy.json"

# The switch settings measured in docs/caddy-switch.md.
REFRESH_MS = 500  # how old Caddy's cached lookup of an alias may get
RESOLVER = "127.0.0.11:53"  # Docker's embedded DNS
SWITCH_WAIT = 2 * REFRESH_MS / 1000 + 0.2  # after joining the alias, until every lookup includes the new one
DEFAULT_HEALTHCHECK_PATH = "/up"
DEFAULT_HEALTHCHECK_INTERVAL = 1  # the probe container's
DEFAULT_SERVER_PROBE_INTERVAL = 0.2  # curl on the server is cheap: a new container is seen healthy sooner
DEFAULT_PROBE_TIMEOUT = 2
REJOIN_PROBE_TIMEOUT = 10  # the probe after the new container joined the alias (it has a new address)
MAINTENANCE_BODY = "Service temporarily unavailable"
MAINTENANCE_MARKER = "kamalpy-maintenance"  # the static_response handler's @id prefix
# Caddy answers 200 with an empty body when no route matches: answer 404 as kamal-proxy does. Always last.
FALLBACK_ROUTE = {"@id": "kamalpy-fallback", "terminal": True, "handle": [
    {"handler": "static_response", "status_code": 404, "body": "Not found\n"}]}

# TLS (``proxy.ssl``): a second HTTP server on the container's port 443 holds the routes of roles with
# ``ssl``; Caddy manages their certificates (automatic HTTPS) and kamalpy adds the HTTP-to-HTTPS redirects.
TLS_SERVER = "kamalpy-tls"
TLS_ROUTE_SUFFIX = ":tls"  # @ids are global in Caddy's config: the TLS route's differs from the HTTP one's
TLS_FALLBACK_ROUTE = {**FALLBACK_ROUTE, "@id": "kamalpy-fallback-tls"}
ACME_POLICY_SUFFIX = ":acme"
ACME_CA_ROOT_FILE = "acme-ca-root.pem"  # in HOST_DIRECTORY, so Caddy reads it in CONTAINER_CONFIG_DIRECTORY
CERTIFICATE_WAIT_INTERVAL = 0.5


# ----- the container -----

def image(run: Mapping[str, Any] | None) -> str:
    """``[registry/]repository:version`` from ``proxy.run`` (default ``caddy:2``)."""
    run = run or {}
    repository = "/".join(str(p) for p in (run.get("registry"), run.get("repository", DEFAULT_REPOSITORY))
                          if p is not None)
    return f"{repository}:{run.get('version', DEFAULT_VERSION)}"


def admin_port(config: Configuration) -> int:
    return int(caddy_settings(config).get("admin_port") or DEFAULT_ADMIN_PORT)


def probe_image(config: Configuration) -> str | None:
    """``proxy.caddy.probe_image``: probe from a container in Caddy's namespace instead of the server."""
    image = caddy_settings(config).get("probe_image")
    return str(image) if image else None


def caddy_settings(config: Configuration) -> dict[str, Any]:
    settings = config.proxy.raw.get("caddy")
    return dict(settings) if isinstance(settings, Mapping) else {}


def initial_config() -> dict[str, Any]:
    """What a new Caddy starts from when its volume holds no autosave: our admin listener, no routes.

    Admin listens on every interface of the container (the image's own config may say otherwise); the
    port is published on the server's loopback only. A server listening on :80 alone gets no automatic
    HTTPS (Caddy would otherwise redirect and ask an ACME CA for certificates of every route's host).
    """
    return {"admin": {"listen": f"0.0.0.0:{ADMIN_CONTAINER_PORT}"},
            "apps": {"http": {"servers": {SERVER: {"listen": [f":{DEFAULT_HTTP_PORT}"], "routes": [FALLBACK_ROUTE]}}}}}


def initial_config_json() -> bytes:
    return (json.dumps(initial_config(), indent=2) + "\n").encode()


def run_command() -> list[str]:
    """The full command (images differ in theirs): resume the autosaved config, else start from ours."""
    return ["caddy", "run", "--resume", "--config", CONTAINER_CONFIG_FILE]


def run(config: Configuration, host: str) -> Command:
    """``docker run`` of the proxy container on ``host`` (ports from ``proxy.run`` as for kamal-proxy)."""
    settings = config.proxy_run(host) or {}
    publish = (publish_args(settings.get("http_port", DEFAULT_HTTP_PORT),
                            settings.get("https_port", DEFAULT_HTTPS_PORT), settings.get("bind_ips"))
               if settings.get("publish", True) else None)
    max_size = settings.get("log_max_size", DEFAULT_LOG_MAX_SIZE)
    return docker(
        "run", "--name", CONTAINER, "--network", NETWORK, "--detach", "--restart", "unless-stopped",
        "--label", LABEL,
        # Connections queued on the listener a config load replaces move to the new one instead of a reset.
        "--sysctl", "net.ipv4.tcp_migrate_req=1",
        "--volume", f"{CONFIG_VOLUME}:/config", "--volume", f"{DATA_VOLUME}:/data",
        volume_arg(HOST_DIRECTORY, CONTAINER_CONFIG_DIRECTORY, "ro"),
        "--env", "XDG_CONFIG_HOME=/config", "--env", "XDG_DATA_HOME=/data",
        publish,
        "--publish", f"127.0.0.1:{admin_port(config)}:{ADMIN_CONTAINER_PORT}",
        argumentize("--log-opt", f"max-size={max_size}") if is_present(max_size) else None,
        optionize(settings.get("options") or {}),
        image(settings), run_command(),
    )


def make_host_directory() -> Command:
    return ["mkdir", "-p", HOST_DIRECTORY]


def start() -> Command:
    return docker("container", "start", CONTAINER)


def start_or_run(config: Configuration, host: str) -> Command:
    return any_of(start(), run(config, host))


def stop() -> Command:
    return docker("container", "stop", CONTAINER)


def remove_container() -> Command:
    return docker("container", "rm", "--force", CONTAINER)


def remove_probes() -> Command:
    return pipe(docker("ps", "-aq", "--filter", f"label={PROBE_LABEL}"), ["xargs", "-r", "docker", "rm", "-f"])


def remove_image(config: Configuration, host: str) -> Command:
    return docker("image", "rm", image(config.proxy_run(host)))


def remove_probe_image(config: Configuration) -> Command | None:
    image = probe_image(config)
    return docker("image", "rm", image) if image else None


def remove_volumes() -> Command:
    return docker("volume", "rm", CONFIG_VOLUME, DATA_VOLUME)


def remove_host_directory() -> Command:
    return ["rm", "-rf", HOST_DIRECTORY]


def info() -> Command:
    return docker("ps", "--filter", f"'name=^{CONTAINER}$'")


def logs(*, timestamps: bool = True, since: str | None = None, lines: int | str | None = None,
         grep: str | None = None) -> Command:
    return pipe(docker("logs", CONTAINER, f"--since {since}" if since else None,
                       f"--tail {lines}" if lines else None, "--timestamps" if timestamps else None, "2>&1"),
                f"grep {shell_quote_single(grep)}" if grep else None)


def follow_logs(config: Configuration, host: str, *, timestamps: bool = True, lines: int | None = None,
                grep: str | None = None) -> str:
    command = pipe(docker("logs", CONTAINER, "--timestamps" if timestamps else None, "--tail", str(lines or 10),
                          "--follow", "2>&1"), f'grep "{grep}"' if grep else None)
    return run_over_ssh(config, join(command), host)


# ----- the admin API (curl on the server, to the port published on its loopback) -----

STATUS_MARK = "\n@@status:"


def admin(config: Configuration, method: str, path: str, body: Any = None) -> Command:
    """``curl`` of Caddy's admin API; prints the response body, then ``STATUS_MARK`` and the HTTP status.

    The status is parsed by :func:`admin_status` (curl's own exit status says only whether it connected).
    """
    data = ["-H", "'Content-Type: application/json'", "--data-binary",
            shell_quote_single(json.dumps(body, separators=(",", ":")))] if body is not None else []
    return ["curl", "--silent", "--show-error", "--max-time", "30", "-X", method, *data,
            "-w", shell_quote_single(STATUS_MARK.replace("\n", "\\n") + "%{http_code}"),
            f"http://127.0.0.1:{admin_port(config)}{path}"]


def admin_status(stdout: str) -> tuple[int, str]:
    """``(HTTP status, body)`` of an :func:`admin` call's output (status 0: no answer)."""
    body, mark, status = stdout.rpartition(STATUS_MARK)
    if not mark:
        return 0, stdout
    try:
        return int(status.strip() or 0), body
    except ValueError:
        return 0, stdout


def wait_for_admin(config: Configuration, attempts: int = 100) -> str:
    """A shell loop until the admin API answers (a just started Caddy takes a moment), at most ~10 s."""
    url = f"http://127.0.0.1:{admin_port(config)}/config/"
    return (f"i=0; until curl --silent --fail --max-time 2 -o /dev/null {url}; do i=$((i+1)); "
            f"[ $i -lt {attempts} ] || exit 1; sleep 0.1; done")


ROUTES_PATH = f"/config/apps/http/servers/{SERVER}/routes"
TLS_APP_PATH = "/config/apps/tls"


SERVERS_PATH = "/config/apps/http/servers"


def server_path(server: str = SERVER) -> str:
    return f"{SERVERS_PATH}/{server}"


def routes_path(index: int | None = None, server: str = SERVER) -> str:
    path = f"{server_path(server)}/routes"
    return path if index is None else f"{path}/{index}"


def id_path(route_id: str, *rest: str) -> str:
    return "/".join([f"/id/{route_id}", *rest])


# ----- routes -----

def route_id(role: Role) -> str:
    """The route's ``@id``: also the network alias its upstreams are looked up by."""
    return role.container_prefix


def alias(role: Role) -> str:
    return role.container_prefix


def _duration(seconds: Any) -> str:
    return f"{seconds}s"


def upstream_handlers(role: Role, proxy: Proxy) -> list[dict[str, Any]]:
    """The route's handlers while live: strip the path prefix (kamal-proxy's default), then reverse_proxy."""
    handlers: list[dict[str, Any]] = []
    prefixes = proxy.path_prefixes
    if prefixes and proxy.raw.get("strip_path_prefix", True):
        handlers.append({"handler": "subroute", "routes": [
            {"match": [{"path": _path_patterns(prefix)}],
             "handle": [{"handler": "rewrite", "strip_path_prefix": _normal_prefix(prefix)}], "terminal": False}
            for prefix in _longest_first(prefixes)]})
    max_body = (proxy.raw.get("buffering") or {}).get("max_request_body")
    if max_body:  # kamal-proxy answers 413 above it, and so does Caddy's request_body handler
        handlers.append({"handler": "request_body", "max_size": int(max_body)})
    transport: dict[str, Any] = {"protocol": "http", "dial_timeout": "500ms"}
    if proxy.raw.get("response_timeout"):
        transport["response_header_timeout"] = _duration(proxy.raw["response_timeout"])
    handlers.append({
        "handler": "reverse_proxy",
        "dynamic_upstreams": {"source": "a", "name": alias(role), "port": str(proxy.app_port),
                              "refresh": f"{REFRESH_MS}ms", "resolver": {"addresses": [RESOLVER]}},
        # A failed dial (a stopped container) is retried on another upstream for up to 5 s.
        "load_balancing": {"selection_policy": {"policy": "round_robin"}, "try_duration": "5s",
                           "try_interval": "50ms"},
        "health_checks": {"passive": {"fail_duration": "3s", "max_fails": 1}},
        "transport": transport,
    })
    return handlers


def maintenance_handlers(role: Role, message: str | None = None, *, tls: bool = False) -> list[dict[str, Any]]:
    handler_id = f"{MAINTENANCE_MARKER}-{tls_route_id(role) if tls else route_id(role)}"
    return [{"@id": handler_id, "handler": "static_response", "status_code": 503,
             "headers": {"Content-Type": ["text/plain; charset=utf-8"], "Retry-After": ["30"]},
             "body": (message or MAINTENANCE_BODY) + "\n"}]


def in_maintenance(route: Mapping[str, Any]) -> bool:
    handle = route.get("handle") or []
    return bool(handle) and str(handle[0].get("@id", "")).startswith(MAINTENANCE_MARKER)


def route(role: Role, handlers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The role's route: its hosts (none: every host) and path prefixes, then ``handlers`` (default: live)."""
    proxy = role.proxy
    if proxy is None:
        raise ValueError(f"role {role.name} runs no proxy")
    match: dict[str, Any] = {}
    if proxy.hosts:
        match["host"] = list(proxy.hosts)
    if proxy.path_prefixes:
        match["path"] = [p for prefix in _longest_first(proxy.path_prefixes) for p in _path_patterns(prefix)]
    found: dict[str, Any] = {"@id": route_id(role)}
    if match:
        found["match"] = [match]
    found["handle"] = handlers if handlers is not None else upstream_handlers(role, proxy)
    found["terminal"] = True
    return found


def _normal_prefix(prefix: str) -> str:
    return "/" + prefix.strip("/")


def _path_patterns(prefix: str) -> list[str]:
    """``/api`` matches ``/api`` and ``/api/...`` (not ``/apiary``), as kamal-proxy's path prefixes."""
    normal = _normal_prefix(prefix)
    return ["/*"] if normal == "/" else [normal, f"{normal}/*"]


def _longest_first(prefixes: Sequence[str]) -> list[str]:
    return sorted(prefixes, key=lambda p: -len(_normal_prefix(p)))


def order_key(route: Mapping[str, Any]) -> tuple[int, int, int]:
    """Routes are tried in order: by host before the catch-all, exact hosts before wildcards, then
    longer path prefixes first (a route without prefix last); the 404 fallback after everything."""
    if str(route.get("@id", "")).startswith(FALLBACK_ROUTE["@id"]):
        return (2, 0, 0)
    match = (route.get("match") or [{}])[0]
    hosts = match.get("host") or []
    paths = [p.removesuffix("/*") for p in match.get("path") or []]
    return (0 if hosts else 1, 1 if any("*" in h for h in hosts) else 0, -max((len(p) for p in paths), default=0))


def insert_index(routes: Sequence[Mapping[str, Any]], new: Mapping[str, Any]) -> int:
    """Where ``new`` goes among ``routes`` (kept in order): after every route that sorts before or with it."""
    key = order_key(new)
    return sum(1 for existing in routes if order_key(existing) <= key)


def same_route(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def plan_route(routes: Sequence[Mapping[str, Any]], new: Mapping[str, Any],
               server: str = SERVER) -> tuple[str, str, Any] | None:
    """The one admin call that puts ``new`` in place among the server's ``routes``, None when it is there.

    A missing route is inserted at its place (``PUT`` at an index inserts; several services add theirs
    without rewriting each other's). A changed one is replaced where it is (``PATCH /id/...``), or, when it
    has to move, the whole list is written again, re-sorted.
    """
    others = [r for r in routes if r.get("@id") != new.get("@id")]
    if len(others) == len(routes):
        index = insert_index(others, new)
        if index == len(routes):
            return ("POST", routes_path(server=server), new)
        return ("PUT", routes_path(index, server), new)
    replaced = [dict(new) if r.get("@id") == new.get("@id") else r for r in routes]
    keys = [order_key(r) for r in replaced]
    if keys == sorted(keys):  # still in order where it is
        current = next(r for r in routes if r.get("@id") == new.get("@id"))
        return None if same_route(current, new) else ("PATCH", id_path(str(new["@id"])), new)
    return ("PATCH", routes_path(server=server), sorted(replaced, key=order_key))


def claims(route: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (host, path prefix) pairs a route takes: ``""`` for every host, ``/`` for every path."""
    if str(route.get("@id", "")).startswith(FALLBACK_ROUTE["@id"]):
        return set()
    match = (route.get("match") or [{}])[0]
    paths = {_normal_prefix(p.removesuffix("/*")) for p in match.get("path") or ["/"]}
    return {(host, path) for host in match.get("host") or [""] for path in paths}


def shared_claim(ours: Mapping[str, Any], other: Mapping[str, Any]) -> str | None:
    """``host/path`` that both routes claim (the first, sorted), or None."""
    shared = sorted(claims(ours) & claims(other))
    if not shared:
        return None
    host, path = shared[0]
    return f"{host or '(every host)'}{'' if path == '/' else path}"


def server_routes(servers: dict[str, Any], server: str) -> list[dict[str, Any]]:
    """The routes of ``server`` in a ``GET`` of :data:`SERVERS_PATH` (none when it is not there)."""
    found = servers.get(server)
    routes = found.get("routes") if isinstance(found, dict) else None
    return [r for r in routes or [] if isinstance(r, dict)]


def parse_routes(body: str) -> list[dict[str, Any]]:
    """The routes of a ``GET`` of :data:`ROUTES_PATH` (``null`` when none)."""
    found = json.loads(body) if body.strip() else None
    return [r for r in found or [] if isinstance(r, dict)]


# ----- health checks of a new container -----

def health_path(role: Role) -> str:
    healthcheck = (role.proxy.raw.get("healthcheck") or {}) if role.proxy else {}
    path = str(healthcheck.get("path") or DEFAULT_HEALTHCHECK_PATH)
    return path if path.startswith("/") else "/" + path


def health_url(role: Role, container: str) -> str:
    port = role.proxy.app_port if role.proxy else DEFAULT_HTTP_PORT
    return f"http://{container}:{port}{health_path(role)}"


def probe(config: Configuration, role: Role, container: str, *, deadline: int | None = None) -> Command:
    """A loop polling the new container's health path until it answers 2xx (exit 0), else exit 1 after
    ``deadline`` seconds (default ``deploy_timeout``).

    By default it runs on the server itself: ``curl`` to the container's address on the ``kamal`` network,
    which is where Caddy's upstreams dial it. No image beyond Caddy's and no container per probe. With
    ``proxy.caddy.probe_image`` set, a one-off container in Caddy's network namespace probes instead.
    """
    if caddy_settings(config).get("probe_image"):
        return container_probe(config, role, container, deadline=deadline)
    interval, timeout, seconds = _probe_timing(config, role, deadline, DEFAULT_SERVER_PROBE_INTERVAL)
    proxy = role.proxy
    url = f'"http://$ip:{proxy.app_port if proxy else DEFAULT_HTTP_PORT}{health_path(role)}"'
    # One shell line as the command's single part: sent as it is (see base.render).
    return [_address_and_deadline(container, seconds) +
            f"until curl --silent --fail --max-time {timeout} -o /dev/null {url}; do "
            f'[ "$(date +%s)" -lt "$end" ] || exit 1; sleep {interval}; done']


def _address_and_deadline(container: str, seconds: int) -> str:
    """The start of a server-side wait: ``$ip``, the container's address on the ``kamal`` network (exit 1
    without one), and ``$end``, ``seconds`` from now."""
    address = docker("inspect", "--format", shell_quote_single(
        f'{{{{with index .NetworkSettings.Networks "{NETWORK}"}}}}{{{{.IPAddress}}}}{{{{end}}}}'), container)
    return f'ip=$({join(address)}) && [ -n "$ip" ] || exit 1; end=$(($(date +%s)+{seconds})); '


def container_probe(config: Configuration, role: Role, container: str, *, deadline: int | None = None) -> Command:
    """The probe as a one-off container in Caddy's network namespace (``proxy.caddy.probe_image``).

    It sees the app exactly as Caddy does (same DNS, same network). Exit 0: healthy; 1: not healthy
    within the deadline; 125: no proxy container (docker's own).
    busybox's ``wget -T`` crashes in some versions, so ``timeout`` bounds each request instead.
    """
    interval, timeout, seconds = _probe_timing(config, role, deadline, DEFAULT_HEALTHCHECK_INTERVAL)
    url = health_url(role, container)
    loop = (f"end=$(($(date +%s)+{seconds})); until timeout {timeout} wget -q -O /dev/null {url}; do "
            f'[ "$(date +%s)" -lt "$end" ] || exit 1; sleep {interval}; done')
    return docker("run", "--rm", "--label", PROBE_LABEL, "--network", f"container:{CONTAINER}",
                  probe_image(config), "sh", "-c", shell_quote_single(loop))


def _probe_timing(config: Configuration, role: Role, deadline: int | None,
                  default_interval: float) -> tuple[Any, Any, int]:
    """``(interval, timeout per request, deadline)`` of a probe, from ``proxy.healthcheck``."""
    healthcheck = (role.proxy.raw.get("healthcheck") or {}) if role.proxy else {}
    return (healthcheck.get("interval") or default_interval, healthcheck.get("timeout") or DEFAULT_PROBE_TIMEOUT,
            deadline if deadline is not None else config.deploy_timeout)


def join_alias(role: Role, container: str) -> list[Command]:
    """Docker can't add an alias to a connected endpoint: reconnect with it (the container gets a new address)."""
    return [docker("network", "disconnect", NETWORK, container),
            docker("network", "connect", "--alias", alias(role), NETWORK, container)]


def leave_alias(container: str) -> list[Command]:
    return [docker("network", "disconnect", NETWORK, container), docker("network", "connect", NETWORK, container)]


# ----- kamal-proxy settings Caddy can't honour per route -----

UNSUPPORTED = {
    "forward_headers": "the caddy driver cannot pass a client's X-Forwarded-* headers through per app: Caddy sets "
                       "its own (trusting clients is a setting of the whole proxy); remove it",
    "buffering": "Caddy streams requests and responses; of buffering the caddy driver supports only "
                 "max_request_body (larger bodies get 413) and requests/responses: false",
    "logging": "the caddy driver does not log request or response headers; remove proxy logging",
}


def unsupported_settings(raw: Mapping[str, Any]) -> list[str]:
    """The keys of a proxy section that the caddy driver cannot honour (as ``key`` or ``key/sub``)."""
    found = []
    if raw.get("forward_headers"):
        found.append("forward_headers")
    buffering = raw.get("buffering") or {}
    if isinstance(buffering, Mapping):
        found += [f"buffering/{k}" for k, v in buffering.items()
                  if k not in ("max_request_body", "requests", "responses") or (k != "max_request_body" and v)]
    if raw.get("logging"):
        found.append("logging")
    return found


# ----- TLS: the routes of roles with ``ssl``, their certificates and the HTTP-to-HTTPS redirect -----

def uses_tls(role: Role) -> bool:
    return role.proxy is not None and role.proxy.ssl


def redirects_to_https(role: Role) -> bool:
    """kamal-proxy's ``--tls-redirect`` (on by default with TLS): plain HTTP gets a 301 to ``https://``."""
    return uses_tls(role) and role.proxy is not None and role.proxy.raw.get("ssl_redirect", True) is not False


def tls_route_id(role: Role) -> str:
    return route_id(role) + TLS_ROUTE_SUFFIX


def tls_route(role: Role, handlers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The role's route on the TLS server: the same match and handlers as its HTTP route, its own @id."""
    return {**route(role, handlers), "@id": tls_route_id(role)}


def https_redirect_handlers(https_port: Any = DEFAULT_HTTPS_PORT) -> list[dict[str, Any]]:
    """301 to the same host and URI over HTTPS (with the published port when it is not 443), then close."""
    port = "" if str(https_port) == str(DEFAULT_HTTPS_PORT) else f":{https_port}"
    return [{"handler": "static_response", "status_code": 301, "close": True,
             "headers": {"Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]}}]


def https_port(config: Configuration, host: str) -> Any:
    return (config.proxy_run(host) or {}).get("https_port", DEFAULT_HTTPS_PORT)


def http_route(role: Role, config: Configuration, host: str) -> dict[str, Any]:
    """The role's route on the HTTP server: live, or a redirect when its traffic goes over HTTPS."""
    if redirects_to_https(role):
        return route(role, https_redirect_handlers(https_port(config, host)))
    return route(role)


def tls_server() -> dict[str, Any]:
    """The TLS server: port 443 of the container. Caddy's own redirects are off: the routes redirect."""
    return {"listen": [f":{DEFAULT_HTTPS_PORT}"], "routes": [TLS_FALLBACK_ROUTE],
            "automatic_https": {"disable_redirects": True}}


def acme_ca(config: Configuration) -> str | None:
    """``proxy.caddy.acme_ca``: the ACME directory URL (default: Caddy's, i.e. Let's Encrypt)."""
    value = caddy_settings(config).get("acme_ca")
    return str(value) if value else None


def acme_ca_root(config: Configuration) -> str | None:
    """``proxy.caddy.acme_ca_root``: a PEM file on the deploying machine that Caddy trusts for ``acme_ca``."""
    value = caddy_settings(config).get("acme_ca_root")
    return str(value) if value else None


def acme_ca_root_host_path() -> str:
    return file_join(HOST_DIRECTORY, ACME_CA_ROOT_FILE)


def acme_policy(role: Role, config: Configuration) -> dict[str, Any] | None:
    """The automation policy for the role's hosts when ``acme_ca`` is set (else Caddy's default issuers)."""
    directory = acme_ca(config)
    if directory is None or role.proxy is None or role.proxy.custom_ssl_certificate:
        return None
    issuer: dict[str, Any] = {"module": "acme", "ca": directory}
    if acme_ca_root(config):
        issuer["trusted_roots_pem_files"] = [f"{CONTAINER_CONFIG_DIRECTORY}/{ACME_CA_ROOT_FILE}"]
    return {"@id": route_id(role) + ACME_POLICY_SUFFIX, "subjects": list(role.proxy.hosts), "issuers": [issuer]}


def certificate_directory(role: Role) -> str:
    """Where the driver uploads a role's own certificate and key (``ssl: {certificate_pem, private_key_pem}``)."""
    return file_join(HOST_DIRECTORY, "tls", route_id(role))


def certificate_files(role: Role, digest: str) -> dict[str, Any]:
    """The ``load_files`` entry of a role's own certificate; ``digest`` (of the PEMs) makes a new one a change."""
    directory = f"{CONTAINER_CONFIG_DIRECTORY}/tls/{route_id(role)}"
    return {"certificate": f"{directory}/cert.pem", "key": f"{directory}/key.pem",
            "tags": [route_id(role), f"sha256:{digest}"]}


def tls_app(current: Mapping[str, Any] | None, role: Role, *, policy: Mapping[str, Any] | None,
            certificate: Mapping[str, Any] | None) -> dict[str, Any]:
    """Caddy's ``tls`` app with this role's policy and certificate in place of any earlier ones (None: removed).

    Other services' entries are kept as they are: several services share one Caddy.
    """
    app = json.loads(json.dumps(current or {}))
    owner = route_id(role)
    _replace_entry(app, "automation", "policies", policy,
                   lambda entry: entry.get("@id") == owner + ACME_POLICY_SUFFIX)
    _replace_entry(app, "certificates", "load_files", certificate,
                   lambda entry: owner in (entry.get("tags") or []))
    return app


def _replace_entry(app: dict[str, Any], section: str, key: str, new: Mapping[str, Any] | None,
                   ours: Any) -> None:
    """``app[section][key]`` without the entries ``ours`` picks, plus ``new``; empty lists and sections go."""
    part = app.setdefault(section, {})
    entries = [e for e in part.get(key) or [] if not ours(e)] + ([dict(new)] if new is not None else [])
    part[key] = entries
    if not entries:
        part.pop(key)
    if not part:
        app.pop(section)


def wait_for_certificates(config: Configuration, role: Role, deadline: int | None = None) -> Command:
    """Until Caddy completes a TLS handshake for each of the role's hosts (it holds a certificate: Caddy has
    none to offer before), else exit 1 printing the host that has none. Asked at the proxy's address on the
    ``kamal`` network, port 443.
    """
    seconds = deadline if deadline is not None else config.deploy_timeout
    hosts = " ".join(shell_quote_single(h) for h in (role.proxy.hosts if role.proxy else []))
    # curl's time_appconnect is 0.000000 until a TLS handshake completes; the request itself may hang (on a
    # first deploy no container holds the alias yet), so only the handshake counts.
    return [_address_and_deadline(CONTAINER, seconds) +
            f"for h in {hosts}; do until t=$(curl --silent --insecure --max-time 2 -o /dev/null "
            f"-w '%{{time_appconnect}}' --resolve \"$h:{DEFAULT_HTTPS_PORT}:$ip\" \"https://$h/\"); "
            f'case "$t" in ""|0.000000) false;; esac; do '
            f'[ "$(date +%s)" -lt "$end" ] || {{ echo "$h"; exit 1; }}; sleep {CERTIFICATE_WAIT_INTERVAL}; done; done']


def recent_logs(lines: int = 300) -> Command:
    return docker("logs", "--tail", str(lines), CONTAINER, "2>&1")


def certificate_error(logs: str, host: str) -> str | None:
    """The last error Caddy logged while obtaining a certificate for ``host`` (its JSON log lines)."""
    found = None
    for line in logs.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            entry = json.loads(line[start:])
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("level") != "error":
            continue
        if str(entry.get("logger", "")).startswith("tls") and host in (entry.get("identifier"), *(
                entry.get("identifiers") or [])):
            found = str(entry.get("error") or entry.get("msg") or "")
    return found
