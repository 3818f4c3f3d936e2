"""End to end on the sandbox: the deploy lock between deploys started together, and SIGTERM/SIGHUP.

Two deploys of two fresh versions start together, 20 times: exactly one runs; the other ends with
Kamal's "Deploy lock found" (found by the read-only check before its pull, or by the lock's ``mkdir``
when both passed the check together) and changed no server: it ran no command but the check, the
login, the mirror query, the pull (with its audit line and label check) and the lock's own commands;
no container of its version exists; no image of the versions in play was removed; the proxy got
exactly one deploy's calls.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.request

import pytest
from helpers import KAMALPY
from test_e2e_deploy import Project

pytestmark = pytest.mark.sandbox

TRIES = int(os.environ.get("KAMALPY_LOCK_TRIES", "20"))  # the 20; fewer for a quick local run
FOUND = "Deploy lock found. Run 'kamalpy lock help' for more information"
# What a deploy that does not get the lock may run on a server (none of it changes a server).
HARMLESS = (r"test ! -d \.kamal/lock-", r"docker login ", r"docker info --format ",
            r"mkdir -p \.kamal && echo .* Pulled image with version .*>> \.kamal/\S+-audit\.log$",
            r"docker pull ", r"docker inspect -f '\{\{ \.Config\.Labels\.service \}\}' ",
            r"mkdir -p \.kamal$", r"mkdir \.kamal/lock-\S+ && echo ", r"stat \.kamal/lock-\S+ > /dev/null && ")
RUNNING = re.compile(r"^\s*(?:INFO|DEBUG) \[\w+\] Running (?:/usr/bin/env )?(.*) on (\S+)$")


@pytest.fixture
def project(sandbox, tmp_path):
    project = Project(tmp_path, sandbox)
    yield project
    project.cleanup()


def retag(sandbox, repository: str, source: str, target: str) -> None:
    """``repository:target`` in the sandbox registry, the same manifest as ``:source`` (no build, no push)."""
    name = repository.split("/", 1)[1]
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    headers = {"Accept": accept}
    if sandbox.registry_auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(sandbox.registry_auth).encode()).decode()
    base = f"http://{sandbox.registry}/v2/{name}/manifests"
    with urllib.request.urlopen(urllib.request.Request(f"{base}/{source}", headers=headers), timeout=30) as got:
        manifest, kind = got.read(), got.headers["Content-Type"]
    put = urllib.request.Request(f"{base}/{target}", data=manifest, method="PUT",
                                 headers={**headers, "Content-Type": kind})
    urllib.request.urlopen(put, timeout=30).close()


def commands_run(output: str) -> list[tuple[str, str]]:
    """(command, host) of every remote command a kamalpy run announced (``-v``)."""
    return [(m.group(1), m.group(2)) for m in map(RUNNING.match, output.splitlines())
            if m and m.group(2) != "locally"]


def image_removals(project: Project, host: str, since: float, tags: set[str]) -> list[str]:
    """``untag``/``delete`` events on ``host`` since ``since`` for any of ``tags`` (``repo:version``)."""
    out = project.sandbox.docker(host, "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                                 "--filter", "type=image", "--format", "{{json .}}").stdout
    found = []
    for line in out.splitlines():
        event = json.loads(line)
        name = event.get("Actor", {}).get("Attributes", {}).get("name", "") or event.get("id", "")
        if event.get("Action") in ("untag", "delete") and name in tags:
            found.append(f"{event['Action']} {name}")
    return found


def test_two_deploys_started_together_one_runs_the_other_finds_the_lock_and_changes_nothing(project, tmp_path):
    svc, sandbox = project.service, project.sandbox
    # Fresh versions for every deploy, so that the loser's version has no container of its own to keep.
    versions = [(f"t{i}a", f"t{i}b") for i in range(TRIES)]
    for i, pair in enumerate(versions):
        for j, version in enumerate(pair):
            retag(sandbox, project.repository, f"v{1 + (i + j) % 3}", version)
    project.ok("deploy", "-P", "--version", "v1")
    calls = {host: len(project.proxy_calls(host)) for host in project.web}
    project.ok("deploy", "-P", "--version", "v2")
    per_deploy = {host: len(project.proxy_calls(host)) - calls[host] for host in project.web}
    current = "v2"
    env = {**os.environ, **project.env(HOOK_SLEEP="1", HOOK_SLEEP_IN="pre-deploy")}
    paths = {"check": 0, "mkdir": 0}
    for pair in versions:
        calls = {host: len(project.proxy_calls(host)) for host in project.web}
        since = time.time() - 1
        procs = {}
        for n, version in enumerate(pair):
            if n:
                time.sleep(random.uniform(0, 1.5))  # sometimes the check finds the lock, sometimes the mkdir
            # Output to files: -v says a lot, and a full pipe would stall a deploy that holds the lock.
            out, err = (tmp_path / f"{version}.{name}" for name in ("out", "err"))
            with out.open("w") as stdout, err.open("w") as stderr:
                procs[version] = (subprocess.Popen([KAMALPY, "-v", "deploy", "-P", "--version", version],
                                                   cwd=project.root, env=env, stdout=stdout, stderr=stderr), out, err)
        done = {version: (proc.wait(timeout=150), out.read_text(), err.read_text())
                for version, (proc, out, err) in procs.items()}
        winners = [v for v, (code, _, _) in done.items() if code == 0]
        assert len(winners) == 1, {v: (code, err[-1500:]) for v, (code, _, err) in done.items()}
        [winner], [loser] = winners, [v for v in pair if v not in winners]
        code, out, err = done[loser]
        last = err.strip().splitlines()[-1]
        assert code == 1 and last.startswith(f"ERROR: {FOUND}") and "kamalpy lock release" in last, err[-2000:]
        assert "Deploy lock already in place!" in err
        paths["mkdir" if re.search(r"Running /usr/bin/env mkdir \.kamal/lock-", err) else "check"] += 1
        # The loser ran nothing that changes a server ...
        for command, host in commands_run(out + err):
            assert any(re.match(pattern, command) for pattern in HARMLESS), (host, command)
        # ... and the servers show only the winner's deploy.
        for host in project.hosts:
            names = project.containers(host)
            assert not [n for n in names if f"-{loser}" in n], names
            assert [n for n in project.running(host)] == [f"{svc}-{role}-{winner}" for role in
                                                          (["web"] if host in project.web else ["workers"])]
            tags = {f"{project.repository}:{v}" for v in (winner, loser, current)}
            assert image_removals(project, host, since, tags) == []
            audit = project.ssh(host, f"cat .kamal/{svc}-audit.log")
            assert [line for line in audit.splitlines() if loser in line and "Pulled image" not in line] == []
        for host in project.web:
            assert len(project.proxy_calls(host)) - calls[host] == per_deploy[host]
        assert "There is no deploy lock" in (lambda r: r.out + r.err)(project.run("lock", "status"))
        current = winner
    print(f"losers stopped by the read-only check: {paths['check']}, by the lock's mkdir: {paths['mkdir']}")


def _default_signals() -> None:
    """The child takes SIGTERM/SIGHUP as a terminal would deliver them, even if this run ignores them (nohup):
    kamalpy leaves a signal ignored at its start ignored."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_release_the_lock_as_ctrl_c_does(project, signum):
    project.ok("deploy", "-P", "--version", "v1")
    project.hook_log.unlink()
    env = {**os.environ, **project.env(HOOK_SLEEP="30", HOOK_SLEEP_IN="pre-deploy")}
    proc = subprocess.Popen([KAMALPY, "deploy", "-P", "--version", "v2"], cwd=project.root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_signals)
    deadline = time.monotonic() + 60
    while "pre-deploy" not in (project.hook_log.read_text() if project.hook_log.exists() else ""):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signum)  # the kamalpy process only (a service manager's stop, a closed terminal)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert err.strip().splitlines()[-1] == f"ERROR: Terminated by {signal.Signals(signum).name}"
    assert "Releasing the deploy lock..." in err
    assert "There is no deploy lock" in (lambda r: r.out + r.err)(project.run("lock", "status"))
    for host in project.web:
        assert project.running(host) == [f"{project.service}-web-v1"]
