"""``registry setup|remove|login|logout`` and the local registry mode (``registry.server: localhost:PORT``).

Dry runs check Kamal's command strings (reference 2.9, 6.5, 7.6). The end-to-end tests run the registry
container on this machine (the deploying machine) from the image the sandbox makes of Debian's
docker-registry (``registry.local_image``), deploy through SSH reverse forwards to the 3 sandbox servers,
and check that no server listens on the registry port afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import run_kamalpy, write_project

from kamalpy.commands import registry as registry_commands
from kamalpy.commands.base import join
from kamalpy.config.registry import DEFAULT_LOCAL_IMAGE, Registry
from kamalpy.errors import HostErrors, KamalpyError
from kamalpy.transport import CommandFailed, CommandResult

HOSTS = ("127.0.0.2", "127.0.0.3")
CONTAINER = "kamal-docker-registry"
RUN = ("docker start kamal-docker-registry || "
       "docker run --detach -p 127.0.0.1:{port}:5000 --name kamal-docker-registry {image}")
STOP = "docker stop kamal-docker-registry && docker rm kamal-docker-registry"
LOGIN = "docker login hub.example.com -u [REDACTED] --password-stdin"


def deploy_yml(registry: str) -> str:
    return f"service: app\nimage: app\nservers:\n  - {HOSTS[0]}\n  - {HOSTS[1]}\n{registry}builder:\n  arch: amd64\n"


LOCAL = "registry:\n  server: localhost:5555\n"
REMOTE = "registry:\n  server: hub.example.com\n  username: dhh\n  password: pa55-never-shown\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VERSION", "v1")

    def write(registry: str) -> Path:
        return write_project(tmp_path, deploy_yml(registry))

    return write


@pytest.fixture
def dry(kamalpy):
    def run(*args: str) -> list[str]:
        result = kamalpy("--dry-run", *args)
        assert result.code == 0, result.err
        return result.out.splitlines()

    return run


# --- dry runs: Kamal's strings ------------------------------------------------------------------------

def test_setup_command_is_kamals_for_localhost_5000() -> None:
    """Reference 7.6: the registry_test.rb string for ``server: localhost:5000``."""
    from kamalpy.config.model import Configuration

    config = Configuration(yaml.safe_load(deploy_yml("registry:\n  server: localhost:5000\n")), version="123")
    assert join(registry_commands.setup(config)) == RUN.format(port=5000, image="registry:3")
    assert join(registry_commands.remove()) == STOP


def test_local_setup_and_remove(dry, project) -> None:
    project(LOCAL)
    assert dry("registry", "setup") == [f"local\t{RUN.format(port=5555, image=DEFAULT_LOCAL_IMAGE)}"]
    assert dry("registry", "setup", "-R") == [f"local\t{RUN.format(port=5555, image='registry:3')}"]
    assert dry("registry", "setup", "--skip-local") == []  # nothing on the servers for a local registry
    assert dry("registry", "remove") == [f"local\t{STOP}"]
    assert dry("registry", "remove", "--skip-remote") == [f"local\t{STOP}"]
    assert dry("registry", "remove", "-L") == []


def test_local_image_is_configurable(dry, project) -> None:
    project(LOCAL + "  local_image: 10.213.0.1:5000/registry:2.8.2\n")
    assert dry("registry", "setup") == [f"local\t{RUN.format(port=5555, image='10.213.0.1:5000/registry:2.8.2')}"]


def test_remote_setup_logs_in_and_remove_logs_out(dry, project, kamalpy) -> None:
    project(REMOTE)
    here, there = [("local", LOGIN)], [(host, LOGIN) for host in HOSTS]
    assert dry("registry", "setup") == [f"{h}\t{c}" for h, c in here + there]
    assert dry("registry", "setup", "-L") == [f"{h}\t{c}" for h, c in there]
    assert dry("registry", "setup", "-R") == [f"{h}\t{c}" for h, c in here]
    assert dry("registry", "setup", "-L", "-R") == []
    logout = "docker logout hub.example.com"
    assert dry("registry", "remove") == [f"local\t{logout}", *(f"{h}\t{logout}" for h in HOSTS)]
    assert dry("registry", "remove", "-R") == [f"local\t{logout}"]
    assert dry("registry", "remove", "-L") == [f"{h}\t{logout}" for h in HOSTS]
    verbose = kamalpy("--dry-run", "-v", "registry", "setup")
    assert "pa55-never-shown" not in verbose.out + verbose.err


@pytest.mark.parametrize(("command", "message"), [
    ("login", "Cannot use login command with a local registry. Use `kamal registry setup` instead."),
    ("logout", "Cannot use logout command with a local registry. Use `kamal registry remove` instead."),
])
def test_login_and_logout_refuse_a_local_registry(kamalpy, project, command, message) -> None:
    project(LOCAL)
    result = kamalpy("--dry-run", "registry", command)
    assert (result.code, result.out, result.err) == (1, "", f"ERROR: {message}\n")


@pytest.mark.parametrize(("value", "message"), [
    ("5", "registry/local_image: should be a string"),
    ('""', "registry/local_image: should be non-empty"),
])
def test_local_image_must_be_a_name(kamalpy, project, value, message) -> None:
    project(LOCAL + f"  local_image: {value}\n")
    result = kamalpy("config")
    assert (result.code, result.err) == (1, f"ERROR: {message}\n")


def test_local_image_default_and_property() -> None:
    assert Registry({"server": "localhost:5555"}).local_image == "registry:3"
    assert Registry({"server": "localhost:5555", "local_image": "r:1"}).local_image == "r:1"


def test_missing_docker_is_one_line(kamalpy, project, monkeypatch) -> None:
    project(LOCAL)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "docker" else "/bin/true")
    result = kamalpy("--dry-run", "registry", "setup")
    assert (result.code, result.err) == (1, "ERROR: Docker is not installed locally\n")


def test_login_failure_names_the_registry_and_the_hosts() -> None:
    def failed(host: str) -> CommandFailed:
        return CommandFailed(CommandResult(host, "docker login", 1, "", "Error response from daemon: login attempt "
                                           "to http://r:5000/v2/ failed with status: 401 Unauthorized\n"))

    registry = Registry({"server": "r:5000", "username": "u", "password": "p"})
    error = registry_commands.login_failed(registry, HostErrors({"h1": failed("h1"), "h2": failed("h2")}))
    assert str(error) == ("Registry login to r:5000 failed on h1, h2: Error response from daemon: login attempt to "
                          "http://r:5000/v2/ failed with status: 401 Unauthorized "
                          "(check registry.username and registry.password)")
    other = HostErrors({"h1": KamalpyError("h1: connection refused")})
    assert registry_commands.login_failed(registry, other) is other  # not a login problem: unchanged


def test_extensions_page_documents_local_image(kamalpy) -> None:
    result = kamalpy("docs", "kamalpy-extensions")
    assert "`registry.local_image`" in result.out


# --- end to end: the deploying machine and the sandbox servers --------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def remove_registry_container() -> None:
    subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True, check=False)


def listening(sandbox, host: str, port: int) -> bool:
    return f":{port} " in sandbox.ssh(host, "ss -ltnH").stdout


class Project:
    """A kamalpy project deploying one non-proxied role to the sandbox servers from a local registry."""

    def __init__(self, root: Path, sandbox, port: int) -> None:
        self.root, self.sandbox, self.port = root, sandbox, port
        self.service = f"lr{secrets.token_hex(3)}"
        self.hosts = list(sandbox.hosts)[:3]
        self.image = sandbox.local_registry_image()
        base = yaml.safe_load(sandbox.deploy_yml())
        self.config = {
            "service": self.service, "image": self.service, "ssh": base["ssh"],
            "servers": {"workers": {"hosts": self.hosts, "cmd": "/bin/sh /usr/local/bin/app-start", "proxy": False}},
            "primary_role": "workers",
            "registry": {"server": f"localhost:{port}", "local_image": self.image},
            "builder": {"arch": "amd64"}, "readiness_delay": 0,
        }
        write_project(root, yaml.safe_dump(self.config, sort_keys=False))

    def run(self, *args: str):
        result = run_kamalpy(*args, cwd=self.root, env={"KAMAL_LOCK": "false"})
        assert "Traceback" not in result.out + result.err, result.err
        return result

    def ok(self, *args: str):
        result = self.run(*args)
        assert result.code == 0, result.err[-3000:]
        return result

    def push_app(self, version: str) -> str:
        """The sandbox app labelled for this service, pushed to the local registry as ``:version``."""
        tag = f"localhost:{self.port}/{self.service}:{version}"
        dockerfile = f"FROM {self.sandbox.registry}/sandbox-app:{version}\nLABEL service=\"{self.service}\"\n"
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, env=env, check=True,
                       capture_output=True, timeout=300)
        subprocess.run(["docker", "push", "-q", tag], check=True, capture_output=True, timeout=300)
        return tag

    def cleanup(self) -> None:
        for host in self.hosts:
            ids = self.sandbox.docker(host, "ps", "-aq", "--filter", f"label=service={self.service}").stdout.split()
            if ids:
                self.sandbox.docker(host, "rm", "-f", *ids, check=False)
            self.sandbox.docker(host, "image", "rm", "-f", f"localhost:{self.port}/{self.service}:v1", check=False)
            self.sandbox.ssh(host, f"rm -rf .kamal/apps/{self.service}", check=False)
        images = subprocess.run(["docker", "image", "ls", "-q", f"localhost:{self.port}/{self.service}"],
                                capture_output=True, text=True).stdout.split()
        if images:
            subprocess.run(["docker", "image", "rm", "-f", *images], capture_output=True, check=False)


@pytest.fixture
def local_project(sandbox, tmp_path):
    remove_registry_container()
    project = Project(tmp_path, sandbox, 5555)
    try:
        yield project
    finally:
        project.cleanup()
        remove_registry_container()


@pytest.mark.sandbox
def test_deploy_pulls_from_the_local_registry_through_tunnels(local_project, sandbox) -> None:
    project = local_project
    project.ok("registry", "setup")
    found = json.loads(subprocess.run(["docker", "inspect", CONTAINER], capture_output=True, text=True,
                                      check=True).stdout)[0]
    assert found["State"]["Running"]
    assert found["Config"]["Image"] == project.image  # the sandbox-made image, selected by local_image
    assert found["HostConfig"]["PortBindings"] == {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5555"}]}
    project.ok("registry", "setup")  # again: `docker start` of the existing container
    project.push_app("v1")

    project.ok("deploy", "-P", "--version", "v1")
    for host in project.hosts:
        ps = sandbox.docker(host, "ps", "--filter", f"label=service={project.service}",
                            "--format", "{{.Names}} {{.Image}}").stdout.split()
        assert ps == [f"{project.service}-workers-v1", f"localhost:5555/{project.service}:v1"], host
        served = sandbox.docker(host, "exec", ps[0], "wget", "-qO-", "http://127.0.0.1/version").stdout
        assert served.strip() == "v1", host
        assert not listening(sandbox, host, 5555), f"{host} still listens on the registry port"

    project.ok("registry", "remove")
    gone = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{CONTAINER}$"], capture_output=True, text=True)
    assert gone.stdout.strip() == ""
    again = project.ok("registry", "remove")  # nothing to remove: fine, as in Kamal
    assert "ERROR" not in again.err


@pytest.mark.sandbox
def test_forwards_are_closed_after_the_block_while_connected(sandbox) -> None:
    """The forwards live exactly as long as the pulls: closed before the run's connections are."""
    from kamalpy.builtin_plugins.ssh_paramiko import ParamikoTransport
    from kamalpy.execution import Executor
    from kamalpy.local_registry import forwards
    from kamalpy.output import Output
    from kamalpy.transport import SshSettings

    port = free_port()
    hosts = list(sandbox.hosts)[:3]
    settings = SshSettings(user="root", keys=(sandbox.key,), keys_only=True, config=(sandbox.ssh_config,),
                           known_hosts=sandbox.known_hosts)
    executor = Executor(ParamikoTransport(), settings, Output(quiet=True))
    commander = SimpleNamespace(config=SimpleNamespace(registry=Registry({"server": f"localhost:{port}"})),
                                dry_run=False, on=executor.on)
    try:
        with forwards(commander, hosts):
            assert all(listening(sandbox, host, port) for host in hosts)
            with pytest.raises(KamalpyError) as refused, forwards(commander, hosts[:1]):
                pass  # the port is taken on that server (by the first forward): refused, one line
            assert f"cannot forward port {port} to the local registry" in str(refused.value)
            assert "\n" not in str(refused.value)
        assert executor.on(hosts, lambda s: s.execute("true").ok) == dict.fromkeys(hosts, True)  # still connected
        assert not any(listening(sandbox, host, port) for host in hosts)
    finally:
        executor.close()


@pytest.mark.sandbox
def test_port_in_use_is_one_line_and_leaves_no_container(sandbox, tmp_path) -> None:
    remove_registry_container()
    port = free_port()
    project = Project(tmp_path, sandbox, port)
    with socket.create_server(("127.0.0.1", port)):
        try:
            result = project.run("registry", "setup")
        finally:
            left = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{CONTAINER}$"], capture_output=True,
                                  text=True).stdout.strip()
            remove_registry_container()
    assert result.code == 1
    assert result.err.splitlines()[-1] == (f"ERROR: Cannot start the local registry: port {port} is already in use "
                                           "on this machine (free it, or choose another port in registry.server)")
    assert left == ""  # the container docker created before the port failed is gone


@pytest.fixture
def auth_registry(sandbox):
    """A registry requiring ``alice``/``right``, on 127.0.0.1 of this machine and of server 1 (both trust
    their loopback as plain HTTP). Its files are under /var/tmp: each server has a private /tmp."""
    from kamalpy.builtin_plugins.sandbox.registry import htpasswd_line

    port = free_port()
    root = Path(f"/var/tmp/kamalpy-test-auth-registry-{secrets.token_hex(3)}")
    (root / "data").mkdir(parents=True)
    (root / "htpasswd").write_text(htpasswd_line("alice", "right") + "\n")
    config = {"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
              "http": {"addr": f"127.0.0.1:{port}"},
              "auth": {"htpasswd": {"realm": "test", "path": str(root / "htpasswd")}}}
    (root / "config.yml").write_text(json.dumps(config))
    here = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    host = sandbox.hosts[0]
    there = sandbox.ssh(host, f"setsid docker-registry serve {root}/config.yml >/dev/null 2>&1 </dev/null & "
                              "echo $!").stdout.strip()
    try:
        deadline = time.monotonic() + 20
        while not (listening(sandbox, host, port) and _answers(port)):
            assert time.monotonic() < deadline, "the test registry did not start"
            time.sleep(0.2)
        yield port, host
    finally:
        here.send_signal(signal.SIGTERM)
        here.wait(timeout=10)
        sandbox.ssh(host, f"kill {there}", check=False)
        shutil.rmtree(root, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.sandbox
def test_registry_auth_failure_is_one_line(auth_registry, sandbox, tmp_path) -> None:
    port, host = auth_registry
    server = f"127.0.0.1:{port}"
    base = yaml.safe_load(sandbox.deploy_yml())
    config = {"service": "authfail", "image": "authfail", "servers": [host], "ssh": base["ssh"],
              "registry": {"server": server, "username": "alice", "password": "wrong"}, "builder": {"arch": "amd64"}}
    write_project(tmp_path, yaml.safe_dump(config))
    hint = "(check registry.username and registry.password)"
    for flag, where in (("-R", "local"), ("-L", host)):
        result = run_kamalpy("registry", "setup", flag, cwd=tmp_path, env={"VERSION": "v1"})
        assert result.code == 1, where
        error = result.err.splitlines()[-1]
        assert error.startswith(f"ERROR: Registry login to {server} failed on {where}: "), error
        assert "401 Unauthorized" in error and error.endswith(hint), error
        assert "wrong" not in result.out + result.err

    config["registry"]["password"] = "right"
    write_project(tmp_path, yaml.safe_dump(config))
    try:
        assert run_kamalpy("registry", "setup", cwd=tmp_path, env={"VERSION": "v1"}).code == 0
    finally:
        assert run_kamalpy("registry", "remove", cwd=tmp_path, env={"VERSION": "v1"}).code == 0
