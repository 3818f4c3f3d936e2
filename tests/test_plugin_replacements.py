"""Done-when of the hook bus: for each new hookspec an out-of-tree plugin (the pip-installed fixture
distribution tests/fixtures/kamalpy-example-flows) replaces the built-in and changes what a flow does,
seen in its dry run; a hook wrapper around the boot sees the call and its result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_no_connection, dry_run_environment, run_kamalpy, write_project

FIXTURE = Path(__file__).parent / "fixtures" / "kamalpy-example-flows"
H1, H2 = "127.0.0.2", "127.0.0.3"


def deploy_yml(port: int, service: str = "app", hosts: tuple[str, ...] = (H1, H2)) -> dict:
    return {"service": service, "image": "dhh/app", "servers": list(hosts), "ssh": {"port": port},
            "registry": {"server": "hub.docker.com", "username": "dhh", "password": "secret"},
            "builder": {"arch": "amd64", "context": "."}}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(FIXTURE)], check=True, capture_output=True, text=True)
    return target


@pytest.fixture
def dry(site, tmp_path, monkeypatch, listeners):
    write_project(tmp_path, json.dumps(deploy_yml(listeners[0])), files={"Dockerfile": "FROM scratch\n"})
    dry_run_environment(monkeypatch, tmp_path, version="123", name="Dee Ployer", email="d@example.com")

    def run(*args: str, features: str = "") -> str:
        env = {"PYTHONPATH": str(site), "EXAMPLE_FLOWS": features,
               "EXAMPLE_FLOWS_CONFIG": str(tmp_path / "store.json")}
        result = run_kamalpy("--dry-run", *args, cwd=tmp_path, env=env)
        assert result.code == 0, result.err
        assert_no_connection(listeners[1])
        return result.out + result.err

    (tmp_path / "store.json").write_text(json.dumps(deploy_yml(listeners[0], service="fromstore", hosts=(H2,))))
    return run


def test_config_source(dry):
    before, after = dry("deploy", "-P"), dry("deploy", "-P", features="config")
    assert "--name app-web-123" in before and f"{H1}\t" in before
    assert "--name fromstore-web-123" in after and f"{H1}\t" not in after


def test_config_transform(dry):
    assert '--label example="transformed"' not in dry("deploy", "-P")
    assert '--label example="transformed"' in dry("deploy", "-P", features="transform")


def test_registry_strategy(dry):
    before, after = dry("deploy", "-P"), dry("deploy", "-P", features="registry")
    assert "docker login hub.docker.com -u [REDACTED] --password-stdin" in before
    assert "docker login hub.docker.com -u oauth2accesstoken --password-stdin" in after
    assert "[REDACTED]" not in after and "token-from-the-cli" not in after  # the token goes on stdin only


def test_boot(dry):
    before, after = dry("deploy", "-P"), dry("deploy", "-P", features="boot")
    assert "example boot" not in before
    assert f"example boot: {H1} alone" in after and f"example boot: {H2} alone" in after
    assert after.count("docker run --detach") == before.count("docker run --detach") == 2


def test_prune(dry):
    before, after = dry("deploy", "-P"), dry("deploy", "-P", features="prune")
    assert "docker image prune" in before and "docker container prune" not in before
    assert "docker container prune --force --filter label=service=app" in after and "docker image prune" not in after


def test_builder(dry):
    before, after = dry("build", "push"), dry("build", "push", features="builder")
    builds = ("docker buildx build", "docker build ")  # the plain build when this machine has no buildx
    assert any(b in before for b in builds) and "example-build" not in before
    assert "example-build hub.docker.com/dhh/app:123 hub.docker.com/dhh/app:latest" in after
    assert not any(b in after for b in builds)


def test_flow_step(dry):
    before, after = dry("deploy", "-P"), dry("deploy", "-P", features="steps")
    assert "docker container start kamal-proxy" in before
    assert "example proxy boot: nothing to boot" in after and "docker container start kamal-proxy" not in after


def test_wrapper_sees_the_boot_and_its_result(dry):
    assert "example wrapper" not in dry("deploy", "-P")
    both = dry("deploy", "-P", features="wrapper,boot")
    assert f"example wrapper: booting 123 on {H1}, {H2}" in both
    assert both.index("example wrapper: booting") < both.index("example boot:") < both.index(
        "example wrapper: the boot returned True")
    built_in = dry("deploy", "-P", features="wrapper")
    assert "example wrapper: the boot returned True" in built_in  # around the built-in boot_rolling too


def test_the_winner_of_a_name_is_shown(site, tmp_path):
    env = {"PYTHONPATH": str(site), "EXAMPLE_FLOWS": "registry,builder"}
    listed = run_kamalpy("plugins", cwd=tmp_path, env=env).out
    mine = listed[listed.index("example_flows  "):]
    assert "provides kamalpy_registry_strategies: docker" in mine
    assert "provides kamalpy_builders: local" in mine
    builtin = listed[listed.index("registry_docker  "):listed.index("registry_local  ")]
    assert "provides" not in builtin
