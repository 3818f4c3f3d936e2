"""Real builds on this machine's Docker engine, pushed to the sandbox registry and pulled on its servers.

This machine has no buildx, so the local strategy builds with the plain ``docker build`` (the fallback);
the image starts FROM the sandbox's busybox. Each test has its own service, image name and DOCKER_CONFIG.
Also here: bad input (a dirty clone, a missing Dockerfile, a registry refusing the login: one line each,
nothing pushed) and a third-party builder strategy selected with ``builder.strategy``.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import Result, run_kamalpy

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


class Project:
    def __init__(self, root: Path, sandbox, docker_config: Path, registry: dict | None = None) -> None:
        self.root, self.sandbox = root, sandbox
        self.service = f"bx{secrets.token_hex(3)}"
        self.registry = registry or {"server": sandbox.registry, "username": "sandbox", "password": "sandbox"}
        self.config = {"service": self.service, "image": self.service, **yaml.safe_load(sandbox.deploy_yml()),
                       "registry": self.registry, "builder": {"arch": "amd64"}}
        self.env = {"DOCKER_CONFIG": str(docker_config), "KAMAL_LOCK": "false"}
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
        result = run_kamalpy(*args, cwd=self.root, env={**self.env, **env})
        assert "Traceback" not in result.out + result.err, result.err
        assert self.registry["password"] not in result.out + result.err or self.registry["password"] == "sandbox"
        return result

    @property
    def repository(self) -> str:
        return f"{self.registry['server']}/{self.service}"

    def cleanup(self) -> None:
        images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", self.repository],
                                capture_output=True, text=True).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "--force", *images], capture_output=True)


@pytest.fixture
def docker_config(tmp_path):
    path = tmp_path / "docker-config"
    path.mkdir()
    return path


@pytest.fixture
def project(tmp_path, sandbox, docker_config):
    made = Project(tmp_path / "app", sandbox, docker_config)
    yield made
    made.cleanup()


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


def test_registry_auth_failure(tmp_path, sandbox, docker_config, password_registry):
    project = Project(tmp_path / "app", sandbox, docker_config,
                      registry={"server": password_registry, "username": "sandbox", "password": "wrong-pw"})
    result = project.run("build", "push")
    line = one_error(result)
    assert line.startswith(f"ERROR: Registry login to {password_registry} failed: "), line
    assert "wrong-pw" not in result.out + result.err
    assert "docker build" not in result.out  # refused before anything was built


def test_third_party_strategy(tmp_path, sandbox, docker_config):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "retag_builder.py").write_text(PLUGIN)
    project = Project(tmp_path / "app", sandbox, docker_config)
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
