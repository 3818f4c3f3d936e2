"""The fault matrix (docs/failures.md), end to end on 3 sandbox servers under load with the caddy driver.

One project is set up once (v1); each test then deploys the other version while a fault hits one server
(the third), under load through every server's proxy, and checks: the exit status and the last line name
the server and the step; the deploy lock is as docs/failures.md says; the servers not yet switched keep
serving the old version with no failed request; once the fault is cleared, the same deploy succeeds.

The faults are made from the outside, as they happen: iptables in the server's network namespace, its
sshd or dockerd killed and started again in its namespaces, a full filesystem under its Docker data-root,
the registry refusing connections, the deploying process killed.
"""

from __future__ import annotations

import io
import os
import secrets
import signal
import subprocess
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import KAMALPY, Result
from loadgen import Load
from test_e2e_deploy_caddy import HTTP_PORT, Project

pytestmark = pytest.mark.sandbox

HOOK = """#!/bin/sh
# The test's fault, made from inside the deploy at this hook (after the pull, under the deploy lock).
if [ -n "$FAULT" ] && [ "$(basename "$0")" = "${FAULT_IN:-pre-app-boot}" ]; then sh -c "$FAULT"; fi
exit 0
"""
RUN_TIMEOUT = 100  # seconds: a deploy that hangs longer than this on a fault is a failure
FAT = "fat"  # a version with a layer of its own (v2 shares every layer with v1): its pull writes to disk


class Matrix(Project):
    """The caddy project with a fault hook; ``current`` is the version every server serves."""

    def __init__(self, root: Path, sandbox) -> None:
        super().__init__(root, sandbox)
        hooks = root / ".kamal" / "hooks"
        hooks.mkdir(parents=True, exist_ok=True)
        for name in ("pre-app-boot", "pre-connect"):
            (hooks / name).write_text(HOOK)
            (hooks / name).chmod(0o755)
        self.current = "v1"
        self.faulty = self.hosts[2]
        self.server = sandbox.server(self.faulty)

    def other(self) -> str:
        return "v2" if self.current == "v1" else "v1"

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen([KAMALPY, *args], cwd=self.root, env={**os.environ, "KAMAL_LOCK": "false", **env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def finish(self, proc: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> Result:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"kamalpy still ran after {timeout}s: {err[-1500:]}")
        assert "Traceback" not in out + err, err
        return Result(proc.returncode, out, err)

    def deploy_under_load(self, version: str, hosts: list[str] | None = None, during=None,
                          timeout: float = RUN_TIMEOUT, **env: str) -> tuple[Result, list]:
        """``deploy -P --version VERSION`` while ``hosts`` (default: all) are under load; ``during(proc)``
        runs while it does. The loads stop a moment after the deploy ends."""
        loads = [Load(f"http://{host}:{HTTP_PORT}/version", host=self.domain, max_requests=200_000,
                      max_seconds=RUN_TIMEOUT * 2).start() for host in (hosts or self.hosts)]
        try:
            for load in loads:
                assert load.wait_for(50), "the load does not flow"
            proc = self.start("deploy", "-P", "--version", version, **env)
            if during is not None:
                during(proc)
            result = self.finish(proc, timeout)
            for load in loads:
                load.wait_for(load.requests + 100)
        finally:
            results = [load.stop() for load in loads]
        return result, results

    def lock_held(self) -> bool:
        result = self.run("lock", "status")
        return "There is no deploy lock" not in result.out + result.err

    def rerun(self, version: str) -> None:
        """The same deploy once the fault is cleared: it succeeds and every server serves ``version``."""
        result, loads = self.deploy_under_load(version)
        assert result.code == 0, result.err[-3000:]
        for load in loads:
            assert load.failed == 0, load.summary()
        self.current = "v2" if version == FAT else version
        assert self.serving() == {self.current}

    # --- the server's own processes, in its namespaces ---

    def pids(self, program: str) -> list[int]:
        found = []
        for pid in subprocess.run(["ip", "netns", "pids", self.server["netns"]], capture_output=True,
                                  text=True).stdout.split():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == program:
                    found.append(int(pid))
            except OSError:
                continue
        return found

    def in_server(self, *command: str) -> subprocess.CompletedProcess:
        """``command`` in the server's network, mount and UTS namespaces (as its dockerd and sshd run)."""
        anchor = self.pids("dockerd") or self.pids("sshd")
        return subprocess.run(["nsenter", "-t", str(anchor[0]), "-n", "-m", "-u", *command],
                              capture_output=True, text=True, timeout=60)

    def stop(self, program: str) -> None:
        """``program`` (sshd: with every session; dockerd) gone from the server, as a crash or a stop does."""
        for pid in self.pids(program):
            os.kill(pid, signal.SIGKILL if program == "sshd" else signal.SIGTERM)
        deadline = time.monotonic() + 60
        while self.pids(program):
            assert time.monotonic() < deadline, f"{program} does not stop"
            time.sleep(0.2)

    def start_again(self, program: str) -> None:
        sdir = self.server["dir"]
        anchor = (self.pids("dockerd") or self.pids("sshd"))[0]
        enter = ["nsenter", "-t", str(anchor), "-n", "-m", "-u"]
        if program == "sshd":
            subprocess.run([*enter, "/usr/sbin/sshd", "-f", f"{sdir}/sshd_config", "-E", f"{sdir}/sshd.log"],
                           check=True, timeout=30)
        else:
            with open(f"{sdir}/dockerd.log", "ab") as log:
                subprocess.Popen([*enter, "setsid", "dockerd", "--config-file", f"{sdir}/daemon.json"],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 90
        while not self.answers(program):
            assert time.monotonic() < deadline, f"{program} does not come back"
            time.sleep(0.5)

    def answers(self, program: str) -> bool:
        if program == "sshd":
            return self.sandbox.ssh(self.faulty, "true", check=False).returncode == 0
        return self.sandbox.docker(self.faulty, "info", check=False).returncode == 0


@pytest.fixture(scope="module")
def matrix(sandbox, tmp_path_factory):
    matrix = Matrix(tmp_path_factory.mktemp("faults"), sandbox)
    matrix.ok("setup", "-P", "--version", "v1")
    assert matrix.serving() == {"v1"}
    yield matrix
    matrix.cleanup()


@pytest.fixture
def healthy(matrix):
    """After each test: every server answers again, whatever the test left broken."""
    yield matrix
    for program in ("sshd", "dockerd"):
        if not matrix.answers(program):
            matrix.start_again(program)
    if matrix.lock_held():
        matrix.run("lock", "release")


def last_line(result: Result) -> str:
    line = result.err.strip().splitlines()[-1]
    print(f"\n{line}")  # what the user sees (docs/failures.md quotes it): shown with -s
    return line


def assert_served_without_failure(loads: list, versions: set[str]) -> None:
    for load in loads:
        assert load.failed == 0, load.summary()
        assert load.last_versions() <= versions, load.summary()


def assert_not_switched(matrix: Matrix, old: str, new: str) -> None:
    """The faulty server still serves the old version; the others serve the old or the new one."""
    def get(host: str) -> str:
        return subprocess.run(["curl", "-s", "--max-time", "10", "-H", f"Host: {matrix.domain}",
                               f"http://{host}:{HTTP_PORT}/version"], capture_output=True, text=True).stdout.strip()

    assert get(matrix.faulty) == old
    assert {get(host) for host in matrix.hosts[:2]} <= {old, new}


# --- the faults --------------------------------------------------------------------------------------

def test_packets_to_one_server_dropped_mid_deploy(healthy):
    matrix = healthy
    old, new = matrix.current, matrix.other()
    rule = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP"]  # SSH only: its proxy keeps serving
    drop = f"ip netns exec {matrix.server['netns']} iptables -I {' '.join(rule)}"
    try:
        # The liveness check finds a silent server within 30 s; the rest of the deploy takes less than 45 s.
        result, loads = matrix.deploy_under_load(new, timeout=75, FAULT=drop)
    finally:
        subprocess.run(["ip", "netns", "exec", matrix.server["netns"], "iptables", "-D", *rule], check=False)
    assert result.code == 1
    assert matrix.faulty in last_line(result) and "Failed to boot web" in last_line(result), last_line(result)
    assert not matrix.lock_held()
    assert_served_without_failure(loads, {old, new})
    assert_not_switched(matrix, old, new)
    matrix.rerun(new)


def test_sshd_stopped_on_one_server_mid_deploy(healthy):
    matrix = healthy
    old, new = matrix.current, matrix.other()
    # The listener and every session (the deploy's connection too): the server is unreachable over SSH.
    kill = (f"for p in $(ip netns pids {matrix.server['netns']}); do "
            "[ \"$(cat /proc/$p/comm 2>/dev/null)\" = sshd ] && kill -9 $p; done; true")
    result, loads = matrix.deploy_under_load(new, FAULT=kill)
    assert result.code == 1
    assert matrix.faulty in last_line(result) and "Failed to boot web" in last_line(result), last_line(result)
    assert not matrix.lock_held()
    assert_served_without_failure(loads, {old, new})
    assert_not_switched(matrix, old, new)
    matrix.start_again("sshd")
    matrix.rerun(new)


def test_dockerd_stopped_on_one_server_mid_deploy(healthy):
    matrix = healthy
    old, new = matrix.current, matrix.other()
    dockerd = " ".join(str(pid) for pid in matrix.pids("dockerd"))
    # Its containers stop with it (no live-restore): that server serves nothing until Docker is back,
    # so the load runs through the two others.
    result, loads = matrix.deploy_under_load(new, hosts=matrix.hosts[:2],
                                             FAULT=f"kill {dockerd}; while kill -0 {dockerd} 2>/dev/null; "
                                                   "do sleep 0.2; done")
    assert result.code == 1
    assert matrix.faulty in last_line(result) and "Failed to boot web" in last_line(result), last_line(result)
    assert not matrix.lock_held()
    assert_served_without_failure(loads, {old, new})
    matrix.start_again("dockerd")  # the restart policy brings the proxy and the old version back
    deadline = time.monotonic() + 60
    while True:
        try:
            assert_not_switched(matrix, old, new)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the old version does not come back with Docker"
            time.sleep(1)
    matrix.rerun(new)


def build_fat_image(matrix: Matrix) -> None:
    """``<repository>:fat``: v2 plus a 512 KiB layer of its own, so that pulling it writes to the disk."""
    from kamalpy.builtin_plugins.sandbox import hostdocker

    sandbox = matrix.sandbox
    env = (hostdocker.client_env(sandbox.spec) if hostdocker.trusts(sandbox.spec) else sandbox.docker_env(1))
    tag = f"{sandbox.registry}/{matrix.service}:{FAT}"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", f"FROM {sandbox.registry}/{matrix.service}:v2\nCOPY blob /blob\n".encode()),
                           ("blob", secrets.token_bytes(512 * 1024))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=context.getvalue(), env=env, check=True,
                   capture_output=True, timeout=300)
    subprocess.run(["docker", "push", "-q", tag], env=env, check=True, capture_output=True, timeout=300)
    subprocess.run(["docker", "image", "rm", tag], env=env, check=False, capture_output=True)


@contextmanager
def full_disk(matrix: Matrix):
    """The filesystem Docker downloads layers to (``<data-root>/tmp``) is full on the faulty server."""
    tmp = f"{matrix.server['dir']}/docker/tmp"
    mount = matrix.in_server("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", tmp)
    assert mount.returncode == 0, mount.stderr
    try:
        matrix.in_server("sh", "-c", f"cat /dev/zero > {tmp}/fill 2>/dev/null; df -h {tmp}")
        yield
    finally:
        matrix.in_server("umount", "-l", tmp)


def test_disk_full_on_one_server_during_the_pull(healthy):
    matrix = healthy
    old = matrix.current
    build_fat_image(matrix)
    with full_disk(matrix):
        result, loads = matrix.deploy_under_load(FAT)
    assert result.code == 1
    line = last_line(result)
    assert matrix.faulty in line and "docker pull" in line and "no space left on device" in line, line
    assert not matrix.lock_held()  # the pull comes before the lock
    assert_served_without_failure(loads, {old})
    assert matrix.serving() == {old}
    matrix.rerun(FAT)


def test_registry_down_before_the_pull(healthy):
    matrix = healthy
    old, new = matrix.current, matrix.other()
    spec = matrix.sandbox.spec
    rule = ["INPUT", "-i", spec.bridge, "-p", "tcp", "--dport", spec.registry.rsplit(":", 1)[1],
            "-j", "REJECT", "--reject-with", "tcp-reset"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        result, loads = matrix.deploy_under_load(new)
    finally:
        subprocess.run(["iptables", "-D", *rule], check=False)
    assert result.code == 1
    line = last_line(result)
    assert any(host in line for host in matrix.hosts) and spec.registry in line, line
    assert "docker login" in line or "docker pull" in line, line
    assert not matrix.lock_held()
    assert_served_without_failure(loads, {old})
    assert matrix.serving() == {old}
    matrix.rerun(new)


def test_deploy_killed_mid_boot_then_lock_release_and_redeploy(healthy):
    matrix = healthy
    old, new = matrix.current, matrix.other()
    first = matrix.hosts[0]

    def kill_when_booting(proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while not [n for n in matrix.running(first) if n.endswith(f"-{new}")]:
            assert time.monotonic() < deadline and proc.poll() is None, "the boot never started"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)

    result, loads = matrix.deploy_under_load(new, during=kill_when_booting)
    assert result.code == -signal.SIGKILL
    assert matrix.lock_held()  # a killed process releases nothing
    assert_served_without_failure(loads, {old, new})
    # The next deploy stops at the lock, changes nothing, and says how to clear it.
    again = matrix.run("deploy", "-P", "--version", new)
    assert again.code == 1
    line = last_line(again)
    assert line.startswith("ERROR: Deploy lock found. Run 'kamalpy lock help' for more information"), line
    assert "kamalpy lock release" in line
    matrix.ok("lock", "release")
    matrix.rerun(new)
