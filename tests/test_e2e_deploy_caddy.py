"""The zero-downtime promise, end to end on 3 sandbox servers with the caddy driver (a real proxy).

``setup`` at v1; then ``deploy`` to v2 and ``rollback`` to v1, each under a bounded load through every
server's proxy: no failed request, and every server serves the new version after. A v3 whose health
check fails: the deploy exits non-zero naming the host and the role, the running version keeps serving
with no failed request, the lock is released and the failed containers are stopped.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e_fixtures import E2EProject
from helpers import Result
from loadgen import Load

pytestmark = pytest.mark.sandbox

HTTP_PORT, HTTPS_PORT, ADMIN_PORT = 18080, 18443, 12019
REQUESTS_PER_SERVER = 2000  # at least this many through each server's proxy while a deploy runs


class Project(E2EProject):
    PREFIX = "zd"

    def __init__(self, root: Path, sandbox) -> None:
        super().__init__(root, sandbox)
        self.domain = f"{self.service}.test"
        sandbox.app_image(self.service)
        caddy_version = sandbox.images["caddy"].rsplit(":", 1)[1]
        self.config = self.sandbox_config(
            servers={"web": self.hosts}, deploy_timeout=15, env={"secret": ["DB_PASSWORD"]},
            proxy={"driver": "caddy", "host": self.domain,
                   "run": {"registry": sandbox.registry, "repository": "caddy", "version": caddy_version,
                           "http_port": HTTP_PORT, "https_port": HTTPS_PORT},
                   "caddy": {"admin_port": ADMIN_PORT}})  # the health probe: curl on the server
        self.write()
        (root / ".kamal").mkdir()
        (root / ".kamal" / "secrets").write_text("DB_PASSWORD=zero-downtime\n")
        self.git_init()

    def rewrite(self) -> None:
        """``config/deploy.yml`` from :attr:`config` again, committed (the commit is the version)."""
        self.write()
        git = ["git", "-C", str(self.root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "config"], check=True)

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

    def cleanup(self) -> None:
        self.run("remove", "-y")
        self.run("proxy", "remove", "--force")  # the Caddy proxy (proxy.driver: caddy), this module's own
        super().cleanup()


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
