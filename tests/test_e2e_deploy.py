"""End to end on 3 sandbox servers: ``setup``, ``deploy``, ``rollback``, ``remove`` with the kamal-proxy driver.

The proxy is the kamal-proxy STAND-IN (docs/sandbox.md): it records the calls it receives and succeeds
without routing, so these tests check what kamalpy does on the servers and what it asks of kamal-proxy
(Kamal's exact calls); zero-downtime under load is checked with the caddy driver (test_e2e_deploy_caddy.py).
Images: the sandbox app labelled for each test's service (``sandbox.app_image``), deployed with ``-P``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from e2e_fixtures import E2EProject
from helpers import KAMALPY

pytestmark = pytest.mark.sandbox

SECRET = 's3cr3t-Ω "dq" $HOME'  # single-quoted in .kamal/secrets: taken as it is
CALLS_LOG = "/home/kamal-proxy/.config/kamal-proxy/calls.log"  # where the stand-in records its calls
HOOKS = ("pre-connect", "docker-setup", "pre-deploy", "pre-app-boot", "post-app-boot", "post-deploy",
         "pre-build", "pre-proxy-reboot", "post-proxy-reboot")
HOOK_SCRIPT = """#!/bin/sh
name=$(basename "$0")
echo "$name|$KAMAL_COMMAND|$KAMAL_HOSTS|$KAMAL_LOCK|${KAMAL_RUNTIME:-}|${DB_PASSWORD:+has-secret}" >> "$HOOK_LOG"
if [ -n "$HOOK_SLEEP" ] && [ "$name" = "$HOOK_SLEEP_IN" ]; then sleep "$HOOK_SLEEP"; fi
if [ -n "$HOOK_RUN" ] && [ "$name" = "$HOOK_RUN_IN" ]; then sh -c "$HOOK_RUN"; fi
"""


class Project(E2EProject):
    """A kamalpy project for the sandbox: web on servers 1-2 (proxied), workers on server 3 (no proxy)."""

    PREFIX = "dp"
    SECRETS = (SECRET,)

    def __init__(self, root: Path, sandbox) -> None:
        super().__init__(root, sandbox)
        self.repository = sandbox.app_image(self.service)
        self.web, self.workers = self.hosts[:2], self.hosts[2:3]
        self.config = self.sandbox_config(
            servers={"web": self.web, "workers": {"hosts": self.workers, "cmd": "/bin/sh /usr/local/bin/app-start"}},
            proxy={"run": {"registry": sandbox.registry}},
            env={"clear": {"PLAIN": "visible"}, "secret": ["DB_PASSWORD"]}, readiness_delay=1, deploy_timeout=10)
        (root / ".kamal" / "hooks").mkdir(parents=True)
        (root / ".kamal" / "secrets").write_text(f"DB_PASSWORD='{SECRET}'\n")
        for hook in HOOKS:
            path = root / ".kamal" / "hooks" / hook
            path.write_text(HOOK_SCRIPT)
            path.chmod(0o755)
        self.hook_log = root / "hooks.log"
        self.write()
        self.git_init()  # commands without --version take the commit as version

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(HOOK_LOG=str(self.hook_log), **extra)

    def proxy_calls(self, host: str) -> list[str]:
        return self.ssh(host, f"docker exec kamal-proxy cat {CALLS_LOG}").splitlines()

    def hooks_fired(self) -> list[list[str]]:
        return [line.split("|") for line in self.hook_log.read_text().splitlines()] if self.hook_log.exists() else []


def kamal_proxy_deploy(service: str, container_id: str) -> str:
    """kamal-proxy's arguments for a role with Kamal's default proxy settings (what the stand-in records)."""
    return (f"deploy {service} --target={container_id}:80 --deploy-timeout=10s --drain-timeout=30s "
            "--buffer-requests --buffer-responses --log-request-header=Cache-Control "
            "--log-request-header=Last-Modified --log-request-header=User-Agent")


def container_id(project: Project, host: str, name: str) -> str:
    return project.sandbox.docker(host, "container", "ls", "--all", "--filter", f"name=^{name}$",
                                  "--quiet").stdout.strip()


def test_setup_deploy_rollback_remove(project):
    svc = project.service
    result = project.ok("setup", "-P", "--version", "v1")
    assert "Finished all in" in result.err
    for host in project.web:
        assert project.running(host) == [f"{svc}-web-v1"]
        env_file = f".kamal/apps/{svc}/env/roles/web.env"
        assert project.ssh(host, f"stat -c %a {env_file}").strip() == "600"
        assert SECRET in project.ssh(host, f"cat {env_file}")
        assert SECRET in project.ssh(host, f"docker exec {svc}-web-v1 sh -c 'echo \"$DB_PASSWORD\"'")
        assert project.proxy_calls(host)[-1] == kamal_proxy_deploy(f"{svc}-web",
                                                                   container_id(project, host, f"{svc}-web-v1"))
    assert project.running(project.workers[0]) == [f"{svc}-workers-v1"]
    fired = project.hooks_fired()
    assert [f[0] for f in fired] == ["pre-connect", "docker-setup", "pre-deploy", "pre-app-boot",
                                     "post-app-boot", "post-deploy"]
    by_name = {f[0]: f for f in fired}
    assert by_name["pre-deploy"][5] == "has-secret" and by_name["post-deploy"][5] == "has-secret"
    assert by_name["pre-app-boot"][5] == ""  # Kamal passes secrets to pre-connect and pre/post-deploy only
    assert by_name["pre-deploy"][1] == "setup" and by_name["pre-deploy"][3] == "true"
    assert by_name["post-deploy"][4].isdigit()  # KAMAL_RUNTIME
    assert set(by_name["pre-app-boot"][2].split(",")) == set(project.hosts)

    project.hook_log.unlink()
    project.ok("deploy", "-P", "--version", "v2")
    assert [f[0] for f in project.hooks_fired()] == ["pre-connect", "pre-deploy", "pre-app-boot", "post-app-boot",
                                                     "post-deploy"]
    for host in project.web:
        assert project.running(host) == [f"{svc}-web-v2"]
        assert project.containers(host)[f"{svc}-web-v1"] == "exited"  # stopped, not removed
        assert project.proxy_calls(host)[-1] == kamal_proxy_deploy(f"{svc}-web",
                                                                   container_id(project, host, f"{svc}-web-v2"))
        audit = project.ssh(host, f"cat .kamal/{svc}-audit.log")
        for line in ("Pulled image with version v2", "[web] Booted app version v2",
                     f"Tagging {project.repository}:v2 as the latest image", "Pruned containers", "Pruned images"):
            assert line in audit, line
        # Tagged latest for `app boot` without a version.
        assert project.sandbox.docker(host, "image", "inspect", f"{project.repository}:latest").returncode == 0
    assert project.running(project.workers[0]) == [f"{svc}-workers-v2"]

    listed = project.ok("rollback")
    assert "v1" in listed.out and "v2" in listed.out

    project.ok("rollback", "v1")
    for host in project.web:
        assert project.running(host) == [f"{svc}-web-v1"]
        names = project.containers(host)
        assert any(re.fullmatch(rf"{svc}-web-v1_replaced_[0-9a-f]{{16}}", n) for n in names), names
    missing = project.run("rollback", "v9")
    assert missing.code == 1 and "The app version 'v9' is not available as a container" in missing.err

    project.ok("remove", "-y")
    for host in project.hosts:
        assert project.containers(host) == {}
        assert project.ssh(host, f"ls -d .kamal/apps/{svc} 2>/dev/null") == ""
        images = project.sandbox.docker(host, "image", "ls", project.repository, "--quiet").stdout
        assert images.strip() == ""


def test_dry_run_deploy_touches_nothing_and_hides_the_secret(project):
    result = project.ok("deploy", "-P", "--version", "v1", "--dry-run")
    assert f"upload .kamal/apps/{project.service}/env/roles/web.env mode 0600" in result.out
    assert "docker exec kamal-proxy kamal-proxy deploy" in result.out
    assert SECRET not in result.out  # the env file's content goes on stdin, on no command line
    for host in project.hosts:
        assert project.containers(host) == {}


def test_two_deploys_at_once_one_waits_for_nothing_and_fails_on_the_lock(project):
    project.ok("deploy", "-P", "--version", "v1")
    env = {**os.environ, **project.env(HOOK_SLEEP="4", HOOK_SLEEP_IN="pre-deploy")}
    first = subprocess.Popen([KAMALPY, "deploy", "-P", "--version", "v2"], cwd=project.root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = f".kamal/lock-{project.service}"
    primary = project.web[0]
    deadline = time.monotonic() + 60
    while project.ssh(primary, f"test -d {lock} && echo held").strip() != "held":
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.2)
    second = project.run("deploy", "-P", "--version", "v2")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-2000:]
    assert second.code == 1
    assert "Deploy lock found. Run 'kamalpy lock help' for more information" in second.err
    assert "Deploy lock already in place!" in second.err
    assert project.ssh(primary, f"test -d {lock} && echo held").strip() == ""
    for host in project.web:
        assert project.running(host) == [f"{project.service}-web-v2"]


def test_a_container_that_exits_at_once_fails_the_deploy_and_the_old_one_keeps_running(project):
    svc = project.service
    project.ok("deploy", "-P", "--version", "v1")
    project.config["servers"]["workers"]["cmd"] = "sh -c 'exit 3'"
    project.config["deploy_timeout"] = 4
    project.write()
    result = project.run("deploy", "-P", "--version", "v2")
    assert result.code == 1
    worker = project.workers[0]
    assert f"{worker}: Failed to boot workers: container not ready after 4 seconds" in result.err
    assert len(result.err.strip().splitlines()[-1]) < 400
    assert project.running(worker) == [f"{svc}-workers-v1"]
    assert f"{svc}-workers-v2" in project.containers(worker)  # stopped
    assert project.running(worker) == [f"{svc}-workers-v1"]
    assert "There is no deploy lock" in project.run("lock", "status").err + project.run("lock", "status").out
    # Fixed, the next deploy goes through.
    project.config["servers"]["workers"]["cmd"] = "/bin/sh /usr/local/bin/app-start"
    project.write()
    project.ok("deploy", "-P", "--version", "v2")
    assert project.running(worker) == [f"{svc}-workers-v2"]


def test_a_missing_image_fails_before_the_lock_naming_the_hosts(project):
    result = project.run("deploy", "-P", "--version", "nope")
    assert result.code == 1
    assert project.web[0] in result.err and "nope" in result.err
    assert "There is no deploy lock" in project.run("lock", "status").err + project.run("lock", "status").out


def test_ctrl_c_during_a_deploy_releases_the_lock_and_the_old_version_keeps_running(project):
    svc = project.service
    project.ok("deploy", "-P", "--version", "v1")
    env = {**os.environ, **project.env(HOOK_SLEEP="20", HOOK_SLEEP_IN="pre-app-boot")}
    proc = subprocess.Popen([KAMALPY, "deploy", "-P", "--version", "v2"], cwd=project.root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while "pre-app-boot" not in project.hook_log.read_text() if project.hook_log.exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert "There is no deploy lock" in project.run("lock", "status").err + project.run("lock", "status").out
    for host in project.web:
        assert project.running(host) == [f"{svc}-web-v1"]
    project.ok("deploy", "-P", "--version", "v2")
    for host in project.web:
        assert project.running(host) == [f"{svc}-web-v2"]


def test_a_host_that_goes_down_mid_deploy_fails_the_deploy_naming_it_and_a_later_deploy_succeeds(project):
    svc = project.service
    worker = project.workers[0]
    netns = project.sandbox.server(worker)["netns"]
    # Every packet to its sshd answered with a reset: the open connection dies, new ones are refused.
    rule = "INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset"
    project.ok("deploy", "-P", "--version", "v1")
    try:
        result = project.run("deploy", "-P", "--version", "v2", HOOK_RUN=f"ip netns exec {netns} iptables -I {rule}",
                             HOOK_RUN_IN="pre-app-boot")
        assert result.code == 1
        last = result.err.strip().splitlines()[-1]
        assert last.startswith("ERROR: ") and worker in last, last
        # Read through the server's docker socket (no SSH): the old version still runs there.
        assert project.running(worker) == [f"{svc}-workers-v1"]
    finally:
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-D", *rule.split()], check=False)
    assert "There is no deploy lock" in (lambda r: r.out + r.err)(project.run("lock", "status"))
    project.ok("deploy", "-P", "--version", "v2")
    assert project.running(worker) == [f"{svc}-workers-v2"]
