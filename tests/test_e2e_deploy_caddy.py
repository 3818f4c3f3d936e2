"""The zero-downtime promise, end to end on 3 sandbox servers with the caddy driver (a real proxy).

``setup`` at v1; then ``deploy`` to v2 and ``rollback`` to v1, each under a bounded load through every
server's proxy: no failed request, and every server serves the new version after. A v3 whose health
check fails: the deploy exits non-zero naming the host and the role, the running version keeps serving
with no failed request, the lock is released and the failed containers are stopped.
"""

from __future__ import annotations

import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from helpers import Result, run_kamalpy
from loadgen import Load

pytestmark = pytest.mark.sandbox

HTTP_PORT, HTTPS_PORT, ADMIN_PORT = 18080, 18443, 12019
REQUESTS_PER_SERVER = 2000  # at least this many through each server's proxy while a deploy runs


class Project:
    def __init__(self, root: Path, sandbox) -> None:
        self.root, self.sandbox = root, sandbox
        self.service = f"zd{secrets.token_hex(3)}"
        self.domain = f"{self.service}.test"
        self.hosts = list(sandbox.hosts)[:3]
        sandbox.app_image(self.service)
        caddy_version = sandbox.images["caddy"].rsplit(":", 1)[1]
        self.config = {
            "service": self.service, "image": self.service, **yaml.safe_load(sandbox.deploy_yml()),
            "servers": {"web": self.hosts}, "builder": {"arch": "amd64"}, "deploy_timeout": 15,
            "env": {"secret": ["DB_PASSWORD"]},
            "proxy": {"driver": "caddy", "host": self.domain,
                      "run": {"registry": sandbox.registry, "repository": "caddy", "version": caddy_version,
                              "http_port": HTTP_PORT, "https_port": HTTPS_PORT},
                      "caddy": {"admin_port": ADMIN_PORT}}}  # the health probe: curl on the server
        (root / "config").mkdir(parents=True)
        (root / ".kamal").mkdir()
        (root / ".kamal" / "secrets").write_text("DB_PASSWORD=zero-downtime\n")
        subprocess.run(["git", "-C", str(root), "init", "-q"], check=True)
        self.write()

    def write(self) -> None:
        """``config/deploy.yml`` from :attr:`config`, committed."""
        (self.root / "config" / "deploy.yml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        git = ["git", "-C", str(self.root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "config", "--allow-empty"], check=True)

    def run(self, *args: str) -> Result:
        result = run_kamalpy(*args, cwd=self.root, env={"KAMAL_LOCK": "false"})
        assert "Traceback" not in result.out + result.err, result.err
        return result

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.code == 0, result.err[-3000:]
        return result

    def loads(self, retry_stale: bool = False) -> list[Load]:
        """A load through each server's proxy; ``retry_stale``: see :class:`loadgen.Load`."""
        return [Load(f"http://{host}:{HTTP_PORT}/version", host=self.domain, max_requests=200_000,
                     max_seconds=240, retry_stale=retry_stale).start() for host in self.hosts]

    def under_load(self, *args: str) -> tuple[Result, list]:
        """Run a kamalpy command while every server's proxy is under load; the loads' results."""
        loads = self.loads()
        try:
            for load in loads:
                assert load.wait_for(100), "the load does not flow"
            before = [load.requests for load in loads]
            result = self.run(*args)
            # At least REQUESTS_PER_SERVER during the command, then a little more on the new version.
            for load, start in zip(loads, before, strict=True):
                load.wait_for(max(start + REQUESTS_PER_SERVER, load.requests + 200))
                assert load.requests - start >= REQUESTS_PER_SERVER
        finally:
            results = [load.stop() for load in loads]
        return result, results

    def serving(self) -> set[str]:
        def get(host: str) -> str:
            return subprocess.run(["curl", "-s", "-H", f"Host: {self.domain}", f"http://{host}:{HTTP_PORT}/version"],
                                  capture_output=True, text=True, timeout=20).stdout.strip()

        with ThreadPoolExecutor(len(self.hosts)) as pool:
            return set(pool.map(get, self.hosts))

    def running(self, host: str) -> list[str]:
        out = self.sandbox.docker(host, "ps", "--filter", f"label=service={self.service}",
                                  "--format", "{{.Names}}").stdout
        return sorted(out.split())

    def cleanup(self) -> None:
        self.run("remove", "-y")
        self.run("proxy", "remove", "--force")
        for host in self.hosts:
            self.sandbox.ssh(host, f"rm -rf .kamal/lock-{self.service} .kamal/apps/{self.service}", check=False)


@pytest.fixture
def project(sandbox, tmp_path):
    project = Project(tmp_path, sandbox)
    yield project
    project.cleanup()


def assert_no_failure(results: list, version: str) -> None:
    for result in results:
        assert result.failed == 0, result.summary()
        assert result.last_versions() == {version}, result.summary()


def test_deploy_and_rollback_lose_no_request_and_a_bad_release_keeps_the_old_one(project):
    svc = project.service
    project.ok("setup", "-P", "--version", "v1")
    assert project.serving() == {"v1"}

    result, loads = project.under_load("deploy", "-P", "--version", "v2")
    assert result.code == 0, result.err[-3000:]
    assert_no_failure(loads, "v2")
    assert project.serving() == {"v2"}
    for host in project.hosts:
        assert project.running(host) == [f"{svc}-web-v2"]

    result, loads = project.under_load("rollback", "v1")
    assert result.code == 0, result.err[-3000:]
    assert_no_failure(loads, "v1")
    assert project.serving() == {"v1"}

    result, loads = project.under_load("deploy", "-P", "--version", "v3")
    assert result.code == 1
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("ERROR: ") and "Failed to boot web" in last
    assert any(host in last for host in project.hosts)
    assert_no_failure(loads, "v1")
    assert project.serving() == {"v1"}
    for host in project.hosts:
        assert project.running(host) == [f"{svc}-web-v1"]  # v3 stopped
    assert "There is no deploy lock" in (lambda r: r.out + r.err)(project.run("lock", "status"))
