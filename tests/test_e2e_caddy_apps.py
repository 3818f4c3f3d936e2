"""Several apps behind one Caddy (the caddy driver), end to end on 3 sandbox servers under load.

Two services share each server's ``kamalpy-caddy``, routed by host. Deploying app A, rolling back app B and
removing app A each lose no request of either app; removing A leaves B serving and the proxy running. A
third app that claims B's host is refused before any of its containers starts.
"""

from __future__ import annotations

import subprocess
from contextlib import contextmanager

import pytest
from test_e2e_deploy_caddy import HTTP_PORT, REQUESTS_PER_SERVER, Project, assert_no_failure

pytestmark = pytest.mark.sandbox


@pytest.fixture
def apps(sandbox, tmp_path):
    made = [Project(tmp_path / name, sandbox) for name in ("a", "b")]
    yield made
    for project in reversed(made):
        project.cleanup()


@contextmanager
def loads_on(*projects: Project, retry_stale: bool = False):
    """A load through every server's Caddy for each project (by its host); yields ``{project: [Load]}``."""
    loads = {p: p.loads(retry_stale) for p in projects}
    try:
        for started in loads.values():
            for load in started:
                assert load.wait_for(100), "the load does not flow"
        yield loads
    finally:
        for started in loads.values():
            for load in started:
                load.stop()


def during(projects: tuple[Project, ...], project: Project, *args: str, retry_stale: bool = False) -> dict:
    """Run ``args`` of ``project`` while every project is under load; ``{project: [LoadResult]}``."""
    with loads_on(*projects, retry_stale=retry_stale) as loads:
        before = {p: [load.requests for load in loads[p]] for p in projects}
        result = project.run(*args)
        assert result.code == 0, result.err[-3000:]
        for p in projects:
            for load, start in zip(loads[p], before[p], strict=True):
                load.wait_for(max(start + REQUESTS_PER_SERVER // 2, load.requests + 200))
    return {p: [load.result for load in loads[p]] for p in projects}


def status(project: Project, host: str) -> str:
    return subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {project.domain}",
                           f"http://{host}:{HTTP_PORT}/version"], capture_output=True, text=True, timeout=20).stdout


def test_two_apps_share_caddy_deploy_rollback_and_remove_independently(apps, sandbox, tmp_path):
    a, b = apps
    a.ok("setup", "-P", "--version", "v1")
    b.ok("setup", "-P", "--version", "v1")
    b.ok("deploy", "-P", "--version", "v2")
    assert (a.serving(), b.serving()) == ({"v1"}, {"v2"})

    results = during((a, b), a, "deploy", "-P", "--version", "v2")
    assert_no_failure(results[a], "v2")
    assert_no_failure(results[b], "v2")  # the app not being changed

    results = during((a, b), b, "rollback", "v1")
    assert_no_failure(results[b], "v1")
    assert_no_failure(results[a], "v2")

    # A third app claiming b's host: refused before it starts anything; a and b go on serving.
    c = Project(tmp_path / "c", sandbox)
    c.config["proxy"]["host"] = b.domain
    c.rewrite()
    result = c.run("deploy", "-P", "--version", "v1")
    assert result.code == 1
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("ERROR: ") and f"{b.domain} of web is already routed to {b.service}-web" in last, last
    for host in c.hosts:
        assert c.running(host) == []
    assert (a.serving(), b.serving()) == ({"v2"}, {"v1"})
    c.run("remove", "-y")  # its lock and files; the proxy stays (other apps)

    # Removing a's route is a Caddy config load, which closes idle keep-alive connections: the load resends
    # a GET on such a connection, as browsers and curl do (counted as retried). Deploys and rollbacks of a
    # route that exists load no config, and the loads above retry nothing.
    results = during((b,), a, "remove", "-y", retry_stale=True)
    assert_no_failure(results[b], "v1")
    assert {status(a, host) for host in a.hosts} == {"404"}
    for host in a.hosts:
        assert a.running(host) == []
        assert "kamalpy-caddy" in sandbox.docker(host, "ps", "--format", "{{.Names}}").stdout
