"""``build push|dev|create|remove|details --dry-run`` and ``deploy --dry-run`` (the build, then the pull).

A stand-in ``docker`` on PATH answers the read-only queries a dry run makes (``docker buildx version``,
``docker info``), with and without buildx, so the output does not depend on this machine's Docker.
"""

from __future__ import annotations

import subprocess

import pytest
from helpers import MINIMAL, write_project

FAKE_DOCKER = """#!/bin/sh
case "$*" in
  "buildx version") [ -n "$FAKE_NO_BUILDX" ] && exit 1; echo "github.com/docker/buildx v0.20.0";;
  "--version") echo "Docker version 28.2.2";;
  "info --format {{.Architecture}}") echo x86_64;;
esac
exit 0
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("VERSION", "123")
    monkeypatch.setenv("KAMAL_LOCK", "false")
    root = tmp_path / "proj"
    write_project(root, MINIMAL, files={"Dockerfile": "FROM scratch\n"})
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "i"], check=True)
    monkeypatch.chdir(root)
    return root


def local_lines(out: str) -> list[str]:
    return [line.split("\t", 1)[1] for line in out.splitlines() if line.startswith("local\t")]


def clone_dir(root) -> str:
    import hashlib

    return f"/tmp/kamal-clones/app-{hashlib.sha256(str(root).encode()).hexdigest()[:13]}"


BUILD = ("docker buildx build --output=type=registry --platform linux/amd64 --builder kamal-local-docker-container "
         '-t dhh/app:123 -t dhh/app:latest --label service="app" --file Dockerfile . 2>&1')


def test_build_push_with_buildx(kamalpy, project):
    result = kamalpy("build", "push", "--dry-run")
    assert result.code == 0, result.err
    clone = clone_dir(project)
    assert local_lines(result.out) == [
        "docker --version && docker buildx version",
        "docker login -u [REDACTED] --password-stdin",
        f"/usr/bin/env git -C {clone} clone {project} --recurse-submodules",
        f"/usr/bin/env git -C {clone}/proj/ status --porcelain",
        f"/usr/bin/env git -C {clone}/proj/ rev-parse HEAD",
        "docker buildx inspect kamal-local-docker-container",
        BUILD,
    ]
    assert "secret" not in result.out
    assert f"Cloning repo into build directory `{clone}/proj/`..." in result.out + result.err


def test_build_push_without_buildx(kamalpy, project, monkeypatch):
    monkeypatch.setenv("FAKE_NO_BUILDX", "1")
    result = kamalpy("build", "push", "--dry-run", "--no-cache")
    assert result.code == 0, result.err
    lines = local_lines(result.out)
    assert lines[-3:] == [
        '( export DOCKER_BUILDKIT="0" ; docker build --platform linux/amd64 -t dhh/app:123 -t dhh/app:latest '
        '--label service="app" --file Dockerfile --no-cache . 2>&1 )',
        "docker push dhh/app:123", "docker push dhh/app:latest"]
    assert not any("buildx inspect" in line for line in lines)
    said = result.out + result.err
    assert said.count("docker buildx is not available: building with `docker build` for linux/amd64 only") == 1


@pytest.mark.parametrize(("builder", "key"), [
    ("builder:\n  arch: [amd64, arm64]\n", "builder/arch"),
    ("builder:\n  arch: amd64\n  cache:\n    type: gha\n", "builder/cache"),
    ("builder:\n  arch: amd64\n  secrets: [TOKEN]\n", "builder/secrets"),
    ("builder:\n  arch: amd64\n  sbom: true\n", "builder/sbom"),
])
def test_without_buildx_what_needs_it_is_refused(kamalpy, project, monkeypatch, builder, key):
    monkeypatch.setenv("FAKE_NO_BUILDX", "1")
    monkeypatch.setenv("TOKEN", "x")
    (project / "config" / "deploy.yml").write_text(MINIMAL.replace("builder:\n  arch: amd64\n", builder))
    result = kamalpy("build", "push", "--dry-run")
    assert result.code == 1
    assert result.err.strip() == (f"ERROR: Docker buildx plugin is not installed locally: {key} needs it "
                                  "(the plain `docker build` cannot do that)")


def test_remote_builder_without_buildx(kamalpy, project, monkeypatch):
    monkeypatch.setenv("FAKE_NO_BUILDX", "1")
    (project / "config" / "deploy.yml").write_text(
        MINIMAL.replace("arch: amd64", "arch: arm64\n  remote: ssh://app@1.1.1.5"))
    result = kamalpy("build", "push", "--dry-run")
    # Without buildx the remote builder builds on its host with the plain `docker build` over SSH.
    assert result.code == 0, result.err
    assert "building on 1.1.1.5" in result.err
    on_builder = [line for line in result.out.splitlines() if line.startswith("1.1.1.5\tdocker ")]
    assert on_builder == [
        "1.1.1.5\tdocker login -u [REDACTED] --password-stdin",
        '1.1.1.5\tdocker build --platform linux/arm64 -t dhh/app:123 -t dhh/app:latest --label service="app" '
        "--file Dockerfile -",
        "1.1.1.5\tdocker push dhh/app:123", "1.1.1.5\tdocker push dhh/app:latest"]


def test_remote_builder_skips_local_login(kamalpy, project):
    (project / "config" / "deploy.yml").write_text(
        MINIMAL.replace("arch: amd64", "arch: arm64\n  remote: ssh://app@1.1.1.5"))
    result = kamalpy("build", "push", "--dry-run")
    lines = local_lines(result.out)
    assert not any("login" in line for line in lines)
    assert lines[-1].startswith('( export BUILDKIT_NO_CLIENT_TOKEN="1" ; docker buildx build --output=type=registry '
                                "--platform linux/arm64 --builder kamal-remote-ssh---app-1-1-1-5 ")


def test_context_builds_the_working_tree(kamalpy, project):
    (project / "config" / "deploy.yml").write_text(MINIMAL + "  context: .\n")
    (project / "new-file").write_text("x")
    result = kamalpy("build", "push", "--dry-run")
    assert not any("git" in line for line in local_lines(result.out))
    assert "Building with uncommitted changes:\n M config/deploy.yml\n?? new-file" in result.out + result.err


def test_missing_dockerfile_is_one_line(kamalpy, project):
    (project / "Dockerfile").unlink()
    result = kamalpy("build", "push", "--dry-run")
    assert result.code == 1 and result.err.strip() == "ERROR: Missing Dockerfile"


def test_build_dev(kamalpy, project):
    (project / "Dockerfile").write_text("FROM busybox\n")
    (project / "extra.txt").write_text("new")
    (project / ".dockerignore").write_text("ignored.txt\n")
    (project / "ignored.txt").write_text("x")
    result = kamalpy("build", "dev", "--dry-run")
    assert result.code == 0, result.err
    assert local_lines(result.out)[-1] == (
        "docker buildx build --output=type=docker --platform linux/amd64 --builder kamal-local-docker-container "
        '-t dhh/app:123-dirty -t dhh/app:latest-dirty --label service="app" --file Dockerfile . 2>&1')
    said = result.out + result.err
    assert "WARNING: Files with uncommitted changes will be present in the dev container:\n  Dockerfile" in said
    assert "WARNING: Untracked files will be present in the dev container:" in said
    assert "  extra.txt" in said and "ignored.txt" not in said


def test_create_remove_details(kamalpy, project):
    assert local_lines(kamalpy("build", "create", "--dry-run").out) == [
        "docker buildx create --name kamal-local-docker-container --driver=docker-container"]
    assert local_lines(kamalpy("build", "remove", "--dry-run").out) == [
        "docker buildx rm kamal-local-docker-container"]
    details = kamalpy("build", "details", "--dry-run")
    assert "Builder: local" in details.out and "docker context ls && docker buildx ls" in details.out


def test_unknown_strategy(kamalpy, project):
    (project / "config" / "deploy.yml").write_text(MINIMAL + "  strategy: nope\n")
    result = kamalpy("build", "push", "--dry-run")
    assert result.code == 1
    assert result.err.strip().startswith("ERROR: builder/strategy: unknown builder strategy 'nope' (available: cloud,")


def test_deploy_dry_run_builds_then_pulls(kamalpy, project):
    result = kamalpy("deploy", "--dry-run")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    build = lines.index(f"local\t{BUILD}")
    pull = lines.index("1.1.1.1\tdocker pull dhh/app:123")
    assert build < pull
    assert lines.index("local\tdocker --version && docker buildx version") < build


def test_deploy_skip_push_builds_nothing(kamalpy, project):
    result = kamalpy("deploy", "--dry-run", "-P")
    assert result.code == 0, result.err
    # Nothing runs on this machine (no build, not even the docker/buildx checks), and the pull still comes.
    assert local_lines(result.out) == []
    assert "1.1.1.1\tdocker pull dhh/app:123" in result.out.splitlines()
