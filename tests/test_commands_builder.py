"""Builder command strings: Kamal's test/commands/builder_test.rb (kamal.md 6, 7.5) and Kamal 2.11 itself.

The strings marked "2.11" were read from the real Kamal 2.11 running ``build push|create|remove|details -v``
with a stand-in ``docker`` on PATH (test_kamal_build_commands_match runs that again when Kamal is here).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from helpers import ANSI, KAMALPY, kamal_cache_dir

from kamalpy.builders import BuilderStrategy, BuildRequest
from kamalpy.builtin_plugins.builders import kamalpy_builders
from kamalpy.commands import builder as b
from kamalpy.commands.base import join, render
from kamalpy.config.model import Configuration
from kamalpy.errors import KamalpyError

BASE = {"service": "app", "image": "dhh/app", "servers": ["1.1.1.1"],
        "registry": {"username": "dhh", "password": "secret"}}
TAGS = "-t dhh/app:123 -t dhh/app:latest"
STRATEGIES = kamalpy_builders()


@pytest.fixture(autouse=True)
def in_project(tmp_path, monkeypatch):
    """Kamal checks the Dockerfile relative to the working directory."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.chdir(tmp_path)


def config(builder: dict, version: str = "123", **root) -> Configuration:
    return Configuration({**BASE, **root, "builder": builder}, version=version,
                         extension_keys=None)


def strategy(cfg: Configuration, kind: str, local_arch: str | None = None) -> BuilderStrategy:
    """The built-in strategy of Kamal's builder ``kind``: each owns its commands."""
    return STRATEGIES[kind](types.SimpleNamespace(config=cfg), local_arch)


def build_command(cfg: Configuration, kind: str, local_arch: str | None = None, *, output: str = "registry",
                  no_cache: bool = False, tag_as_dirty: bool = False) -> list[str]:
    request = BuildRequest(output=output, no_cache=no_cache, dirty=tag_as_dirty)
    return strategy(cfg, kind, local_arch).build_command(request)


def push(builder: dict, local_arch: str = "amd64", **kwargs) -> str:
    cfg = config(builder, **{k: kwargs.pop(k) for k in ("registry",) if k in kwargs})
    kind = b.kind(cfg, local_arch)
    return join(build_command(cfg, kind, local_arch, **kwargs))


# ----- 7.5: the build -----

def test_default_local_build():
    assert push({"arch": "amd64"}) == (
        "docker buildx build --output=type=registry --platform linux/amd64 --builder kamal-local-docker-container "
        f"{TAGS} --label service=\"app\" --file Dockerfile . 2>&1")


def test_gha_cache():
    assert push({"arch": "amd64", "cache": {"type": "gha"}}) == (
        "docker buildx build --output=type=registry --platform linux/amd64 --builder kamal-local-docker-container "
        f"{TAGS} --cache-to type=gha --cache-from type=gha --label service=\"app\" --file Dockerfile . 2>&1")


def test_gha_cache_options_2_11():
    # 2.11: --cache-from keeps only the options that locate the cache.
    line = push({"arch": "amd64", "cache": {"type": "gha", "options": "mode=max,url=http://x,scope=foo"}})
    assert "--cache-to type=gha,mode=max,url=http://x,scope=foo --cache-from type=gha,url=http://x,scope=foo " in line


def test_registry_cache_2_11():
    # 2.11 puts ref= before the options in --cache-to.
    line = push({"arch": "amd64", "cache": {"type": "registry", "options": "mode=max"}})
    assert ("--cache-to type=registry,ref=dhh/app-build-cache,mode=max "
            "--cache-from type=registry,ref=dhh/app-build-cache --label") in line
    line = push({"arch": "amd64", "cache": {"type": "registry", "image": "kamal-cache"}},
                registry={"server": "hub.example", "username": "u", "password": "p"})
    ref = "type=registry,ref=hub.example/kamal-cache"
    assert f"--cache-to {ref} --cache-from {ref} --label" in line


def test_hybrid_build():
    assert push({"arch": ["amd64", "arm64"], "remote": "ssh://app@127.0.0.1", "cache": {"type": "gha"}}) == (
        "docker buildx build --output=type=registry --platform linux/amd64,linux/arm64 "
        "--builder kamal-hybrid-docker-container-ssh---app-127-0-0-1 "
        f"{TAGS} --cache-to type=gha --cache-from type=gha --label service=\"app\" --file Dockerfile . 2>&1")


def test_remote_build_and_env():
    cfg = config({"arch": ["amd64", "arm64"], "remote": "ssh://app@127.0.0.1", "cache": {"type": "gha"},
                  "local": False})
    assert b.kind(cfg, "amd64") == b.REMOTE
    assert "--builder kamal-remote-ssh---app-127-0-0-1 " in join(build_command(cfg, b.REMOTE))
    cfg = config({"arch": "arm64", "remote": "ssh://app@1.1.1.5"}, version="999")
    assert render(build_command(cfg, b.kind(cfg, "amd64")), strategy(cfg, b.REMOTE).build_env()) == (
        '( export BUILDKIT_NO_CLIENT_TOKEN="1" ; docker buildx build --output=type=registry --platform linux/arm64 '
        "--builder kamal-remote-ssh---app-1-1-1-5 -t dhh/app:999 -t dhh/app:latest --label service=\"app\" "
        "--file Dockerfile . 2>&1 )")


@pytest.mark.parametrize(("option", "expected"), [
    ({"args": {"a": 1, "b": 2}}, '--label service="app" --build-arg a="1" --build-arg b="2" --file Dockerfile . 2>&1'),
    ({"secrets": ["token_a", "token_b"]},
     '--label service="app" --secret id="token_a" --secret id="token_b" --file Dockerfile . 2>&1'),
    ({"target": "prod"}, "--file Dockerfile --target prod . 2>&1"),
    ({"ssh": "default=$SSH_AUTH_SOCK"}, "--file Dockerfile --ssh default=$SSH_AUTH_SOCK . 2>&1"),
    ({"provenance": "mode=max"}, "--file Dockerfile --provenance mode=max . 2>&1"),
    ({"provenance": False}, "--file Dockerfile --provenance false . 2>&1"),
    ({"sbom": True}, "--file Dockerfile --sbom true . 2>&1"),
    ({"context": ".."}, "--file Dockerfile .. 2>&1"),
    ({"dockerfile": "Dockerfile"}, "--file Dockerfile . 2>&1"),
])
def test_build_options(option, expected):
    assert push({"arch": "amd64", **option}).endswith(expected)


def test_all_options_in_kamals_order_2_11():
    line = push({"arch": "amd64", "cache": {"type": "gha", "options": "mode=max,url=http://x,scope=foo"},
                 "args": {"a": 1}, "secrets": ["token_a"], "ssh": "default=$SSH_AUTH_SOCK", "provenance": False,
                 "sbom": True, "target": "prod"}, no_cache=True)
    assert line == (
        "docker buildx build --output=type=registry --platform linux/amd64 --builder kamal-local-docker-container "
        f"{TAGS} --cache-to type=gha,mode=max,url=http://x,scope=foo --cache-from type=gha,url=http://x,scope=foo "
        '--label service="app" --build-arg a="1" --secret id="token_a" --file Dockerfile --target prod '
        "--ssh default=$SSH_AUTH_SOCK --provenance false --sbom true --no-cache . 2>&1")


def test_build_args_are_redacted_in_logs():
    cfg = config({"arch": "amd64", "args": {"token": "s3cret"}})
    shown = render(build_command(cfg, b.LOCAL), redact=True)
    assert "--build-arg [REDACTED]" in shown and "s3cret" not in shown


def test_no_cache_output_and_dirty_tags():
    assert push({"arch": "amd64"}, no_cache=True).endswith("--file Dockerfile --no-cache . 2>&1")
    assert push({"arch": "amd64"}, output="docker", tag_as_dirty=True) == (
        "docker buildx build --output=type=docker --platform linux/amd64 --builder kamal-local-docker-container "
        '-t dhh/app:123-dirty -t dhh/app:latest-dirty --label service="app" --file Dockerfile . 2>&1')


def test_destination_latest_tag():
    cfg = Configuration({**BASE, "builder": {"arch": "amd64"}}, version="123", destination=None)
    assert b.tags(cfg) == ["dhh/app:123", "dhh/app:latest"]


def test_docker_driver_has_no_builder_2_11():
    cfg = config({"arch": "amd64", "driver": "docker"})
    assert join(build_command(cfg, b.LOCAL)) == (
        f"docker buildx build --output=type=registry --platform linux/amd64 {TAGS} "
        '--label service="app" --file Dockerfile . 2>&1')
    local = strategy(cfg, b.LOCAL)
    assert local.create_command() is None and local.remove_command() is None and local.inspect_command() is None


def test_missing_dockerfile():
    with pytest.raises(KamalpyError, match=r"^Missing Dockerfile.xyz$"):
        push({"arch": "amd64", "dockerfile": "Dockerfile.xyz"})


# ----- pack and cloud -----

def test_pack():
    cfg = config({"arch": "amd64", "args": {"a": 1, "b": 2},
                  "pack": {"builder": "heroku/builder:24", "buildpacks": ["heroku/ruby", "heroku/procfile"]}})
    assert b.kind(cfg, None) == b.PACK
    assert join(build_command(cfg, b.PACK, no_cache=True)) == (
        "pack build dhh/app --platform linux/amd64 --creation-time now --builder heroku/builder:24 "
        "--buildpack heroku/ruby --buildpack heroku/procfile --buildpack paketo-buildpacks/image-labels "
        f"{TAGS} --clear-cache --env BP_IMAGE_LABELS=service=app --env a=\"1\" --env b=\"2\" --path . "
        "&& docker push dhh/app:123 && docker push dhh/app:latest")
    assert join(build_command(cfg, b.PACK, output="docker")).endswith("--path .")
    assert render(strategy(cfg, b.PACK).inspect_command()) == "/usr/bin/env pack builder inspect heroku/builder:24"
    assert join(strategy(cfg, b.PACK).info_command()) == "pack builder inspect heroku/builder:24"
    assert strategy(cfg, b.PACK).create_command() is None and strategy(cfg, b.PACK).remove_command() is None


def test_pack_secret_values_are_sensitive_2_11():
    cfg = config({"arch": "amd64", "secrets": ["token_a"], "pack": {"builder": "b", "buildpacks": ["x"]}})
    cfg.secret_lookup = {"token_a": "xyz"}.__getitem__  # the builder secrets' values
    command = build_command(cfg, b.PACK)
    assert '--env token_a="xyz" --path .' in join(command)
    assert "--env [REDACTED] --path ." in render(command, redact=True)


def test_cloud():
    cfg = config({"arch": "amd64", "driver": "cloud docker-org-name/builder-name"})
    assert b.kind(cfg, None) == b.CLOUD
    assert join(build_command(cfg, b.CLOUD)) == (
        "docker buildx build --output=type=registry --platform linux/amd64 "
        f"--builder cloud-docker-org-name-builder-name {TAGS} --label service=\"app\" --file Dockerfile . 2>&1")
    cfg = config({"arch": "amd64", "driver": "cloud example_org/cloud_builder"})
    cloud = strategy(cfg, b.CLOUD)
    assert join(cloud.create_command()) == "docker buildx create --driver cloud example_org/cloud_builder"
    assert join(cloud.remove_command()) == "docker buildx rm cloud-example_org-cloud_builder"
    assert join(cloud.inspect_command()) == "docker buildx inspect cloud-example_org-cloud_builder"


# ----- 6.1: the choice -----

@pytest.mark.parametrize(("builder", "local_arch", "expected"), [
    ({"arch": "amd64"}, "amd64", b.LOCAL),
    ({"arch": ["amd64", "arm64"]}, "amd64", b.LOCAL),
    ({"arch": "arm64", "remote": "ssh://a@h"}, "amd64", b.REMOTE),
    ({"arch": "amd64", "remote": "ssh://a@h"}, "amd64", b.LOCAL),
    ({"arch": ["amd64", "arm64"], "remote": "ssh://a@h"}, "amd64", b.HYBRID),
    ({"arch": ["amd64", "arm64"], "remote": "ssh://a@h"}, "arm64", b.HYBRID),
    ({"arch": "amd64", "remote": "ssh://a@h", "local": False}, "amd64", b.REMOTE),
    ({"arch": "amd64", "pack": {"builder": "x", "buildpacks": ["y"]}}, "amd64", b.PACK),
    ({"arch": "amd64", "driver": "cloud a/b"}, "amd64", b.CLOUD),
])
def test_kind(builder, local_arch, expected):
    assert b.kind(config(builder), local_arch) == expected


def test_normalize_arch():
    assert [b.normalize_arch(a) for a in ("x86_64\n", "aarch64", "arm64")] == ["amd64", "arm64", "arm64"]
    assert join(b.docker_arch()) == "docker info --format '{{.Architecture}}'"


# ----- 6.2 / 7.5 #40: builder creation, removal, inspection -----

LOCAL_REGISTRY = {"server": "localhost:5000"}


def test_create_local():
    assert join(strategy(config({"arch": "amd64"}), b.LOCAL).create_command()) == (
        "docker buildx create --name kamal-local-docker-container --driver=docker-container")
    assert join(strategy(config({"arch": "amd64"}, registry=LOCAL_REGISTRY), b.LOCAL).create_command()) == (
        "docker buildx create --name kamal-local-registry-docker-container --driver=docker-container "
        "--driver-opt network=host")


def test_create_remote():
    cfg = config({"arch": "amd64", "remote": "ssh://app@1.1.1.5"})
    assert join(strategy(cfg, b.REMOTE).create_command()) == (
        "docker context create kamal-remote-ssh---app-1-1-1-5-context --description "
        "'kamal-remote-ssh---app-1-1-1-5 host' --docker 'host=ssh://app@1.1.1.5' ; "
        "docker buildx create --name kamal-remote-ssh---app-1-1-1-5 kamal-remote-ssh---app-1-1-1-5-context")
    cfg = config({"arch": "amd64", "remote": "ssh://app@1.1.1.5:2122"})
    assert join(strategy(cfg, b.REMOTE).create_command()).startswith(
        "docker context create kamal-remote-ssh---app-1-1-1-5-2122-context --description "
        "'kamal-remote-ssh---app-1-1-1-5-2122 host' --docker 'host=ssh://app@1.1.1.5:2122' ; ")
    cfg = config({"arch": "amd64", "remote": "ssh://app@1.1.1.5"}, registry=LOCAL_REGISTRY)
    assert join(strategy(cfg, b.REMOTE).create_command()) == (
        "docker context create kamal-remote-ssh---app-1-1-1-5-local-registry-context --description "
        "'kamal-remote-ssh---app-1-1-1-5-local-registry host' --docker 'host=ssh://app@1.1.1.5' ; "
        "docker buildx create --name kamal-remote-ssh---app-1-1-1-5-local-registry --driver-opt network=host "
        "kamal-remote-ssh---app-1-1-1-5-local-registry-context")


def test_create_hybrid():
    cfg = config({"arch": ["amd64", "arm64"], "remote": "ssh://app@1.1.1.5"}, registry=LOCAL_REGISTRY)
    name = "kamal-hybrid-docker-container-ssh---app-1-1-1-5-local-registry"
    assert join(strategy(cfg, b.HYBRID, "amd64").create_command()) == (
        f"docker buildx create --platform linux/amd64 --name {name} --driver=docker-container "
        f"--driver-opt network=host && docker context create {name}-context --description '{name} host' "
        f"--docker 'host=ssh://app@1.1.1.5' && docker buildx create --platform linux/arm64 --append --name {name} "
        f"--driver-opt network=host {name}-context")


def test_create_remove_hybrid_tcp_2_11():
    cfg = config({"arch": ["amd64", "arm64"], "remote": "tcp://1.1.1.5:2375"})
    name = "kamal-hybrid-docker-container-tcp---1-1-1-5-2375"
    assert join(strategy(cfg, b.HYBRID, "amd64").create_command()) == (
        f"docker buildx create --platform linux/amd64 --name {name} --driver=docker-container && "
        f"docker context create {name}-context --description '{name} host' --docker 'host=tcp://1.1.1.5:2375' && "
        f"docker buildx create --platform linux/arm64 --append --name {name} {name}-context")
    assert join(strategy(cfg, b.HYBRID).remove_command()) == (
        f"docker context rm {name}-context ; docker buildx rm {name}")


def test_inspect_and_info():
    cfg = config({"arch": "amd64"})
    assert join(strategy(cfg, b.LOCAL).inspect_command()) == "docker buildx inspect kamal-local-docker-container"
    assert join(strategy(cfg, b.LOCAL).remove_command()) == "docker buildx rm kamal-local-docker-container"
    assert join(strategy(cfg, b.LOCAL).info_command()) == "docker context ls && docker buildx ls"
    cfg = config({"arch": "arm64", "remote": "ssh://app@1.1.1.5"})
    assert join(strategy(cfg, b.REMOTE).inspect_command()) == (
        "docker buildx inspect kamal-remote-ssh---app-1-1-1-5 | "
        "grep -q Endpoint:.*kamal-remote-ssh---app-1-1-1-5-context"
        " && docker context inspect kamal-remote-ssh---app-1-1-1-5-context --format '{{.Endpoints.docker.Host}}'"
        " | grep -xq ssh://app@1.1.1.5 || (echo no compatible builder && exit 1)")
    assert join(strategy(cfg, b.REMOTE).info_command()) == "docker context ls ; docker buildx ls"
    assert join(strategy(cfg, b.REMOTE).remove_command()) == (
        "docker context rm kamal-remote-ssh---app-1-1-1-5-context ; docker buildx rm kamal-remote-ssh---app-1-1-1-5")
    assert b.MISSING_BUILDER.search("ERROR: no builder \"x\" found")


def test_docker_check_and_login_rule():
    assert join(b.ensure_docker_installed()) == "docker --version && docker buildx version"
    cfg = config({"arch": "amd64"})
    assert [strategy(cfg, k).login_locally for k in b.KINDS] == [True, False, False, True, True]
    assert strategy(cfg, b.HYBRID).build_env() == {"BUILDKIT_NO_CLIENT_TOKEN": "1"}
    assert strategy(cfg, b.LOCAL).build_env() == {}


# ----- without buildx -----

def test_plain_build():
    cfg = config({"arch": "amd64", "args": {"a": 1}, "target": "prod", "dockerfile": "Dockerfile"})
    assert render(b.plain_build(cfg, "amd64", no_cache=True), b.PLAIN_BUILD_ENV) == (
        '( export DOCKER_BUILDKIT="0" ; docker build --platform linux/amd64 -t dhh/app:123 -t dhh/app:latest '
        '--label service="app" --build-arg a="1" --file Dockerfile --target prod --no-cache . 2>&1 )')
    assert join(b.plain_push("dhh/app:123")) == "docker push dhh/app:123"


@pytest.mark.parametrize(("builder", "needs"), [
    ({"arch": "amd64"}, []),
    ({"arch": "amd64", "driver": "docker", "args": {"a": 1}, "target": "t"}, []),
    ({"arch": ["amd64", "arm64"]}, ["builder/arch"]),
    ({"arch": "amd64", "cache": {"type": "gha"}, "secrets": ["S"], "ssh": "default", "provenance": False,
      "sbom": False}, ["builder/cache", "builder/secrets", "builder/ssh", "builder/provenance", "builder/sbom"]),
])
def test_buildx_only_settings(builder, needs):
    assert strategy(config(builder), b.LOCAL).buildx_only_settings() == needs


def test_buildx_only_kinds():
    remote = strategy(config({"arch": "arm64", "remote": "ssh://a@h"}), b.REMOTE)
    assert remote.buildx_only_settings() == ["builder/remote"]
    assert strategy(config({"arch": "amd64", "driver": "cloud a/b"}), b.CLOUD).buildx_only_settings() == [
        "builder/driver"]


# ----- 6.4: git-clone builds -----

def test_clone_paths():
    # Kamal: sha256 of the working directory, first 13 hex characters.
    assert b.clone_directory("app", "/tmp/bx/proj", "/tmp") == "/tmp/kamal-clones/app-5a2406c07eaa7"
    assert b.build_directory("/tmp/kamal-clones/app-x", "/src/proj", "/src/proj") == "/tmp/kamal-clones/app-x/proj/"
    assert b.build_directory("/tmp/kamal-clones/app-x", "/src/proj", "/src/proj/sub") == \
        "/tmp/kamal-clones/app-x/proj/sub"


def test_clone_commands():
    assert render(b.clone("/tmp/kamal-clones/app-5a2406c07eaa7", "/tmp/bx/proj")) == (
        "/usr/bin/env git -C /tmp/kamal-clones/app-5a2406c07eaa7 clone /tmp/bx/proj --recurse-submodules")
    build = "/tmp/kamal-clones/app-x/proj/"
    assert [join(step) for step in b.clone_reset_steps(build, "/src/my proj", "abc")] == [
        f"git -C {build} remote set-url origin /src/my\\ proj", f"git -C {build} fetch origin",
        f"git -C {build} reset --hard abc", f"git -C {build} clean -fdx", f"git -C {build} submodule update --init"]
    assert join(b.clone_status(build)) == f"git -C {build} status --porcelain"
    assert join(b.clone_revision(build)) == f"git -C {build} rev-parse HEAD"
    assert b.ruby_shellescape("a'b c") == "a\\'b\\ c" and b.ruby_shellescape("") == "''"


# ----- the real Kamal 2.11, with a stand-in docker -----

FAKE_DOCKER = """#!/bin/sh
echo "docker $*" >> "$FAKE_LOG"
case "$*" in
  "info --format {{.Architecture}}") echo x86_64;;
  "buildx inspect"*) echo "Endpoint: $3-context";;
  "context inspect"*) echo "$FAKE_REMOTE";;
esac
exit 0
"""

CASES = {
    "local-options": ({"arch": "amd64", "args": {"a": 1}, "secrets": ["token_a"], "ssh": "default=$SSH_AUTH_SOCK",
                       "cache": {"type": "gha", "options": "mode=max,url=http://x,scope=foo"},
                       "provenance": False, "sbom": True, "target": "prod"}, "build push --no-cache"),
    "remote": ({"arch": "arm64", "remote": "ssh://app@1.1.1.5", "cache": {"type": "registry", "options": "mode=max"}},
               "build push"),
    "hybrid": ({"arch": ["amd64", "arm64"], "remote": "ssh://app@1.1.1.5"}, "build push"),
    "cloud": ({"arch": "amd64", "driver": "cloud org/name"}, "build push"),
    "docker-driver": ({"arch": "amd64", "driver": "docker"}, "build push"),
    "hybrid-tcp": ({"arch": ["amd64", "arm64"], "remote": "tcp://1.1.1.5:2375"}, "build create"),
}


CACHE = kamal_cache_dir("kamal-build-commands")


def _kamal_commands(name: str, args: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    """Kamal's commands for a case, cached (each Kamal build call costs seconds of CPU)."""
    key = json.dumps([CASES[name], FAKE_DOCKER, "kamal 2.11.0"], sort_keys=True).encode()
    cached = CACHE / f"{hashlib.sha256(key).hexdigest()}.json" if CACHE else None
    if cached and cached.exists():
        return json.loads(cached.read_text())
    lines = _commands(args, cwd, env, kamal=True)
    if cached and lines:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(lines))
    return lines


def _project(root: Path, builder: dict, fake_dir: Path) -> dict[str, str]:
    (root / "config").mkdir(parents=True)
    (root / ".kamal").mkdir()
    (root / "config" / "deploy.yml").write_text(yaml.safe_dump({**BASE, "builder": builder}))
    (root / ".kamal" / "secrets").write_text("token_a=xyz\n")
    (root / "Dockerfile").write_text("FROM busybox\n")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "i"], check=True)
    return {**os.environ, "PATH": f"{fake_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(root / "fake.log"),
            "FAKE_REMOTE": str(builder.get("remote", "")), "VERSION": "123"}


def _commands(args: list[str], cwd: Path, env: dict[str, str], kamal: bool) -> list[str]:
    """The docker/pack commands that would run (Kamal: its -v log; kamalpy: its dry run)."""
    if kamal:
        out = subprocess.run(["kamal", *args, "-v"], cwd=cwd, env=env, capture_output=True, text=True).stdout
        lines = [ANSI.sub("", line).split("Command: ", 1)[1] for line in out.splitlines() if "Command: " in line]
    else:
        out = subprocess.run([KAMALPY, *args, "--dry-run"], cwd=cwd, env=env, capture_output=True, text=True).stdout
        lines = [line.split("\t", 1)[1] for line in out.splitlines() if line.startswith("local\t")]
    return [line for line in lines if "docker buildx" in line or "docker context" in line]


@pytest.mark.kamal
@pytest.mark.skipif(shutil.which("kamal") is None, reason="the real kamal is not installed")
def test_kamal_build_commands_match(tmp_path):
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    (fake_dir / "docker").write_text(FAKE_DOCKER)
    (fake_dir / "docker").chmod(0o755)

    def both(name: str) -> tuple[list[str], list[str]]:
        builder, command = CASES[name]
        root = tmp_path / name
        env = _project(root, builder, fake_dir)
        args = command.split()
        return _kamal_commands(name, args, root, env), _commands(args, root, env, kamal=False)

    with ThreadPoolExecutor(len(CASES)) as pool:
        results = dict(zip(CASES, pool.map(both, CASES), strict=True))
    for name, (kamal, ours) in results.items():
        # Kamal's redaction of build args is the same as ours ([REDACTED]).
        assert kamal and ours == kamal, f"{name}: {json.dumps({'kamal': kamal, 'kamalpy': ours}, indent=1)}"
