"""End to end on the sandbox: ``app exec`` (all modes), ``stop``/``start``, ``maintenance``/``live``, ``remove``.

The app is booted as a deploy would (``proxy boot``, ``build pull``, ``app boot``) with the kamal-proxy
stand-in, which records its calls in ``calls.log`` of its config volume; the recorded calls are compared
with Kamal's command strings (reference 7.2 #13, #16) once the shell has removed their quotes. Each test
has its own service name and removes what it made (the servers are shared; the sandbox stays up).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
from pathlib import Path

import pytest
from e2e_fixtures import PROXY, E2EProject
from helpers import KAMALPY, Result

from kamalpy.builtin_plugins.sandbox import hostdocker, images

pytestmark = pytest.mark.sandbox

VERSION = "v1"
# Kamal's strings (7.2 #13 and #16) for service `app`, role `web`.
KAMAL_DEPLOY = ('docker exec kamal-proxy kamal-proxy deploy app-web --target="172.1.0.2:80" --deploy-timeout="30s" '
                '--drain-timeout="30s" --buffer-requests --buffer-responses --log-request-header="Cache-Control" '
                '--log-request-header="Last-Modified" --log-request-header="User-Agent"')
KAMAL_REMOVE = "docker exec kamal-proxy kamal-proxy remove app-web"
KAMAL_RESUME = "docker exec kamal-proxy kamal-proxy resume app-web"
KAMAL_STOP = 'docker exec kamal-proxy kamal-proxy stop app-web --drain-timeout="10s" --message="Hi"'


def recorded(kamal: str, service: str, target: str | None = None) -> str:
    """The line the stand-in records for Kamal's command: its arguments after the shell's unquoting."""
    if target:
        kamal = kamal.replace("172.1.0.2", target)
    args = shlex.split(kamal.replace("app-web", f"{service}-web"))
    return " ".join(args[4:])  # after `docker exec kamal-proxy kamal-proxy`


def blocks(result: Result) -> dict[str, str]:
    """``App Host: H\\n<output>\\n\\n`` blocks of stdout (several per host joined)."""
    found: dict[str, str] = {}
    for host, text in re.findall(r"^App Host: (\S+)\n(.*?)\n\n", result.out, re.MULTILINE | re.DOTALL):
        found[host] = found.get(host, "") + text
    return found


class Project(E2EProject):
    """A project of one web role on two sandbox servers, with an image labelled for its service."""

    PREFIX = "ac"

    def __init__(self, root: Path, sandbox) -> None:
        super().__init__(root, sandbox)
        self.hosts = list(sandbox.hosts)[:2]
        self.image = f"{sandbox.registry}/{self.service}"
        self.config = self.sandbox_config(proxy={"run": {"registry": sandbox.registry}},
                                          env={"clear": {"GREETING": "hello"}})
        self.config["servers"] = self.hosts
        self.docker_config = root / "docker-config"
        self.docker_config.mkdir()
        self.write()

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(VERSION=VERSION, DOCKER_CONFIG=str(self.docker_config), **extra)

    def docker(self, host: str, *args: str, check: bool = True) -> str:
        return self.sandbox.docker(host, *args, check=check).stdout.strip()

    def is_running(self, host: str, name: str) -> bool:
        return self.docker(host, "inspect", "--format", "{{.State.Running}}", name, check=False) == "true"

    def calls(self, host: str) -> list[str]:
        """The stand-in's calls about this service (the proxy may be shared with other tests)."""
        lines = self.docker(host, "exec", PROXY, "cat", images.KAMAL_PROXY_CALLS_LOG).splitlines()
        return [line for line in lines if f" {self.service}-web " in f" {line} "]

    def audit(self, host: str) -> list[str]:
        text = self.sandbox.ssh(host, f"cat .kamal/{self.service}-audit.log", check=False).stdout
        return [line.split("] ")[-1] for line in text.splitlines()]

    def push_image(self) -> None:
        """``<registry>/<service>:v1``: the sandbox app with the ``service`` label ``build pull`` checks."""
        env = hostdocker.client_env(self.sandbox.spec)
        tag = f"{self.image}:{VERSION}"
        dockerfile = f"FROM {self.sandbox.images['app']}\nLABEL service={self.service}\n"
        for argv in (["docker", "build", "-q", "-t", tag, "-"], ["docker", "push", "-q", tag]):
            subprocess.run(argv, input=dockerfile, text=True, env=env, check=True, capture_output=True, timeout=300)
        subprocess.run(["docker", "rmi", tag], env=env, check=False, capture_output=True)

    def cleanup(self) -> None:
        super().cleanup()
        for host in self.hosts:
            self.docker(host, "rmi", "-f", f"{self.image}:{VERSION}", f"{self.image}:latest", check=False)
            self.sandbox.ssh(host, f"rm -rf .kamal/proxy/apps-config/{self.service}", check=False)


@pytest.fixture
def app(project, kamal_proxies):
    """The project booted as a deploy would, behind the kamal-proxy stand-in (put back as it was after)."""
    project.push_image()
    kamal_proxies.standin(project.hosts)
    project.ok("build", "pull")
    project.ok("app", "boot", "--version", VERSION)  # without --version boot takes the latest tag (none yet)
    return project


def test_exec_in_new_and_running_containers(app):
    name = f"{app.service}-web-{VERSION}"
    assert all(app.is_running(host, name) for host in app.hosts)

    # New containers of the latest image (boot tagged it), with the role's env; they are removed after.
    new = app.ok("app", "exec", "sh -c 'echo $GREETING'")  # quoted: -c would be --config-file (as in Kamal)
    assert blocks(new) == dict.fromkeys(app.hosts, "hello"), new.out
    assert "Launching command with version latest from new container..." in new.err
    leftovers = {h: app.docker(h, "ps", "-aq", "--filter", f"name={app.service}-web-exec-") for h in app.hosts}
    assert leftovers == dict.fromkeys(app.hosts, "")

    with_env = app.ok("app", "exec", "-p", "--version", VERSION, "-e", "GREETING=bonjour", "sh -c 'echo $GREETING'")
    assert blocks(with_env) == {app.hosts[0]: "bonjour"}

    # The running container (its KAMAL_VERSION), version found on the primary host.
    reused = app.ok("app", "exec", "--reuse", "-e", "EXTRA:yes", "--", "sh", "-c", "'echo $KAMAL_VERSION $EXTRA'")
    assert blocks(reused) == dict.fromkeys(app.hosts, f"{VERSION} yes"), reused.out
    assert f"Launching command with version {VERSION} from existing container..." in reused.err

    assert app.audit(app.hosts[0])[-3:] == [
        "Executed cmd 'sh -c 'echo $GREETING'' on app version latest",
        f"Executed cmd 'sh -c 'echo $GREETING'' on app version {VERSION}",
        f"Executed cmd 'sh -c 'echo $KAMAL_VERSION $EXTRA'' on app version {VERSION}"]

    # -i hands over to the local ssh line (no terminal here: `docker exec -i`); its exit status is kamalpy's.
    for args, expected in ((["--reuse"], VERSION), ([], "")):
        proc = subprocess.run([KAMALPY, "app", "exec", "-i", *args, "sh -c 'echo [$KAMAL_VERSION]; exit 3'"],
                              cwd=app.root, env={**os.environ, **app.env()}, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)
        assert proc.returncode == 3, proc.stderr
        assert f"[{expected}]" in proc.stdout, proc.stdout
        assert "via SSH from" in proc.stderr


def test_logs_follow_streams_and_ends_quietly_on_ctrl_c(app):
    """``app logs -f`` follows the running container through ``ssh -t``; a line written after the start
    arrives while it runs, and SIGINT ends kamalpy with ssh's status and no traceback."""
    import select
    import signal
    import time

    marker = f"followed-{secrets.token_hex(4)}"
    proc = subprocess.Popen([KAMALPY, "app", "logs", "-f"], cwd=app.root, env={**os.environ, **app.env()},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        time.sleep(3)  # ssh connected and `docker logs --follow` running
        # A line on the container's own stdout, i.e. in its log, written after the follow began.
        app.ok("app", "exec", "--reuse", "-p", f"sh -c 'echo {marker} > /proc/1/fd/1'")
        seen, deadline = "", time.monotonic() + 30
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                seen += proc.stdout.readline()
        assert marker in seen, seen
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode in (130, 255), (proc.returncode, err)  # ssh's status after SIGINT
    assert "Traceback" not in err and "ERROR" not in err, err


def test_stop_start_maintenance_live_and_remove(app):
    service, name = app.service, f"{app.service}-web-{VERSION}"

    app.ok("app", "stop")
    for host in app.hosts:
        assert not app.is_running(host, name)
        assert app.calls(host)[-1] == recorded(KAMAL_REMOVE, service)

    app.ok("app", "start")
    for host in app.hosts:
        assert app.is_running(host, name)
        container_id = app.docker(host, "container", "ls", "--all", "--filter", f"name=^{name}$", "--quiet")
        assert app.calls(host)[-1] == recorded(KAMAL_DEPLOY, service, container_id)

    app.ok("app", "maintenance", "--drain-timeout", "10", "--message", "Hi")
    assert all(app.calls(h)[-1] == recorded(KAMAL_STOP, service) for h in app.hosts)
    app.ok("app", "maintenance", "-p", "--message", "Back at 5")
    assert app.calls(app.hosts[0])[-1] == f"stop {service}-web --drain-timeout=30s --message=Back at 5"
    app.ok("app", "live")
    assert all(app.calls(h)[-1] == recorded(KAMAL_RESUME, service) for h in app.hosts)

    app.ok("app", "remove")
    for host in app.hosts:
        assert app.calls(host)[-1] == recorded(KAMAL_REMOVE, service)
        assert app.docker(host, "ps", "-aq", "--filter", f"label=service={service}") == ""
        assert app.docker(host, "images", "-q", "--filter", f"label=service={service}") == ""
        for directory in (f".kamal/apps/{service}", f".kamal/proxy/apps-config/{service}"):
            assert app.sandbox.ssh(host, f"test -e {directory}", check=False).returncode != 0, directory
        assert app.audit(host)[-6:] == [
            "Stopped app", f"Started app version {VERSION}", "Stopped app", "Removed all app containers",
            "Removed all app images", f"Removed .kamal/apps/{service}"]
