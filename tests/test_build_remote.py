"""The remote builder without buildx: the builder host's own ``docker build`` over kamalpy's SSH connection.

This machine has no buildx, so a ``builder.remote: ssh://...`` build sends the context as a tar on the
standard input of ``docker build ... -`` on that host, which then logs in and pushes both tags.

- dry runs (a stand-in ``docker`` on PATH, no connection made): the commands, the context line, refusals;
- the context tar itself (``.dockerignore``, the Dockerfile first);
- end to end (sandbox): built on server 2 (not here), pushed to the sandbox registry, deployed to 1 and 3.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import MINIMAL, Result, assert_no_connection, run_kamalpy, write_project

from kamalpy.builtin_plugins.builders import context_files, context_tar
from kamalpy.commands import builder as commands

FAKE_DOCKER = """#!/bin/sh
case "$*" in
  "buildx version") exit 1;;
  "--version") echo "Docker version 28.2.2";;
  "info --format {{.Architecture}}") echo x86_64;;
esac
exit 0
"""
NOTICE = "docker buildx is not available: building on {host} with its docker build over SSH (linux/{arch} only)"
REFUSED = ("ERROR: Docker buildx plugin is not installed locally: {keys} needs it "
           "(the plain `docker build` over SSH builds one arch and pushes)")


# ----- dry runs -----

@pytest.fixture
def project(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("VERSION", "123")
    monkeypatch.setenv("KAMAL_LOCK", "false")
    root = tmp_path / "proj"
    write_project(root, MINIMAL, files={"Dockerfile": "FROM scratch\n", "app.txt": "x", "secret.key": "k",
                                        ".dockerignore": "*.key\n"})
    monkeypatch.chdir(root)
    return root


def configure(root: Path, builder: str) -> None:
    (root / "config" / "deploy.yml").write_text(MINIMAL.replace("builder:\n  arch: amd64\n", builder))


def lines_of(out: str, host: str) -> list[str]:
    return [line.split("\t", 1)[1] for line in out.splitlines() if line.startswith(f"{host}\t")]


def test_dry_run_commands(kamalpy, project, listeners):
    port, sockets = listeners
    configure(project, "builder:\n  arch: arm64\n  local: false\n  context: .\n"
                       f"  remote: ssh://deploy@127.0.0.2:{port}\n  dockerfile: docker/Dockerfile.prod\n"
                       "  target: app\n  args:\n    RUBY: '3.3'\n")
    (project / "docker").mkdir()
    (project / "docker" / "Dockerfile.prod").write_text("FROM scratch\n")
    result = kamalpy("build", "push", "--dry-run", "--no-cache")
    assert result.code == 0, result.err
    assert lines_of(result.out, "local") == ["docker --version && docker buildx version"]  # no local login
    # deploy.yml, Dockerfile.prod, .dockerignore, app.txt, docker/ (not secret.key), config/, the Dockerfile
    assert lines_of(result.out, "127.0.0.2") == [
        "docker login -u [REDACTED] --password-stdin",
        "stdin: build context 7 files",
        "docker build --platform linux/arm64 -t dhh/app:123 -t dhh/app:latest --label service=\"app\" "
        "--build-arg [REDACTED] --file docker/Dockerfile.prod --target app --no-cache -",
        "docker push dhh/app:123",
        "docker push dhh/app:latest",
    ]
    assert (result.out + result.err).count(NOTICE.format(host="127.0.0.2", arch="arm64")) == 1
    assert "secret" not in result.out
    assert_no_connection(sockets)


def test_dry_run_of_deploy_builds_remotely_then_pulls(kamalpy, project):
    configure(project, "builder:\n  arch: arm64\n  context: .\n  remote: ssh://10.0.0.9\n")
    result = kamalpy("deploy", "--dry-run")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    build = next(i for i, line in enumerate(lines) if line.startswith("10.0.0.9\tdocker build "))
    assert lines[build].endswith(" --file Dockerfile -")
    assert build < lines.index("1.1.1.1\tdocker pull dhh/app:123")


@pytest.mark.parametrize(("builder", "error"), [
    # Several arches, all remote: one line naming the key.
    ("builder:\n  arch: [arm64, riscv64]\n  remote: ssh://h\n", REFUSED.format(keys="builder/arch")),
    # Several arches, one of them this machine's: hybrid, which needs buildx.
    ("builder:\n  arch: [amd64, arm64]\n  remote: ssh://h\n",
     "ERROR: Docker buildx plugin is not installed locally: the hybrid builder needs it"),
    ("builder:\n  arch: arm64\n  remote: ssh://h\n  cache:\n    type: gha\n", REFUSED.format(keys="builder/cache")),
    ("builder:\n  arch: arm64\n  remote: ssh://h\n  secrets: [TOKEN]\n", REFUSED.format(keys="builder/secrets")),
    ("builder:\n  arch: arm64\n  remote: ssh://h\n  ssh: default\n", REFUSED.format(keys="builder/ssh")),
    ("builder:\n  arch: arm64\n  remote: ssh://h\n  provenance: false\n",
     REFUSED.format(keys="builder/provenance")),
    ("builder:\n  arch: arm64\n  remote: ssh://h\n  sbom: true\n", REFUSED.format(keys="builder/sbom")),
    ("builder:\n  arch: arm64\n  remote: tcp://h:2375\n", REFUSED.format(keys="builder/remote")),
    ("builder:\n  arch: arm64\n  remote: ssh://h\n  context: app\n",
     "ERROR: builder/dockerfile: Dockerfile is outside the build context app, which is all the plain remote "
     "build sends"),
])
def test_what_needs_buildx_is_refused(kamalpy, project, monkeypatch, builder, error):
    monkeypatch.setenv("TOKEN", "x")
    (project / "app").mkdir()
    configure(project, builder)
    result = kamalpy("build", "push", "--dry-run")
    assert result.code == 1
    assert result.err.strip() == error
    assert "docker build " not in result.out and "docker login" not in result.out


def test_build_dev_cannot_load_a_remote_image(kamalpy, project):
    configure(project, "builder:\n  arch: arm64\n  remote: ssh://h\n")
    result = kamalpy("build", "dev", "--dry-run")
    assert result.code == 1
    assert result.err.strip() == REFUSED.format(keys="--output docker")


# ----- the pure parts -----

@pytest.mark.parametrize(("url", "parts"), [
    ("ssh://h", ("h", None, None)),
    ("ssh://app@10.0.0.2:2222", ("10.0.0.2", "app", 2222)),
    ("ssh://root@[::1]:22", ("::1", "root", 22)),
])
def test_remote_builder_url(url, parts):
    assert tuple(commands.remote_builder(url)) == parts


@pytest.mark.parametrize("url", ["tcp://h:2375", "ssh://", "ssh://h:port", "ssh://h/path"])
def test_remote_builder_url_refused(url):
    with pytest.raises(commands.BuilderError, match="builder/remote: .* is not ssh://"):
        commands.remote_builder(url)


def test_context_tar(tmp_path):
    files = {"Dockerfile": "FROM scratch\n", ".dockerignore": "tmp\n*.log\nDockerfile\n!keep.log\n",
             "app/main.py": "print()\n", "debug.log": "x", "keep.log": "y", "tmp/cache": "z"}
    write_project(tmp_path, "", files=files)
    listed = context_files(str(tmp_path), "Dockerfile")
    assert listed[0] == "Dockerfile"  # always sent, first: the daemon drops it itself when ignored
    assert sorted(listed[1:]) == listed[1:]
    assert set(listed) == {"Dockerfile", ".dockerignore", "app", "app/main.py", "config", "config/deploy.yml",
                           "keep.log"}
    with tarfile.open(fileobj=io.BytesIO(context_tar(str(tmp_path), listed))) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == listed
        assert {(m.uid, m.gid) for m in members} == {(0, 0)}
        assert tar.extractfile("app/main.py").read() == b"print()\n"
        # The docker CLI reads the first header within 1024 bytes to tell a tar on stdin from a Dockerfile.
        assert members[0].offset_data == 512  # its one header block: no long-name or PAX blocks first


# ----- end to end -----

def registry_tags(registry: str, image: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{image}/tags/list", timeout=10) as response:
            return json.load(response).get("tags") or []
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise


class RemoteProject:
    """A git repository deployed to sandbox servers 1 and 3, built on server 2."""

    def __init__(self, root: Path, sandbox) -> None:
        self.root, self.sandbox = root, sandbox
        self.service = f"br{secrets.token_hex(3)}"
        self.builder = sandbox.server(2)["address"]
        self.hosts = [sandbox.server(1)["address"], sandbox.server(3)["address"]]
        self.baked = f"built-{secrets.token_hex(3)}\n"
        # local: false, as this machine is amd64 too: Kamal builds an arch matching the local one here.
        config = {"service": self.service, "image": self.service, **yaml.safe_load(sandbox.deploy_yml()),
                  "servers": self.hosts,
                  "registry": {"server": sandbox.registry, "username": "sandbox", "password": "sandbox"},
                  "builder": {"arch": "amd64", "local": False, "remote": f"ssh://root@{self.builder}"},
                  "proxy": {"run": {"registry": sandbox.registry}}}
        write_project(root, yaml.safe_dump(config, sort_keys=False), files={
            # The sandbox app (busybox serving /up) with a file of this test's own.
            "Dockerfile": f"FROM {sandbox.images['app']}\nCOPY built.txt /built.txt\n",
            "built.txt": self.baked, ".gitignore": "docker-config/\n", ".dockerignore": "ignored.txt\n",
            "ignored.txt": "not sent"})
        (root / "docker-config").mkdir()
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "app"]):
            self.git(*args)
        self.version = self.git("rev-parse", "HEAD")
        self.image = f"{sandbox.registry}/{self.service}:{self.version}"

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.root), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    def run(self, *args: str) -> Result:
        result = run_kamalpy(*args, cwd=self.root, env={"KAMAL_LOCK": "false",
                                                        "DOCKER_CONFIG": str(self.root / "docker-config")})
        assert "Traceback" not in result.out + result.err, result.err
        return result

    def here(self) -> bool:
        """Whether this machine's dockerd has the image (it must never be built here)."""
        return subprocess.run(["docker", "image", "inspect", self.image], capture_output=True,
                              env={**os.environ, "DOCKER_CONFIG": str(self.root / "docker-config")}).returncode == 0

    def cleanup(self) -> None:
        self.run("remove", "-y")
        self.sandbox.docker(self.builder, "image", "rm", "-f", self.image,
                            f"{self.sandbox.registry}/{self.service}:latest", check=False)


@pytest.mark.sandbox
def test_remote_build_push_and_deploy(sandbox, tmp_path):
    project = RemoteProject(tmp_path / "app", sandbox)
    try:
        assert not project.here()
        logins = sandbox.ssh_logins(project.builder)
        result = project.run("build", "push")
        assert result.code == 0, result.out + result.err[-3000:]
        said = result.out + result.err
        assert said.count(NOTICE.format(host=project.builder, arch="amd64")) == 1
        assert f"docker build --platform linux/amd64 -t {project.image} " in said
        assert sandbox.ssh_logins(project.builder) == logins + 1  # login, build and pushes: one connection
        # Built in server 2's dockerd, labelled for the service; not here.
        label = sandbox.docker(project.builder, "image", "inspect", "-f", "{{ .Config.Labels.service }}",
                               project.image)
        assert label.stdout.strip() == project.service
        assert not project.here()
        assert sorted(registry_tags(sandbox.registry, project.service)) == sorted([project.version, "latest"])
        files = sandbox.docker(project.builder, "run", "--rm", project.image, "ls", "/").stdout.split()
        assert "built.txt" in files

        deployed = project.run("deploy")
        assert deployed.code == 0, deployed.out + deployed.err[-3000:]
        assert not project.here()
        name = f"{project.service}-web-{project.version}"
        for host in project.hosts:
            running = sandbox.ssh(host, f"docker inspect -f '{{{{.State.Running}}}}' {name}").stdout.strip()
            assert running == "true"
            assert sandbox.ssh(host, f"docker exec {name} cat /built.txt").stdout == project.baked
    finally:
        project.cleanup()


@pytest.mark.sandbox
def test_remote_build_failure_is_one_line_and_pushes_nothing(sandbox, tmp_path):
    project = RemoteProject(tmp_path / "app", sandbox)
    (project.root / "Dockerfile").write_text(f"FROM {sandbox.images['busybox']}\nRUN false\n")
    project.git("commit", "-qam", "broken")
    result = project.run("build", "push")
    errors = [line for line in result.err.splitlines() if line.startswith("ERROR")]
    assert result.code == 1 and len(errors) == 1, result.out + result.err
    assert errors[0].startswith(f"ERROR: Building the image failed: {project.builder}: docker build "), errors
    assert registry_tags(sandbox.registry, project.service) == []
