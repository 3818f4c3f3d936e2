"""The caddy driver: its pure builders (container argv, initial config, routes and their order, admin calls,
probe), and its decisions on a fake session (which calls a deploy makes, how failures map to errors)."""

from __future__ import annotations

import json
import shlex
import subprocess
from types import SimpleNamespace

import pytest
import yaml

from kamalpy.builtin_plugins import proxy_caddy
from kamalpy.commands import caddy
from kamalpy.commands.base import join, render
from kamalpy.config.model import Configuration
from kamalpy.errors import KamalpyError
from kamalpy.execution import Step
from kamalpy.proxy_driver import BootError
from kamalpy.transport import CommandFailed, CommandResult

BASE = """
service: app
image: dhh/app
registry: {username: dhh, password: secret}
builder: {arch: amd64}
"""


def make(extra: str = "", servers: str = "servers: [1.1.1.1]\n") -> Configuration:
    return Configuration(yaml.safe_load(BASE + servers + "proxy:\n  driver: caddy\n" + extra), version="123")


def role(config: Configuration, name: str = "web"):
    return next(r for r in config.roles if r.name == name)


# ----- the container -----

def test_image_defaults_and_run_keys() -> None:
    assert caddy.image(None) == "caddy:2"
    assert caddy.image({"version": "2.8"}) == "caddy:2.8"
    assert caddy.image({"registry": "r:5000", "repository": "caddy", "version": "2.6.2"}) == "r:5000/caddy:2.6.2"
    assert caddy.image({"registry": "r:5000"}) == "r:5000/caddy:2"


def test_run_default() -> None:
    assert join(caddy.run(make(), "1.1.1.1")) == (
        "docker run --name kamalpy-caddy --network kamal --detach --restart unless-stopped "
        "--label kamalpy.proxy=caddy --sysctl net.ipv4.tcp_migrate_req=1 "
        "--volume kamalpy-caddy-config:/config --volume kamalpy-caddy-data:/data "
        "--volume $PWD/.kamal/caddy:/etc/kamalpy:ro --env XDG_CONFIG_HOME=/config --env XDG_DATA_HOME=/data "
        "--publish 80:80 --publish 443:443 --publish 127.0.0.1:2019:2019 --log-opt max-size=10m "
        "caddy:2 caddy run --resume --config /etc/kamalpy/caddy.json")


def test_run_with_run_settings_and_admin_port() -> None:
    config = make("  caddy: {admin_port: 12019}\n  run: {registry: 'r:5000', repository: caddy, version: 2.6.2, "
                  "http_port: 8080, https_port: 8443, bind_ips: [10.0.0.1], log_max_size: 1m, "
                  "options: {cpus: 1}}\n")
    line = join(caddy.run(config, "1.1.1.1"))
    assert "--publish 10.0.0.1:8080:80 --publish 10.0.0.1:8443:443 --publish 127.0.0.1:12019:2019 " in line
    assert "--log-opt max-size=1m" in line and '--cpus "1"' in line
    assert line.endswith("r:5000/caddy:2.6.2 caddy run --resume --config /etc/kamalpy/caddy.json")


def test_run_without_publish_keeps_the_admin_port_on_loopback() -> None:
    line = join(caddy.run(make("  run: {publish: false}\n"), "1.1.1.1"))
    assert "--publish 80:80" not in line and "--publish 127.0.0.1:2019:2019" in line


def test_start_or_run_and_container_commands() -> None:
    config = make()
    assert join(caddy.start_or_run(config, "1.1.1.1")).startswith(
        "docker container start kamalpy-caddy || docker run --name kamalpy-caddy ")
    assert join(caddy.stop()) == "docker container stop kamalpy-caddy"
    assert join(caddy.info()) == "docker ps --filter 'name=^kamalpy-caddy$'"
    assert join(caddy.logs(lines=5, since="1h", grep="err")) == (
        "docker logs kamalpy-caddy --since 1h --tail 5 --timestamps 2>&1 | grep 'err'")
    assert join(caddy.remove_volumes()) == "docker volume rm kamalpy-caddy-config kamalpy-caddy-data"
    assert join(caddy.remove_image(config, "1.1.1.1")) == "docker image rm caddy:2"
    assert join(caddy.remove_host_directory()) == "rm -rf .kamal/caddy"
    assert caddy.follow_logs(config, "1.1.1.1").endswith(
        "'docker logs kamalpy-caddy --timestamps --tail 10 --follow 2>&1'")


def test_initial_config_sets_our_admin_listener_and_a_404_fallback() -> None:
    config = json.loads(caddy.initial_config_json())
    assert config["admin"] == {"listen": "0.0.0.0:2019"}
    server = config["apps"]["http"]["servers"]["kamalpy"]
    assert server["listen"] == [":80"]  # port 80 only: no automatic HTTPS
    assert server["routes"] == [caddy.FALLBACK_ROUTE]


# ----- routes -----

def test_route_of_a_role_with_host() -> None:
    config = make("  host: app.example.com\n  app_port: 3000\n  response_timeout: 10\n")
    route = caddy.route(role(config))
    assert route["@id"] == "app-web"
    assert route["match"] == [{"host": ["app.example.com"]}]
    assert route["terminal"] is True
    [proxy] = route["handle"]
    assert proxy["handler"] == "reverse_proxy"
    assert proxy["dynamic_upstreams"] == {"source": "a", "name": "app-web", "port": "3000", "refresh": "500ms",
                                          "resolver": {"addresses": ["127.0.0.11:53"]}}
    assert proxy["load_balancing"] == {"selection_policy": {"policy": "round_robin"}, "try_duration": "5s",
                                       "try_interval": "50ms"}
    assert proxy["health_checks"] == {"passive": {"fail_duration": "3s", "max_fails": 1}}
    assert proxy["transport"] == {"protocol": "http", "dial_timeout": "500ms", "response_header_timeout": "10s"}


def test_route_alias_includes_the_destination() -> None:
    config = Configuration(yaml.safe_load(BASE + "servers: [1.1.1.1]\nproxy: {driver: caddy}\n"),
                           destination="staging", version="1")
    assert caddy.alias(role(config)) == "app-web-staging"
    assert "match" not in caddy.route(role(config))  # no host: the catch-all


def test_route_with_path_prefixes_strips_them_longest_first() -> None:
    config = make("  hosts: [a.test, b.test]\n  path_prefixes: [/api, /api/v2/]\n")
    route = caddy.route(role(config))
    assert route["match"] == [{"host": ["a.test", "b.test"], "path": ["/api/v2", "/api/v2/*", "/api", "/api/*"]}]
    strip, proxy = route["handle"]
    assert strip["handler"] == "subroute"
    assert [r["handle"][0]["strip_path_prefix"] for r in strip["routes"]] == ["/api/v2", "/api"]
    assert proxy["handler"] == "reverse_proxy"


def test_route_without_strip() -> None:
    config = make("  path_prefix: /api\n  strip_path_prefix: false\n")
    assert [h["handler"] for h in caddy.route(role(config))["handle"]] == ["reverse_proxy"]


def test_maintenance_route() -> None:
    config = make("  host: a.test\n")
    route = caddy.route(role(config), caddy.maintenance_handlers(role(config), "Back soon"))
    [handler] = route["handle"]
    assert handler["status_code"] == 503 and handler["body"] == "Back soon\n"
    assert caddy.in_maintenance(route)
    assert not caddy.in_maintenance(caddy.route(role(config)))
    assert caddy.maintenance_handlers(role(config))[0]["body"] == "Service temporarily unavailable\n"


def r(rid: str, hosts: list[str] | None = None, prefixes: list[str] | None = None) -> dict:
    match = {}
    if hosts:
        match["host"] = hosts
    if prefixes:
        match["path"] = [p for x in prefixes for p in (x, x + "/*")]
    return {"@id": rid, **({"match": [match]} if match else {}), "handle": [], "terminal": True}


def test_order_hosts_then_wildcards_then_catch_all_longer_prefixes_first() -> None:
    routes = [r("catch"), r("catch-api", prefixes=["/api"]), r("a", ["a.test"]), r("a-api", ["a.test"], ["/api"]),
              r("a-api-v2", ["a.test"], ["/api/v2"]), r("wild", ["*.test"]), caddy.FALLBACK_ROUTE]
    ordered = sorted(routes, key=caddy.order_key)
    assert [x["@id"] for x in ordered] == ["a-api-v2", "a-api", "a", "wild", "catch-api", "catch", "kamalpy-fallback"]


def test_plan_inserts_a_new_route_at_its_place() -> None:
    routes = [r("a", ["a.test"]), r("catch"), caddy.FALLBACK_ROUTE]
    assert caddy.plan_route(routes, r("b-api", ["b.test"], ["/api"])) == (
        "PUT", "/config/apps/http/servers/kamalpy/routes/0", r("b-api", ["b.test"], ["/api"]))
    assert caddy.plan_route(routes, r("c", ["c.test"]))[:2] == ("PUT", "/config/apps/http/servers/kamalpy/routes/1")
    assert caddy.plan_route([], r("c", ["c.test"]))[:2] == ("POST", "/config/apps/http/servers/kamalpy/routes")


def test_plan_leaves_an_unchanged_route_and_replaces_a_changed_one() -> None:
    routes = [r("a", ["a.test"]), r("b", ["b.test"]), caddy.FALLBACK_ROUTE]
    assert caddy.plan_route(routes, r("a", ["a.test"])) is None
    assert caddy.plan_route(routes, r("a", ["z.test"])) == ("PATCH", "/id/a", r("a", ["z.test"]))
    method, path, body = caddy.plan_route(routes, r("b", ["b.test"], ["/x"]))  # moves before a
    assert (method, path) == ("PATCH", "/config/apps/http/servers/kamalpy/routes")
    assert [x["@id"] for x in body] == ["b", "a", "kamalpy-fallback"]
    method, path, body = caddy.plan_route(routes, r("a"))  # now the catch-all: moves after b
    assert [x["@id"] for x in body] == ["b", "a", "kamalpy-fallback"]


def test_parse_routes() -> None:
    assert caddy.parse_routes("null\n") == []
    assert caddy.parse_routes("") == []
    assert caddy.parse_routes('[{"@id": "a"}]') == [{"@id": "a"}]


# ----- admin API and probes -----

def test_admin_call_quotes_the_body_and_reports_the_status() -> None:
    cmd = caddy.admin(make(), "PATCH", "/id/app-web", {"it's": "x"})
    assert join(cmd) == (
        "curl --silent --show-error --max-time 30 -X PATCH -H 'Content-Type: application/json' "
        "--data-binary '{\"it'\\''s\":\"x\"}' -w '\\n@@status:%{http_code}' http://127.0.0.1:2019/id/app-web")
    assert render(cmd).startswith("/usr/bin/env curl ")
    # The shell gives curl exactly the JSON.
    assert json.loads(shlex.split(join(cmd))[10]) == {"it's": "x"}
    assert caddy.admin_status('{"a":1}\n@@status:200') == (200, '{"a":1}')
    assert caddy.admin_status("\n@@status:000") == (0, "")
    assert caddy.admin_status("curl: (7) refused") == (0, "curl: (7) refused")


def test_admin_status_mark_is_what_curl_prints() -> None:
    # printf interprets -w's escape as curl does: the mark starts on a new line.
    out = subprocess.run(["sh", "-c", "printf '%s' 'body'; printf '\\n@@status:%s' 201"], capture_output=True,
                         text=True).stdout
    assert caddy.admin_status(out) == (201, "body")


def test_probe_image_runs_the_probe_in_caddys_namespace_with_the_healthcheck_settings() -> None:
    config = make("  app_port: 3000\n  healthcheck: {path: /health, interval: 2, timeout: 4}\n"
                  "  caddy: {probe_image: r/busybox:1}\ndeploy_timeout: 45\n")
    line = join(caddy.probe(config, role(config), "app-web-123"))
    assert line.startswith("docker run --rm --label kamalpy.proxy=caddy-probe --network container:kamalpy-caddy "
                           "r/busybox:1 sh -c 'end=$(($(date +%s)+45)); until timeout 4 wget -q -O /dev/null "
                           "http://app-web-123:3000/health; do ")
    assert "sleep 2; done'" in line
    assert "+10))" in join(caddy.probe(config, role(config), "c", deadline=10))


def test_probe_defaults_to_curl_on_the_server_at_the_containers_kamal_address() -> None:
    config = make()
    line = join(caddy.probe(config, role(config), "app-web-123"))
    assert line == (
        "ip=$(docker inspect --format '{{with index .NetworkSettings.Networks \"kamal\"}}{{.IPAddress}}{{end}}' "
        'app-web-123) && [ -n "$ip" ] || exit 1; end=$(($(date +%s)+30)); '
        'until curl --silent --fail --max-time 2 -o /dev/null "http://$ip:80/up"; do '
        '[ "$(date +%s)" -lt "$end" ] || exit 1; sleep 0.2; done')
    assert caddy.remove_probe_image(config) is None  # no image to remove: none was used
    custom = make("  app_port: 3000\n  healthcheck: {path: health, interval: 2, timeout: 4}\n")
    line = join(caddy.probe(custom, role(custom), "c", deadline=10))
    assert '"http://$ip:3000/health"' in line and "--max-time 4" in line and "sleep 2;" in line and "+10))" in line


def test_server_probe_loop_polls_the_address_docker_reports(tmp_path) -> None:
    """Run the loop with a fake ``docker`` (prints an address) against a real local HTTP server."""
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    (tmp_path / "up").write_text("ok")
    server.RequestHandlerClass = type("H", (http.server.SimpleHTTPRequestHandler,), {
        "__init__": lambda self, *a, **k: http.server.SimpleHTTPRequestHandler.__init__(
            self, *a, directory=str(tmp_path), **k), "log_message": lambda *a: None})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "docker").write_text("#!/bin/sh\necho 127.0.0.1\n")
        (tmp_path / "docker").chmod(0o755)
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
        port = server.server_address[1]
        config = make(f"  app_port: {port}\n")
        loop = join(caddy.probe(config, role(config), "c", deadline=5))
        assert subprocess.run(["sh", "-c", loop], env=env, timeout=20).returncode == 0
        config = make(f"  app_port: {port}\n  healthcheck: {{path: /missing}}\n")
        loop = join(caddy.probe(config, role(config), "c", deadline=1))
        assert subprocess.run(["sh", "-c", loop], env=env, timeout=20, capture_output=True).returncode == 1
    finally:
        server.shutdown()


@pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v timeout wget"], capture_output=True).returncode != 0,
                    reason="needs timeout and wget")
def test_probe_loop_gives_up_after_its_deadline() -> None:
    config = make("  healthcheck: {interval: 1}\n  caddy: {probe_image: busybox}\n")
    loop = shlex.split(join(caddy.probe(config, role(config), "127.0.0.1:9", deadline=1)))[-1]
    proc = subprocess.run(["sh", "-c", loop], capture_output=True, timeout=20)
    assert proc.returncode == 1


def test_alias_join_and_leave() -> None:
    config = make()
    assert [join(c) for c in caddy.join_alias(role(config), "app-web-1")] == [
        "docker network disconnect kamal app-web-1", "docker network connect --alias app-web kamal app-web-1"]
    assert [join(c) for c in caddy.leave_alias("app-web-1")] == [
        "docker network disconnect kamal app-web-1", "docker network connect kamal app-web-1"]


# ----- the driver's decisions, on a scripted fake session (no server) -----

class FakeSession:
    """Answers each command by the first matching (substring, status, stdout) rule; records what ran."""

    def __init__(self, rules: list[tuple[str, int, str]] | None = None) -> None:
        self.host = "1.1.1.1"
        self.executor = SimpleNamespace(dry_run=False)
        self.rules = rules or []
        self.ran: list[str] = []

    def _answer(self, command) -> CommandResult:
        line = command if isinstance(command, str) else render(command, redact=True)
        self.ran.append(line)
        for needle, status, out in self.rules:
            if needle in line:
                return CommandResult(self.host, line, status, out)
        return CommandResult(self.host, line, 0, "")

    def script(self, steps):
        results = []
        for step in steps:
            command = step.command if isinstance(step, Step) else step
            result = self._answer(command)
            results.append(result)
            if not result.ok and (not isinstance(step, Step) or step.check):
                raise CommandFailed(result, shown_command=result.command)
        return results

    def execute(self, command, raise_on_non_zero=True, **_):
        return self._answer(command)


def routes_answer(*routes: dict) -> str:
    return json.dumps(list(routes)) + "\n@@status:200"


def servers_answer(*routes: dict, tls: tuple[dict, ...] = ()) -> str:
    """A ``GET`` of Caddy's HTTP servers (what a deploy reads): the HTTP server's routes, the TLS server's."""
    servers = {caddy.SERVER: {"routes": list(routes)}}
    if tls:
        servers[caddy.TLS_SERVER] = {"routes": list(tls)}
    return json.dumps(servers) + "\n@@status:200"


@pytest.fixture
def driver(monkeypatch):
    monkeypatch.setattr(proxy_caddy.time, "sleep", lambda s: None)
    config = make("  host: a.test\n")
    return proxy_caddy.CaddyDriver(SimpleNamespace(config=config)), role(config)


def test_deploy_adds_a_missing_route_once(driver) -> None:
    drv, web = driver
    session = FakeSession([("-X GET", 0, servers_answer(caddy.FALLBACK_ROUTE)), ("-X P", 0, "\n@@status:200")])
    drv.deploy(session, web, "app-web-123")
    assert [line.split(" ")[:2] for line in session.ran[:4]] == [["ip=$(docker", "inspect"], ["docker", "network"],
                                                                 ["docker", "network"], ["ip=$(docker", "inspect"]]
    assert "-X PUT" in session.ran[-1] and session.ran[-1].endswith("/config/apps/http/servers/kamalpy/routes/0")
    # Next deploy: the route is there, nothing is loaded.
    session = FakeSession([("-X GET", 0, servers_answer(caddy.route(web), caddy.FALLBACK_ROUTE))])
    drv.deploy(session, web, "app-web-456")
    assert len(session.ran) == 5 and "-X GET" in session.ran[-1]


def test_deploy_of_a_role_that_dropped_ssl_removes_its_tls_route(driver) -> None:
    drv, web = driver
    tls_route = {"@id": caddy.tls_route_id(web), "match": [{"host": ["a.test"]}]}
    session = FakeSession([("-X GET", 0, servers_answer(caddy.route(web), caddy.FALLBACK_ROUTE, tls=(tls_route,))),
                           ("-X DELETE", 0, "\n@@status:200")])
    drv.deploy(session, web, "app-web-2")
    assert any("-X DELETE" in line and line.endswith(f"/id/{caddy.tls_route_id(web)}") for line in session.ran)
    # Without a TLS route of its own, nothing beyond the deploy's round trip runs.
    session = FakeSession([("-X GET", 0, servers_answer(caddy.route(web), caddy.FALLBACK_ROUTE,
                                                        tls=({"@id": "other:tls"},)))])
    drv.deploy(session, web, "app-web-3")
    assert len(session.ran) == 5


def test_deploy_of_an_unhealthy_container_raises_boot_error(driver) -> None:
    drv, web = driver
    session = FakeSession([("+30))", 1, "")])
    with pytest.raises(BootError, match=r"^1\.1\.1\.1: app-web-1 did not become healthy within 30s "
                                        r"\(http://app-web-1:80/up\)$"):
        drv.deploy(session, web, "app-web-1")
    assert len(session.ran) == 1  # it never joined the alias


def test_deploy_leaves_the_alias_when_the_second_check_fails(driver) -> None:
    drv, web = driver
    session = FakeSession([("+10))", 1, "")])
    with pytest.raises(BootError, match="stopped answering"):
        drv.deploy(session, web, "app-web-1")
    assert session.ran[-2:] == ["docker network disconnect kamal app-web-1", "docker network connect kamal app-web-1"]


def test_deploy_without_proxy_container(driver) -> None:
    drv, web = driver
    drv.config.proxy.raw["caddy"] = {"probe_image": "busybox:1.36"}  # only a probe container needs Caddy's
    session = FakeSession([("+30))", 125, "")])
    with pytest.raises(KamalpyError, match="no kamalpy-caddy container .* run `kamalpy proxy boot`"):
        drv.deploy(session, web, "app-web-1")


def test_deploy_of_a_vanished_container(driver) -> None:
    drv, web = driver
    with pytest.raises(BootError, match="did the container boot"):
        drv.deploy(FakeSession(), web, "app-web-1", container_id="")


def test_admin_errors_carry_caddys_message(driver) -> None:
    drv, web = driver
    session = FakeSession([("-X GET", 0, servers_answer()),
                           ("-X POST", 0, '{"error":"unknown field \\"dynamic_upstreams\\""}\n@@status:400')])
    with pytest.raises(KamalpyError, match=r'POST /config/apps/http/servers/kamalpy/routes failed \(HTTP 400\): '
                                           r'\{"error":"unknown field'):
        drv.deploy(session, web, "app-web-1")
    session = FakeSession([("curl", 7, "\n@@status:000")])
    with pytest.raises(KamalpyError, match=r"HTTP no answer"):
        drv.remove_app(session, web)


def test_maintenance_live_and_remove_app(driver) -> None:
    drv, web = driver
    session = FakeSession([("-X GET", 0, routes_answer(caddy.route(web), caddy.FALLBACK_ROUTE)),
                           ("-X PATCH", 0, "\n@@status:200")])
    drv.maintenance(session, web, message="Back soon")
    assert "-X PATCH" in session.ran[-1] and session.ran[-1].endswith("/id/app-web") and "Back soon" in session.ran[-1]
    session = FakeSession([("-X GET", 0, routes_answer(caddy.route(web), caddy.FALLBACK_ROUTE))])
    drv.live(session, web)
    assert len(session.ran) == 1  # already live: nothing to load
    with pytest.raises(KamalpyError, match="no route for app-web on kamalpy-caddy, deploy it first"):
        drv.maintenance(FakeSession([("-X GET", 0, routes_answer())]), web)
    session = FakeSession([("-X DELETE", 0, '{"error":"unknown object ID"}\n@@status:404')])
    drv.remove_app(session, web)  # already gone: fine


def test_deploy_keeps_maintenance(driver) -> None:
    drv, web = driver
    down = caddy.route(web, caddy.maintenance_handlers(web))
    session = FakeSession([("-X GET", 0, servers_answer(down, caddy.FALLBACK_ROUTE))])
    drv.deploy(session, web, "app-web-2")
    assert len(session.ran) == 5  # no load: the route stays in maintenance


def test_validation_accepts_ssl_and_refuses_what_caddy_cannot_honour(tmp_path, monkeypatch) -> None:
    validate = proxy_caddy.kamalpy_validate_config
    assert validate(make("  host: a.test\n  ssl: true\n  ssl_redirect: false\n")) is None
    assert validate(make("  host: a.test\n  buffering: {max_request_body: 1000, requests: false}\n")) is None
    assert validate(make("  host: a.test\n  forward_headers: true\n")).startswith(
        "proxy/forward_headers: the caddy driver cannot pass a client's X-Forwarded-* headers")
    assert validate(make("  host: a.test\n  buffering: {memory: 100}\n")).startswith(
        "proxy/buffering/memory: Caddy streams requests and responses")
    assert validate(make("  host: a.test\n  buffering: {requests: true}\n")).startswith("proxy/buffering/requests:")
    assert validate(make("  host: a.test\n  logging: {request_headers: [X]}\n")).startswith("proxy/logging:")
    by_role = make("  host: a.test\n", servers="servers: {web: {hosts: [1.1.1.1], proxy: {forward_headers: true}}}\n")
    assert validate(by_role).startswith("servers/web/proxy/forward_headers:")
    monkeypatch.chdir(tmp_path)
    assert validate(make("  host: a.test\n  caddy: {acme_ca_root: ca.pem}\n")) == (
        "proxy/caddy/acme_ca_root: ca.pem is not a file (a PEM file on this machine, relative to the project)")
    (tmp_path / "ca.pem").write_text("pem")
    assert validate(make("  host: a.test\n  caddy: {acme_ca_root: ca.pem}\n")) is None
    other = Configuration(yaml.safe_load(BASE + "servers: [1.1.1.1]\nproxy: {host: a.test, forward_headers: true}\n"))
    assert validate(other) is None  # kamal-proxy does it


def test_max_request_body_becomes_a_request_body_limit() -> None:
    config = make("  host: a.test\n  buffering: {max_request_body: 1000}\n")
    handlers = caddy.route(role(config))["handle"]
    assert handlers[0] == {"handler": "request_body", "max_size": 1000}
    assert handlers[1]["handler"] == "reverse_proxy"


# ----- TLS -----

def test_tls_routes_redirect_and_policy() -> None:
    config = make("  host: a.test\n  ssl: true\n  run: {https_port: 8443}\n"
                  "  caddy: {acme_ca: 'https://acme.test/dir', acme_ca_root: ca.pem}\n")
    web = role(config)
    assert caddy.uses_tls(web) and caddy.redirects_to_https(web)
    tls = caddy.tls_route(web)
    assert tls["@id"] == "app-web:tls" and tls["match"] == [{"host": ["a.test"]}]
    assert tls["handle"] == caddy.route(web)["handle"]
    redirect = caddy.http_route(web, config, "1.1.1.1")
    assert redirect["@id"] == "app-web" and redirect["handle"] == [
        {"handler": "static_response", "status_code": 301, "close": True,
         "headers": {"Location": ["https://{http.request.host}:8443{http.request.uri}"]}}]
    assert caddy.https_redirect_handlers(443)[0]["headers"]["Location"] == ["https://{http.request.host}{http.request.uri}"]
    assert caddy.acme_policy(web, config) == {
        "@id": "app-web:acme", "subjects": ["a.test"],
        "issuers": [{"module": "acme", "ca": "https://acme.test/dir",
                     "trusted_roots_pem_files": ["/etc/kamalpy/acme-ca-root.pem"]}]}
    plain = make("  host: a.test\n  ssl: true\n  ssl_redirect: false\n")
    assert not caddy.redirects_to_https(role(plain))
    assert caddy.http_route(role(plain), plain, "1.1.1.1") == caddy.route(role(plain))
    assert caddy.acme_policy(role(plain), plain) is None  # Caddy's default issuers
    assert caddy.maintenance_handlers(web, tls=True)[0]["@id"] != caddy.maintenance_handlers(web)[0]["@id"]


def test_tls_app_keeps_other_services_entries_and_replaces_ours() -> None:
    config = make("  host: a.test\n  ssl: true\n  caddy: {acme_ca: 'https://acme.test/dir'}\n")
    web = role(config)
    theirs = {"automation": {"policies": [{"@id": "other-web:acme", "subjects": ["b.test"]}]},
              "certificates": {"load_files": [{"certificate": "c", "key": "k", "tags": ["other-web"]}]}}
    policy = caddy.acme_policy(web, config)
    ours = caddy.certificate_files(web, "abc")
    app = caddy.tls_app(theirs, web, policy=policy, certificate=ours)
    assert app["automation"]["policies"] == [theirs["automation"]["policies"][0], policy]
    assert app["certificates"]["load_files"][1] == {"certificate": "/etc/kamalpy/tls/app-web/cert.pem",
                                                    "key": "/etc/kamalpy/tls/app-web/key.pem",
                                                    "tags": ["app-web", "sha256:abc"]}
    assert caddy.tls_app(app, web, policy=policy, certificate=ours) == app  # no change, no config load
    assert caddy.tls_app(app, web, policy=None, certificate=None) == theirs
    assert caddy.tls_app(None, web, policy=None, certificate=None) == {}


def test_wait_for_certificates_loop_and_certificate_error() -> None:
    config = make("  hosts: [a.test, b.test]\n  ssl: true\n")
    line = join(caddy.wait_for_certificates(config, role(config), deadline=7))
    assert "for h in 'a.test' 'b.test'; do until t=$(curl --silent --insecure --max-time 2 -o /dev/null " in line
    assert '--resolve "$h:443:$ip" "https://$h/"' in line and "+7))" in line and "kamalpy-caddy)" in line
    logs = "\n".join([
        '{"level":"info","logger":"tls.obtain","msg":"acquiring lock","identifier":"a.test"}',
        'not json',
        '{"level":"error","logger":"tls.obtain","msg":"could not get certificate from issuer",'
        '"identifier":"a.test","error":"dial tcp 10.0.0.1:14000: connect: connection refused"}',
        '{"level":"error","logger":"tls.obtain","msg":"will retry","identifier":"b.test","error":"other"}'])
    assert caddy.certificate_error(logs, "a.test") == "dial tcp 10.0.0.1:14000: connect: connection refused"
    assert caddy.certificate_error(logs, "c.test") is None




def test_shared_claims_of_two_routes() -> None:
    config = make("  host: a.test\n  path_prefix: /api\n")
    ours = caddy.route(role(config))
    both = {"@id": "x", "match": [{"host": ["a.test", "b.test"], "path": ["/api", "/api/*"]}]}
    assert caddy.shared_claim(ours, both) == "a.test/api"
    assert caddy.shared_claim(ours, {"@id": "x", "match": [{"host": ["a.test"], "path": ["/web", "/web/*"]}]}) is None
    assert caddy.shared_claim(ours, {"@id": "x", "match": [{"host": ["a.test"]}]}) is None  # "/" vs "/api"
    assert caddy.shared_claim(ours, caddy.FALLBACK_ROUTE) is None
    hostless = caddy.route(role(make()))
    assert caddy.shared_claim(hostless, {"@id": "x", "handle": []}) == "(every host)"


def test_preflight_refuses_a_host_and_path_another_app_routes(driver) -> None:
    drv, web = driver
    drv.commander.specifics = SimpleNamespace(roles_on=lambda host: [web])
    theirs = {"@id": "other-web", "match": [{"host": ["a.test"]}], "handle": []}
    session = FakeSession([("-X GET", 0, routes_answer(theirs, caddy.FALLBACK_ROUTE))])
    with pytest.raises(KamalpyError, match=r"^1\.1\.1\.1: a\.test of web is already routed to other-web by another "
                                           r"app on kamalpy-caddy"):
        drv.preflight(session)
    assert all("-X GET" in line for line in session.ran)  # nothing but reads
    ours = caddy.route(web)  # our own route (an earlier deploy) is no clash
    drv.preflight(FakeSession([("-X GET", 0, routes_answer(ours, caddy.FALLBACK_ROUTE))]))
