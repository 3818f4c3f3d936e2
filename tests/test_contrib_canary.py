"""contrib/kamalpy-canary: a canary boot, installed as a third-party distribution (pip ``--target``, PYTHONPATH).

Dry runs: the canary host boots first, the watch comes next, then the other hosts; a bad ``canary:`` key is
one error line. End to end on 3 sandbox servers with the caddy driver: a good release under load loses no
request; a release whose ``/up`` is healthy but whose real requests fail (sandbox app ``v4``) is rolled back
on the canary only, and the two other hosts never switch.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import KAMALPY, Result, dry_run_environment, pip_install_target, run_kamalpy, write_project
from test_e2e_deploy_caddy import Project as CaddyProject
from test_e2e_deploy_caddy import assert_no_failure

CONTRIB = Path(__file__).resolve().parents[1] / "contrib" / "kamalpy-canary"
HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
CANARY = {"watch": 3, "path": "/version", "min_requests": 10}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return pip_install_target(CONTRIB, tmp_path_factory.mktemp("canary-dist"))


@pytest.fixture
def dry(site, tmp_path, monkeypatch):
    dry_run_environment(monkeypatch, tmp_path, version="123", name="Dee Ployer", email="d@example.com")

    def run(canary=None, *args: str, plugin: bool = True):
        config = {"service": "app", "image": "app", "servers": HOSTS, "registry": {"username": "u",
                  "password": "p"}, "builder": {"arch": "amd64"}, **({"canary": canary} if canary else {})}
        write_project(tmp_path, json.dumps(config))
        # One stream, in order: the commands (stdout) and the canary's messages (stderr).
        env = {**os.environ, "PYTHONPATH": str(site) if plugin else "", "KAMALPY_PLUGINS": ""}
        proc = subprocess.run([KAMALPY, "deploy", "-P", "--dry-run", *args], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        return Result(proc.returncode, proc.stdout, proc.stdout)

    return run


def docker_runs(out: str) -> list[str]:
    return [line.split("\t", 1)[0] for line in out.splitlines() if "docker run --detach" in line]


def test_dry_run_boots_the_canary_first_then_the_rest(dry):
    result = dry(CANARY)
    assert result.code == 0, result.err
    out = result.out
    watch = out.index(f"Watching the canary {HOSTS[0]} for 3s")
    first_run = out.index(f"{HOSTS[0]}\tdocker run --detach")
    assert first_run < watch
    assert all(out.index(f"{host}\tdocker run --detach") > watch for host in HOSTS[1:])
    assert sorted(docker_runs(out)) == HOSTS  # each host booted once
    assert "Canary passed, booting 123 on the other hosts (2)" in out


def test_two_canaries(dry):
    out = dry({**CANARY, "hosts": 2}).out
    assert f"Watching the canary {HOSTS[0]}, {HOSTS[1]} for 3s" in out
    assert out.index(f"{HOSTS[2]}\tdocker run --detach") > out.index("Watching the canary")


def stable(out: str) -> str:
    """Without what changes from run to run: times, random hostname suffixes, durations, the lock's details."""
    out = "\n".join(line for line in out.splitlines() if "lock-app/details" not in line)
    return re.sub(r"\[\d{4}-[^]]*Z\]|-[0-9a-f]{12}\b|[\d.]+ seconds", "", out)


def test_without_the_key_the_deploy_is_unchanged(dry):
    with_plugin = dry().out
    assert stable(with_plugin) == stable(dry(plugin=False).out)
    assert "canary" not in with_plugin.lower()


@pytest.mark.parametrize("canary, key", [({"max_error_rate": 2}, "max_error_rate"), ({"hosts": 0}, "hosts"),
                                         ({"wacth": 3}, "wacth"), ({"path": "version"}, "path")])
def test_bad_settings_are_one_error_line(dry, canary, key):
    result = dry(canary)
    assert result.code == 1
    lines = [line for line in result.err.strip().splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1 and lines[0].startswith("ERROR: ") and "canary" in lines[0] and key in lines[0], result.err
    assert "Traceback" not in result.err


def test_docs_describe_the_key(site, tmp_path):
    result = run_kamalpy("docs", "canary", cwd=tmp_path, env={"PYTHONPATH": str(site), "KAMALPY_PLUGINS": ""})
    assert result.code == 0, result.err
    assert "max_error_rate" in result.out


@pytest.fixture
def canary_module(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    import kamalpy_canary.plugin as module

    return module


def test_the_watch_script_counts_failed_requests_through_a_server(canary_module):
    """The shell loop the watch runs on the canary host, here against a local server: /up 200, /version 404."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            self.send_response(200 if self.path == "/up" and self.headers["Host"] == "app.test" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        script = canary_module.watch_script(base, "app.test", "/version", "/up", 0, 5)
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
    sample = canary_module.Sample.parse(done.stdout)
    assert (sample.ok, sample.health_failed) == (0, 0)
    assert sample.failed == sample.health_ok >= 5  # min_requests samples even with a watch of 0 s
    assert sample.error_rate == 0.5


# ----- end to end: 3 sandbox servers, the caddy driver, load through every proxy -----

class Project(CaddyProject):
    PREFIX = "cy"
    site: Path | None = None

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(PYTHONPATH=str(self.site), KAMALPY_PLUGINS="", **extra)


@pytest.mark.sandbox
def test_canary_good_release_then_a_bad_one_rolled_back_on_the_canary_only(project, site):
    project.site = site
    project.config["canary"] = CANARY
    project.rewrite()
    svc, canary, others = project.service, project.hosts[0], project.hosts[1:]
    project.ok("setup", "-P", "--version", "v1")
    assert project.serving() == {"v1"}

    result, loads = project.under_load("deploy", "-P", "--version", "v2")
    assert result.code == 0, result.err[-3000:]
    assert f"Watching the canary {canary}" in result.out + result.err
    assert_no_failure(loads, "v2")
    assert project.serving() == {"v2"}
    for host in project.hosts:
        assert project.running(host) == [f"{svc}-web-v2"]

    before = {host: project.containers(host) for host in others}
    result, loads = project.under_load("deploy", "-P", "--version", "v4")
    assert result.code == 1, (result.out + result.err)[-3000:]
    last = result.err.strip().splitlines()[-1]
    assert last.startswith(f"ERROR: Canary {canary} failed its watch: "), last
    assert "it runs v2 again" in last and all(host in last for host in others)
    assert project.running(canary) == [f"{svc}-web-v2"]  # v4 stopped, v2 serves again
    for host in others:
        assert project.containers(host) == before[host]  # never switched: no v4 container at all
    by_host = dict(zip(project.hosts, loads, strict=True))
    for host in others:
        assert_no_failure([by_host[host]], "v2")
    assert by_host[canary].failed > 0  # the canary did serve v4 for a while: the watch saw real failures
    assert by_host[canary].last_versions() == {"v2"}
    assert project.serving() == {"v2"}
    assert "There is no deploy lock" in (lambda r: r.out + r.err)(project.run("lock", "status"))
