"""End to end on the sandbox: ``proxy`` with the kamal-proxy stand-in, ``build pull`` and the ``app`` readers.

The stand-in (docs/sandbox.md) records its calls and succeeds; it is not kamal-proxy. Each test uses its
own service name, and removes the containers and images it made (the servers are shared). The shared
kamal-proxy is set aside for each test and put back after it (``kamal_proxies`` in e2e_fixtures.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from e2e_fixtures import PROXY, E2EProject
from helpers import Result

from kamalpy.builtin_plugins.sandbox import hostdocker, images
from kamalpy.commands.proxy import MINIMUM_VERSION

pytestmark = pytest.mark.sandbox

VERSION = "v1"
TOO_OLD = ("kamal-proxy version v0.8.0 is too old, run `kamal proxy reboot` in order to update to at least "
           f"{MINIMUM_VERSION}")


def blocks(result: Result, kind: str = "App") -> dict[str, str]:
    """``<kind> Host: H\\n<output>\\n\\n`` blocks of stdout (several per host joined)."""
    found: dict[str, str] = {}
    for host, text in re.findall(rf"^{kind} Host: (\S+)\n(.*?)\n\n", result.out, re.MULTILINE | re.DOTALL):
        found[host] = found.get(host, "") + text
    return found


class Project(E2EProject):
    PREFIX = "pa"

    def __init__(self, root: Path, sandbox) -> None:
        super().__init__(root, sandbox)
        self.hosts = list(sandbox.hosts)
        self.config = self.sandbox_config(image="sandbox-app", proxy={"run": {"registry": sandbox.registry}})
        self.config["servers"] = self.hosts
        self.docker_config = root / "docker-config"
        self.docker_config.mkdir()
        self.write()

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(VERSION=VERSION, DOCKER_CONFIG=str(self.docker_config), **extra)

    def docker(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.sandbox.docker(host, *args, check=check)

    def inspect(self, host: str, name: str) -> dict | None:
        proc = self.docker(host, "inspect", name, check=False)
        return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


@pytest.fixture(autouse=True)
def no_proxy(project, kamal_proxies):
    """No kamal-proxy on the project's servers during each test; the shared one is put back after."""
    kamal_proxies.clear(project.hosts)


# -- proxy -----------------------------------------------------------------------------------------

def test_proxy_boot_runs_the_standin_with_kamals_flags(project, kamal_proxy_standin):
    project.ok("proxy", "boot")
    first = {}
    for host in project.hosts:
        found = project.inspect(host, PROXY)
        assert found and found["State"]["Running"], host
        first[host] = found["Id"]
        assert found["Config"]["Image"] == kamal_proxy_standin
        assert found["Config"]["Cmd"] == ["kamal-proxy", "run"]
        assert found["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert found["HostConfig"]["NetworkMode"] == "kamal"
        assert found["HostConfig"]["LogConfig"]["Config"] == {"max-size": "10m"}
        mounts = {m["Destination"]: m.get("Name") or m["Source"] for m in found["Mounts"]}
        assert mounts["/home/kamal-proxy/.config/kamal-proxy"] == "kamal-proxy-config"
        assert mounts["/home/kamal-proxy/.apps-config"].endswith("/.kamal/proxy/apps-config")
        calls = project.docker(host, "exec", PROXY, "cat", images.KAMAL_PROXY_CALLS_LOG).stdout
        assert calls.splitlines()[-1] == "run"

    again = project.ok("proxy", "boot")  # the network exists, the container is started (a no-op)
    assert "ERROR" not in again.err
    assert {host: project.inspect(host, PROXY)["Id"] for host in project.hosts} == first

    details = blocks(project.ok("proxy", "details"), "Proxy")
    assert sorted(details) == sorted(project.hosts)
    assert all(PROXY in text for text in details.values())
    logs = blocks(project.ok("proxy", "logs", "-T"), "Proxy")
    assert all("kamal-proxy stand-in running: run" in text for text in logs.values()), logs

    project.ok("proxy", "stop")
    assert not any(project.inspect(h, PROXY)["State"]["Running"] for h in project.hosts)
    project.ok("proxy", "start")
    assert all(project.inspect(h, PROXY)["State"]["Running"] for h in project.hosts)
    project.ok("proxy", "restart")
    assert all(project.inspect(h, PROXY)["State"]["Running"] for h in project.hosts)

    primary = project.hosts[0]
    project.sandbox.ssh(primary, f"mkdir -p .kamal/apps/{project.service}")
    refused = project.ok("proxy", "remove")
    assert "Not removing the proxy, as other apps are installed" in refused.err
    assert project.inspect(primary, PROXY) is not None
    forced = project.ok("proxy", "remove", "--force")
    assert "Forcing, so removing the proxy" in forced.err
    for host in project.hosts:
        assert project.inspect(host, PROXY) is None, host
        assert project.sandbox.ssh(host, "test -e .kamal/proxy", check=False).returncode != 0
    audit = project.sandbox.ssh(primary, f"cat .kamal/{project.service}-audit.log").stdout
    assert [line.split("] ")[-1] for line in audit.splitlines()] == [
        "Stopped proxy", "Started proxy", "Stopped proxy", "Started proxy", "Stopped proxy",
        "Removed proxy container", "Removed proxy image"]


def test_proxy_boot_refuses_an_older_proxy(project, kamal_proxy_standin):
    host = project.hosts[1]
    old = kamal_proxy_standin.rsplit(":", 1)[0] + ":v0.8.0"
    project.docker(host, "pull", "-q", kamal_proxy_standin)
    project.docker(host, "tag", kamal_proxy_standin, old)
    try:
        project.docker(host, "run", "-d", "--name", PROXY, old)
        result = project.run("proxy", "boot")
        assert result.code == 1
        errors = [line for line in result.err.splitlines() if line.startswith("ERROR")]
        assert errors == [f"ERROR: {host}: {TOO_OLD}"], result.err
        assert project.inspect(host, PROXY)["Config"]["Image"] == old  # left alone
    finally:
        project.docker(host, "rm", "-f", PROXY, check=False)
        project.docker(host, "rmi", old, check=False)


# -- build pull ------------------------------------------------------------------------------------

def _push(sandbox, tag: str, dockerfile: str) -> None:
    env = hostdocker.client_env(sandbox.spec)
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, env=env, check=True,
                   capture_output=True, timeout=300)
    subprocess.run(["docker", "push", "-q", tag], env=env, check=True, capture_output=True, timeout=300)
    subprocess.run(["docker", "rmi", tag], env=env, check=False, capture_output=True)


def test_build_pull_checks_the_service_label(project):
    sandbox, svc = project.sandbox, project.service
    labelled = f"{sandbox.registry}/{svc}:{VERSION}"
    bare = f"{sandbox.registry}/{svc}-bare:{VERSION}"
    _push(sandbox, labelled, f"FROM {sandbox.images['app']}\nLABEL service={svc}\n")
    _push(sandbox, bare, f"FROM {sandbox.images['app']}\nLABEL other={svc}\n")
    try:
        project.config["image"] = svc
        project.write()
        project.ok("build", "pull")
        for host in project.hosts:
            labels = project.inspect(host, labelled)["Config"]["Labels"]
            assert labels["service"] == svc
            audit = sandbox.ssh(host, f"cat .kamal/{svc}-audit.log").stdout
            assert audit.rstrip().endswith(f"Pulled image with version {VERSION}")

        project.config["image"] = f"{svc}-bare"
        project.write()
        result = project.run("build", "pull")
        assert result.code == 1
        assert f"Image {bare} is missing the 'service' label" in result.err
    finally:
        for host in project.hosts:
            project.docker(host, "rmi", "-f", labelled, bare, check=False)


# -- app -------------------------------------------------------------------------------------------

def test_app_readers_on_a_container_started_by_hand(project):
    sandbox, svc = project.sandbox, project.service
    host, others = project.hosts[0], project.hosts[1:]
    names = [f"{svc}-web-v0", f"{svc}-web-{VERSION}"]  # the last one created is the current one
    try:
        for name in names:
            project.docker(host, "run", "-d", "--name", name, "--label", f"service={svc}", "--label", "role=web",
                           "--label", "destination", sandbox.images["app"])

        details = blocks(project.ok("app", "details"))
        assert all(name in details[host] for name in names)
        assert all(svc not in details[other] for other in others)
        containers = blocks(project.ok("app", "containers"))
        assert all(name in containers[host] for name in names)
        listed = blocks(project.ok("app", "images"))
        assert re.search(rf"{re.escape(sandbox.registry)}/sandbox-app\s+v1\b", listed[host]), listed[host]
        assert blocks(project.ok("app", "version")) == {host: VERSION, **dict.fromkeys(others, "")}

        stale = blocks(project.ok("app", "stale_containers"))
        assert stale == {host: "Detected stale container for role web with version v0 "
                               "(use `kamalpy app stale_containers --stop` to stop)"}
        stopped = blocks(project.ok("app", "stale_containers", "--stop"))
        assert stopped == {host: "Stopping stale container for role web with version v0"}
        assert not project.inspect(host, names[0])["State"]["Running"]
        assert project.inspect(host, names[1])["State"]["Running"]

        logs = project.ok("app", "logs", "-p")
        assert f"App Host: {host}\n" in logs.out
    finally:
        project.docker(host, "rm", "-f", *names, check=False)
