"""End to end on one sandbox server: the ``caddy`` proxy driver, driven from Python through a Commander.

App containers are run by hand with docker over SSH (as the deploy flow will), then handed to the driver.
The switch v1 -> v2 runs under a bounded load through the server's proxy port and must lose no request.
Each test uses its own service name (its own host name and network alias); the Caddy container is the
server's one, booted here and removed by the last test.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
from pathlib import Path

import pytest
import yaml
from loadgen import Load

from kamalpy.cli.base import Run
from kamalpy.commands import caddy
from kamalpy.commands.docker import create_network
from kamalpy.errors import HostErrors
from kamalpy.execution import Step
from kamalpy.proxy_driver import BootError

pytestmark = pytest.mark.sandbox

SWITCH_REQUESTS = 2000
# Not 80/443/2019: other tests run kamal-proxy (or a default caddy) on the same shared servers.
HTTP_PORT, HTTPS_PORT, ADMIN_PORT = 18080, 18443, 12019


class Service:
    """A project dir with driver caddy for one service, its driver, and its app containers on ``host``."""

    def __init__(self, sandbox, root: Path, host: str, monkeypatch, domain: str | None = None,
                 **proxy: object) -> None:
        self.sandbox, self.host = sandbox, host
        self.name = f"cd{secrets.token_hex(3)}"
        self.domain = domain or f"{self.name}.test"
        config = {"service": self.name, "image": "sandbox-app", **yaml.safe_load(sandbox.deploy_yml()),
                  "builder": {"arch": "amd64"}, "servers": [host], "deploy_timeout": 8,
                  "proxy": {"driver": "caddy", "host": self.domain, **proxy,
                            "run": {"registry": sandbox.registry, "repository": "caddy",
                                    "version": sandbox.images["caddy"].rsplit(":", 1)[1],
                                    "http_port": HTTP_PORT, "https_port": HTTPS_PORT},
                            "caddy": {"probe_image": sandbox.images["busybox"], "admin_port": ADMIN_PORT}}}
        (root / "config").mkdir(parents=True)
        (root / "config" / "deploy.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        monkeypatch.chdir(root)
        self.run = Run()
        self.run.options.version = "v1"
        self.commander = self.run.commander
        self.driver = self.commander.proxy
        self.role = self.run.config.roles[0]
        self.containers: list[str] = []

    def on(self, work):
        return self.commander.on([self.host], work)[self.host]

    def ssh(self, command: str, check: bool = True) -> str:
        return self.sandbox.ssh(self.host, command, check=check).stdout

    def start_app(self, version: str) -> str:
        """``docker run`` as a deploy does: on the network, no alias yet."""
        name = f"{self.name}-web-{version}"
        image = self.sandbox.images[{"v1": "app", "v2": "app_v2", "v3": "app_v3"}[version]]
        self.ssh(f"docker run -d --name {name} --network kamal -e APP_VERSION={version} {image}")
        self.containers.append(name)
        return name

    def deploy(self, container: str) -> float:
        started = time.monotonic()
        self.on(lambda s: self.driver.deploy(s, self.role, container))
        return time.monotonic() - started

    def get(self, path: str = "/version", host: str | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection(self.host, HTTP_PORT, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host or self.domain})
            response = conn.getresponse()
            return response.status, response.read().decode().strip()
        finally:
            conn.close()

    def aliases(self, container: str) -> list[str]:
        """The container's aliases on the kamal network, without its own name and short id (which some
        Docker versions list there too): the aliases the driver gave it."""
        found = json.loads(self.ssh(f"docker inspect {container}"))[0]
        own = {found["Name"].lstrip("/"), found["Id"][:12]}
        return [a for a in found["NetworkSettings"]["Networks"]["kamal"].get("Aliases") or [] if a not in own]

    def cleanup(self) -> None:
        if self.containers:
            self.ssh("docker rm -f " + " ".join(self.containers), check=False)
        try:
            self.on(lambda s: self.driver.remove_app(s, self.role))
        except Exception:  # the proxy may be gone already (the remove test)
            pass


@pytest.fixture(scope="module")
def host(sandbox) -> str:
    return sandbox.hosts[-1]


@pytest.fixture
def service(sandbox, host, tmp_path, monkeypatch):
    made = Service(sandbox, tmp_path / "a", host, monkeypatch)
    made.on(lambda s: made.driver.boot(s, [Step(create_network(), check=False)]))  # as `proxy boot` does
    yield made
    made.cleanup()


def test_boot_runs_caddy_with_our_settings(service) -> None:
    found = json.loads(service.ssh(f"docker inspect {caddy.CONTAINER}"))[0]
    assert found["State"]["Running"]
    assert found["Config"]["Labels"]["kamalpy.proxy"] == "caddy"
    assert found["Config"]["Cmd"] == ["caddy", "run", "--resume", "--config", "/etc/kamalpy/caddy.json"]
    assert found["HostConfig"]["Sysctls"] == {"net.ipv4.tcp_migrate_req": "1"}
    assert found["HostConfig"]["NetworkMode"] == "kamal"
    assert found["HostConfig"]["PortBindings"]["2019/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(ADMIN_PORT)}]
    assert found["HostConfig"]["PortBindings"]["80/tcp"] == [{"HostIp": "", "HostPort": str(HTTP_PORT)}]
    assert {m.get("Name") for m in found["Mounts"]} >= {caddy.CONFIG_VOLUME, caddy.DATA_VOLUME}
    # A second boot starts what is there.
    service.on(service.driver.boot)
    assert json.loads(service.ssh(f"docker inspect {caddy.CONTAINER}"))[0]["Id"] == found["Id"]
    assert service.get(host="nothing.test")[0] == 404  # no route: 404, as kamal-proxy


def test_switch_under_load_loses_no_request_and_a_bad_release_is_refused(service) -> None:
    v1 = service.start_app("v1")
    service.deploy(v1)
    assert service.get() == (200, "v1")
    assert service.aliases(v1) == [f"{service.name}-web"]

    with Load(f"http://{service.host}:{HTTP_PORT}/version", host=service.domain, max_requests=50_000,
              max_seconds=240) as load:
        assert load.wait_for(300), "the load does not flow"
        v2 = service.start_app("v2")
        before, trips = load.requests, service.commander.executor.round_trips[service.host]
        switch = service.deploy(v2)
        # The route exists: health check, alias, second check and route read in one round trip, no load.
        assert service.commander.executor.round_trips[service.host] - trips == 1
        service.ssh(f"docker stop {v1}")  # the caller's part: the app drains on SIGTERM
        stopped = load.requests
        assert load.wait_for(max(stopped + 300, before + SWITCH_REQUESTS)), "the load ended early"
    result = load.result
    print(f"switch: deploy {switch:.2f}s, {stopped - before} requests during deploy + stop; {result.summary()}")
    assert result.failed == 0, result.summary()
    assert result.last_versions() == {"v2"}, result.summary()
    assert result.versions["v1"] and result.versions["v2"]

    # v3 never answers its health check: refused, v2 keeps serving, v3 never joins the alias.
    v3 = service.start_app("v3")
    with Load(f"http://{service.host}:{HTTP_PORT}/version", host=service.domain, max_requests=20_000,
              max_seconds=120) as load:
        with pytest.raises(HostErrors) as raised:
            service.deploy(v3)
    error = raised.value.errors[service.host]
    assert isinstance(error, BootError)
    assert str(error) == (f"{service.host}: {v3} did not become healthy within 8s "
                          f"(http://{v3}:80/up)")
    assert load.result.failed == 0, load.result.summary()
    assert set(load.result.versions) == {"v2"}
    assert f"{service.name}-web" not in service.aliases(v3)
    assert service.get() == (200, "v2")


def test_routes_by_host_and_prefix_maintenance_and_reboot(service, sandbox, host, tmp_path, monkeypatch) -> None:
    api = Service(sandbox, tmp_path / "b", host, monkeypatch, domain=service.domain, path_prefix="/api")
    try:
        web = service.start_app("v1")
        service.deploy(web)
        api_container = api.start_app("v2")
        api.deploy(api_container)
        assert service.get("/version") == (200, "v1")
        assert service.get("/api/version") == (200, "v2")  # prefix stripped, longer prefix first
        assert "<HTML>" in service.get("/apiary")[1]  # the app's own 404: /apiary is not under /api

        service.on(lambda s: service.driver.maintenance(s, service.role, message="Back soon"))
        assert service.get("/version") == (503, "Back soon")
        assert service.get("/api/version") == (200, "v2")
        service.on(lambda s: service.driver.live(s, service.role))
        assert service.get("/version") == (200, "v1")

        service.on(service.driver.reboot)  # a new container resumes the routes
        assert service.get("/version") == (200, "v1")
        assert service.get("/api/version") == (200, "v2")

        api.on(lambda s: api.driver.remove_app(s, api.role))
        api.on(lambda s: api.driver.remove_app(s, api.role))  # a missing route is no error
        status, body = service.get("/api/version")  # falls to the web route: the app's own 404
        assert status == 404 and "<HTML>" in body
    finally:
        api.cleanup()


def test_zz_remove_leaves_nothing(service) -> None:
    for step in (service.driver.remove_container, service.driver.remove_image, service.driver.remove_files):
        service.on(step)
    leftovers = service.ssh(f"docker ps -aq --filter label={caddy.LABEL}; docker volume ls -q --filter "
                            f"name=kamalpy-caddy; ls .kamal/caddy 2>/dev/null; true")
    assert leftovers.strip() == ""
    assert service.on(service.driver.details).count("\n") == 0  # the header line only
