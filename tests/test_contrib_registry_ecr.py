"""contrib/kamalpy-registry-ecr: the ``ecr`` registry strategy, installed as a third-party distribution.

Tested with stand-ins, not against AWS: an ``aws`` script that prints a token (or fails) and records its
arguments, and a ``docker`` script that records the login it was asked for and the password on its
standard input. Both come first on PATH for the ``kamalpy`` subprocess.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import assert_no_connection, dry_run_environment, pip_install_target, run_kamalpy, write_project

CONTRIB = Path(__file__).resolve().parents[1] / "contrib" / "kamalpy-registry-ecr"
SERVER = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
TOKEN = "ecr-token-sv-never-shown"
H1 = "127.0.0.2"

AWS = """#!/bin/sh
echo "$@" >> "{log}/aws.args"
if [ -n "$FAIL" ]; then
  echo "Unable to locate credentials. You can configure credentials by running aws configure." >&2
  exit 255
fi
echo "{token}"
"""
DOCKER = """#!/bin/sh
echo "$@" >> "{log}/docker.args"
cat >> "{log}/docker.stdin"
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return pip_install_target(CONTRIB, tmp_path_factory.mktemp("ecr-dist"))


@pytest.fixture
def project(site, tmp_path, monkeypatch, listeners):
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name, script in (("aws", AWS), ("docker", DOCKER)):
        path = bin_dir / name
        path.write_text(script.format(log=log, token=TOKEN))
        path.chmod(0o755)
    config = {"service": "app", "image": "app", "servers": [H1], "ssh": {"port": listeners[0]},
              "registry": {"server": SERVER, "strategy": "ecr"}, "ecr": {"profile": "deploy"},
              "builder": {"arch": "amd64"}}
    write_project(tmp_path, json.dumps(config))
    dry_run_environment(monkeypatch, tmp_path, version="123", name="Dee Ployer", email="d@example.com")

    def run(*args: str, **env: str):
        return run_kamalpy(*args, cwd=tmp_path, env={"PYTHONPATH": str(site),
                                                   "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env})

    run.log = log  # type: ignore[attr-defined]
    run.listeners = listeners  # type: ignore[attr-defined]
    return run


def test_login_asks_the_cli_at_login_time_and_sends_the_token_on_stdin(project):
    result = project("registry", "login", "-R")
    assert result.code == 0, result.err
    assert (project.log / "aws.args").read_text().split() == [
        "ecr", "get-login-password", "--region", "eu-west-1", "--profile", "deploy"]
    assert (project.log / "docker.args").read_text().split() == ["login", SERVER, "-u", "AWS", "--password-stdin"]
    assert (project.log / "docker.stdin").read_text() == TOKEN
    assert TOKEN not in result.out + result.err


def test_dry_run_asks_the_cli_nothing(project):
    result = project("deploy", "-P", "--dry-run")
    assert result.code == 0, result.err
    assert f"{H1}\tdocker login {SERVER} -u [REDACTED] --password-stdin" in result.out
    assert not (project.log / "aws.args").exists()
    assert_no_connection(project.listeners[1])


def test_a_failing_cli_is_one_error_line_without_the_token(project):
    result = project("registry", "login", "-R", FAIL="1")
    assert result.code == 1
    assert result.err.strip().splitlines()[-1] == (
        "ERROR: ecr: aws ecr get-login-password failed: Unable to locate credentials. You can configure "
        "credentials by running aws configure.")
    assert not (project.log / "docker.args").exists()


def test_plugins_shows_the_strategy(project):
    listed = project("plugins").out
    mine = listed[listed.index("registry_ecr  "):]
    assert "provides kamalpy_registry_strategies: ecr" in mine.split("\n\n")[0]
