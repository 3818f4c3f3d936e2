"""Real builds on this machine's Docker engine, pushed to the sandbox registry and pulled on its servers.

This machine has no buildx, so the local strategy builds with the plain ``docker build`` (the fallback);
the image starts FROM the sandbox's busybox. Each test has its own service, image name and DOCKER_CONFIG.
Also here: bad input (a dirty clone, a missing Dockerfile, a registry refusing the login: one line each,
nothing pushed) and a third-party builder strategy selected with ``builder.strategy``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import Result, run_kamalpy
from plugins import recording_transport

pytestmark = pytest.mark.sandbox

FALLBACK = "docker buildx is not available: building with `docker build` for linux/amd64 only"

PLUGIN = '''
"""A third-party builder: tags the sandbox busybox as the app image and leaves a marker file."""
import os
from kamalpy.builders import BuilderStrategy
from kamalpy.commands import builder as builder_commands
from kamalpy.plugin import hookimpl


class RetagStrategy(BuilderStrategy):
    name = "retag"
    needs_buildx = False

    def build(self, session, request):
        with open(os.environ["RETAG_MARKER"], "w") as marker:
            marker.write(f"{self.config.absolute_image} {request.output} {os.getcwd()}")
        base = os.environ["RETAG_BASE"]
        session.execute(["docker", "pull", base])
        for tag in builder_commands.tags(self.config, request.dirty):
            session.execute(["docker", "tag", base, tag])
            if request.output == "registry":
                session.execute(builder_commands.plain_push(tag))


@hookimpl
def kamalpy_builders():
    return {RetagStrategy.name: RetagStrategy}
'''


def registry_tags(registry: str, image: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{image}/tags/list", timeout=10) as response:
            return json.load(response).get("tags") or []
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise


# A `docker` first on PATH that writes each invocation's arguments to $DOCKER_ARGV_LOG, then runs Docker.
DOCKER_SHIM = """#!/bin/sh
printf '%s ' "$@" >> "$DOCKER_ARGV_LOG"
echo >> "$DOCKER_ARGV_LOG"
exec {docker} "$@"
"""
PLUGINS_DIR = Path(recording_transport.__file__).parent


class Project:
    """A git project building with this machine's Docker. Every run records what could leak the registry
    password: the arguments of each local ``docker`` process (a shim on PATH) and each command sent to the
    servers (the ``recording`` transport); :meth:`run` checks neither they nor the output contain it."""

    def __init__(self, root: Path, sandbox, registry: dict | None = None) -> None:
        self.root, self.sandbox = root, sandbox
        self.service = f"bx{secrets.token_hex(3)}"
        # The sandbox registry takes any login: a password found nowhere else, so a leak cannot hide.
        self.registry = registry or {"server": sandbox.registry, "username": "sandbox",
                                     "password": f"pw-{secrets.token_hex(8)}"}
        self.config = {"service": self.service, "image": self.service, **yaml.safe_load(sandbox.deploy_yml()),
                       "registry": self.registry, "builder": {"arch": "amd64"}}
        records = root.parent / f"{self.service}-records"  # outside the repository (its status stays clean)
        (records / "bin").mkdir(parents=True)
        (records / "docker-config").mkdir()  # this project's own docker logins
        shim = records / "bin" / "docker"
        shim.write_text(DOCKER_SHIM.format(docker=shutil.which("docker")))
        shim.chmod(0o755)
        self.argv_log, self.command_log = records / "docker-argv.log", records / "commands.log"
        self.env = {"DOCKER_CONFIG": str(records / "docker-config"), "KAMAL_LOCK": "false",
                    "PATH": f"{records / 'bin'}{os.pathsep}{os.environ['PATH']}",
                    "DOCKER_ARGV_LOG": str(self.argv_log),
                    "KAMALPY_PLUGINS": "recording_transport", "KAMALPY_TRANSPORT": "recording",
                    "PYTHONPATH": str(PLUGINS_DIR), recording_transport.LOG_ENV: str(self.command_log)}
        root.mkdir(parents=True, exist_ok=True)
        self.write()
        self.dockerfile(f"FROM {sandbox.images['busybox']}\nCOPY built.txt /built.txt\n")
        (root / "built.txt").write_text("committed\n")
        self.git("init", "-q")
        self.commit()

    def write(self) -> None:
        (self.root / "config").mkdir(exist_ok=True)
        (self.root / "config" / "deploy.yml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    def dockerfile(self, text: str) -> None:
        (self.root / "Dockerfile").write_text(text)

    def git(self, *args: str, env: dict | None = None) -> str:
        return subprocess.run(["git", "-C", str(self.root), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                              check=True, capture_output=True, text=True, env=env).stdout.strip()

    def commit(self) -> None:
        self.git("add", "-A")
        self.git("commit", "-qm", "change")

    @property
    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def run(self, *args: str, **env: str) -> Result:
        merged = {**self.env, **env}
        for name in ("KAMALPY_PLUGINS", "PYTHONPATH"):  # a test's own plugins come on top of the recorder
            if name in env:
                merged[name] = f"{self.env[name]}{',' if name == 'KAMALPY_PLUGINS' else os.pathsep}{env[name]}"
        result = run_kamalpy(*args, cwd=self.root, env=merged)
        assert "Traceback" not in result.out + result.err, result.err
        self.assert_password_hidden(result)
        return result

    def local_docker_calls(self) -> list[str]:
        return self.argv_log.read_text().splitlines() if self.argv_log.exists() else []

    def server_commands(self) -> list[str]:
        return recording_transport.commands(self.command_log)

    def assert_password_hidden(self, result: Result) -> None:
        """The password is in no output line, no local process's arguments and no command sent to a server."""
        password = self.registry["password"]
        assert password not in result.out + result.err
        assert not [call for call in self.local_docker_calls() if password in call]
        assert not [command for command in self.server_commands() if password in command]

    @property
    def repository(self) -> str:
        return f"{self.registry['server']}/{self.service}"

    def cleanup(self) -> None:
        images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", self.repository],
                                capture_output=True, text=True).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "--force", *images], capture_output=True)


def one_error(result: Result) -> str:
    errors = [line for line in result.err.splitlines() if line.startswith("ERROR")]
    assert result.code == 1 and len(errors) == 1, result.out + result.err
    return errors[0]


def test_clone_build_push_and_pull(project, sandbox):
    # An uncommitted change is reported and left out: the clone builds the commit.
    (project.root / "built.txt").write_text("uncommitted\n")
    result = project.run("build", "deliver")
    assert result.code == 0, result.out + result.err
    said = result.out + result.err
    assert said.count(FALLBACK) == 1
    assert "Building from a local git clone, so ignoring these uncommitted changes:\n M built.txt" in said
    assert "Cloning repo into build directory `/tmp/kamal-clones/" in said
    version = project.head
    assert sorted(registry_tags(sandbox.registry, project.service)) == sorted([version, "latest"])
    image = f"{project.repository}:{version}"
    built = subprocess.run(["docker", "run", "--rm", image, "cat", "/built.txt"], capture_output=True, text=True)
    assert built.stdout == "committed\n"
    label = subprocess.run(["docker", "inspect", "-f", "{{ .Config.Labels.service }}", image],
                           capture_output=True, text=True)
    assert label.stdout.strip() == project.service
    for host in sandbox.hosts:  # pulled, label checked, on every server
        sandbox.docker(host, "image", "inspect", image)
    # The password was sent (here and on each server, on standard input), so its absence means something.
    assert [call for call in project.local_docker_calls() if call.startswith("login ")], project.local_docker_calls()
    logins = [command for command in project.server_commands() if "docker login " in command]
    assert len(logins) == len(sandbox.hosts), project.server_commands()

    # A second build resets the existing clone instead of cloning again.
    (project.root / "built.txt").write_text("second\n")
    project.commit()
    again = project.run("build", "push")
    assert again.code == 0, again.out + again.err
    assert "Resetting local clone as `/tmp/kamal-clones/" in again.out + again.err
    assert project.head in registry_tags(sandbox.registry, project.service)


def test_dirty_clone_is_refused(project, sandbox, tmp_path):
    # A clean filter makes every checkout of built.txt look modified, so the clone can never be clean.
    (project.root / ".gitattributes").write_text("built.txt filter=upper\n")
    project.commit()
    git_config = tmp_path / "gitconfig"
    git_config.write_text('[filter "upper"]\n\tclean = tr a-z A-Z\n')
    result = project.run("build", "push", GIT_CONFIG_GLOBAL=str(git_config))
    line = one_error(result)
    assert line.startswith("ERROR: Clone in /tmp/kamal-clones/") and line.endswith(" is dirty, M built.txt"), line
    assert "deleting and retrying" in result.out + result.err
    assert registry_tags(sandbox.registry, project.service) == []


def test_missing_dockerfile(project, sandbox):
    project.config["builder"]["dockerfile"] = "Dockerfile.prod"
    project.write()
    project.commit()
    result = project.run("build", "push")
    assert one_error(result) == "ERROR: Missing Dockerfile.prod"
    assert "docker build" not in result.out
    assert registry_tags(sandbox.registry, project.service) == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def password_registry(tmp_path):
    """A registry on 127.0.0.1 that requires sandbox/right (the host dockerd trusts 127.0.0.0/8)."""
    from kamalpy.builtin_plugins.sandbox.registry import htpasswd_line

    port = _free_port()
    rdir = tmp_path / "registry"
    (rdir / "data").mkdir(parents=True)
    (rdir / "htpasswd").write_text(htpasswd_line("sandbox", "right") + "\n")
    config = {"version": 0.1, "log": {"level": "error"},
              "storage": {"filesystem": {"rootdirectory": str(rdir / "data")}},
              "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(8)},
              "auth": {"htpasswd": {"realm": "test", "path": str(rdir / "htpasswd")}}}
    (rdir / "config.yml").write_text(json.dumps(config))
    proc = subprocess.Popen(["docker-registry", "serve", str(rdir / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            except urllib.error.HTTPError:
                break  # 401: up
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_registry_auth_failure(tmp_path, sandbox, password_registry):
    project = Project(tmp_path / "app", sandbox,
                      registry={"server": password_registry, "username": "sandbox", "password": "wrong-pw"})
    result = project.run("build", "push")
    line = one_error(result)
    assert line.startswith(f"ERROR: Registry login to {password_registry} failed: "), line
    assert "wrong-pw" not in result.out + result.err
    assert "docker build" not in result.out  # refused before anything was built


def test_third_party_strategy(tmp_path, sandbox):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "retag_builder.py").write_text(PLUGIN)
    project = Project(tmp_path / "app", sandbox)
    project.config["builder"]["strategy"] = "retag"
    project.write()
    project.commit()
    marker = tmp_path / "marker"
    try:
        result = project.run("build", "push", KAMALPY_PLUGINS="retag_builder", PYTHONPATH=str(plugins),
                             RETAG_MARKER=str(marker), RETAG_BASE=sandbox.images["busybox"])
        assert result.code == 0, result.out + result.err
        image = f"{project.repository}:{project.head}"
        assert marker.read_text().startswith(f"{image} registry /tmp/kamal-clones/")  # ran in the clone
        assert FALLBACK not in result.out + result.err  # needs_buildx = False: no fallback, no refusal
        assert sorted(registry_tags(sandbox.registry, project.service)) == sorted([project.head, "latest"])
        details = project.run("build", "details", KAMALPY_PLUGINS="retag_builder", PYTHONPATH=str(plugins))
        assert details.code == 0 and details.out.strip() == "Builder: retag"
    finally:
        project.cleanup()
