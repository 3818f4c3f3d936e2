"""Helpers shared by tests: run kamalpy as a subprocess and write small projects."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Kamal colours its errors


def kamal_cache_dir(name: str) -> Path | None:
    """Where a test keeps the real Kamal's answers (KAMALPY_TEST_CACHE: a directory, or "off")."""
    setting = os.environ.get("KAMALPY_TEST_CACHE", "")
    return None if setting == "off" else Path(setting or Path.home() / ".cache/kamalpy") / name


KAMALPY = shutil.which("kamalpy", path=os.path.dirname(sys.executable)) or shutil.which("kamalpy")


@dataclass
class Result:
    code: int
    out: str
    err: str
def run_kamalpy(*args: str, cwd: Path | str | None = None, env: dict | None = None) -> Result:
    """Run the installed ``kamalpy`` console script as a subprocess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([KAMALPY, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write_project(root: Path, deploy_yml: str, secrets: str | None = None, files: dict[str, str] | None = None) -> Path:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "deploy.yml").write_text(deploy_yml)
    if secrets is not None:
        (root / ".kamal").mkdir(exist_ok=True)
        (root / ".kamal" / "secrets").write_text(secrets)
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


MINIMAL = """\
service: app
image: dhh/app
servers:
  - 1.1.1.1
registry:
  username: dhh
  password: secret
builder:
  arch: amd64
"""


LOOPBACK_HOSTS = ("127.0.0.2", "127.0.0.3")  # the hosts of dry-run tests (see the `listeners` fixture)


def assert_no_connection(sockets) -> None:
    """No connection attempt reached the `listeners` fixture's sockets."""
    import pytest

    for sock in sockets:
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.accept()[0].close()


def dry_run_environment(monkeypatch, root: Path, *, version: str, name: str, email: str) -> None:
    """The process environment of a dry-run test project: a fixed git identity (audit and lock lines),
    ``VERSION``, no inherited ``KAMAL_LOCK``, and ``root`` as the working directory."""
    gitconfig = root / "gitconfig"
    gitconfig.write_text(f"[user]\n\tname = {name}\n\temail = {email}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("VERSION", version)
    monkeypatch.delenv("KAMAL_LOCK", raising=False)
    monkeypatch.chdir(root)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def sshd_project(root: Path, pre_connect_hook: str | None = None) -> Iterator[Path]:
    """A throwaway sshd on 127.0.0.1 (root only) and a Kamal project ``root/proj`` that deploys to it.

    Every command runs inside ``root/state`` (``ForceCommand``), so nothing lands in the real home
    directory; the real Kamal's ``-v`` output then shows each command as sent (``Command: ...``).
    """
    import signal
    import time

    import yaml

    state, proj = root / "state", root / "proj"
    (proj / "config").mkdir(parents=True)
    state.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    port = _free_port()
    (root / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {root}/host_key\nPidFile {root}/sshd.pid\n"
        f"AuthorizedKeysFile {root}/client_key.pub\nStrictModes no\nPermitRootLogin prohibit-password\n"
        f'UsePAM no\nForceCommand cd {state} && exec sh -c "$SSH_ORIGINAL_COMMAND"\n')
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    subprocess.run(["/usr/sbin/sshd", "-f", str(root / "sshd_config"), "-E", str(root / "sshd.log")], check=True)
    deadline = time.monotonic() + 5
    while not (root / "sshd.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int((root / "sshd.pid").read_text())
    (proj / "config/deploy.yml").write_text(yaml.safe_dump({
        "service": "app", "image": "dhh/app", "servers": ["127.0.0.1"],
        "registry": {"username": "dhh", "password": "secret"}, "builder": {"arch": "amd64"},
        "ssh": {"port": port, "keys": [str(root / "client_key")], "keys_only": True, "config": False}}))
    if pre_connect_hook is not None:
        (proj / ".kamal/hooks").mkdir(parents=True)
        (proj / ".kamal/hooks/pre-connect").write_text(pre_connect_hook)
        (proj / ".kamal/hooks/pre-connect").chmod(0o755)
    try:
        yield proj
    finally:
        os.kill(pid, signal.SIGTERM)


def pip_install_target(source: Path, root: Path) -> Path:
    """pip-install the distribution at ``source`` into ``root/site`` (use it as PYTHONPATH), never into a venv.

    A copy is installed so pip's build/ and egg-info/ land in ``root``, not in the source tree."""
    copy = root / "src"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(copy)], check=True, capture_output=True, text=True)
    return target
