"""``--dry-run``: exact ``HOST<TAB>COMMAND`` lines, Kamal's command strings as SSHKit sends them.

Nothing may connect. The hosts are loopback addresses where the test listens on the configured SSH
port, so any connection attempt would show up as a pending connection on a listener (and no traffic
leaves the machine); each run must also finish fast. Timestamps are normalised to ``<TS>``; the lock's
base64 payload is checked for Ruby's layout (60-character lines) and then shown decoded.
"""

from __future__ import annotations

import base64
import re
import socket
import time

import pytest
from helpers import assert_no_connection, dry_run_environment, write_project

HOSTS = ("127.0.0.2", "127.0.0.3")
PASSWORD = "pa$$w0rd-never-shown"
DEPLOY_YML = """\
service: app
image: dhh/app
servers:
  - {0}
  - {1}
ssh:
  port: {port}
registry:
  server: hub.docker.com
  username: dhh
  password: {password}
builder:
  arch: amd64
"""
DESTINATION_YML = "env:\n  clear:\n    WHERE: elsewhere\n"
PERFORMER = "deployer@example.com"
LOCKER = "Dee Ployer"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
LOCK_PAYLOAD = re.compile(r'echo "([A-Za-z0-9+/=\\n]*)" >')
FAST = 3.0  # seconds: a dry run is instant


def ruby_encode64(text: str) -> str:
    """Ruby's Base64.encode64, written independently of kamalpy's: 60 characters a line, newline-terminated."""
    encoded = base64.b64encode(text.encode()).decode()
    return "".join(encoded[i:i + 60] + "\n" for i in range(0, len(encoded), 60))


def _decode_lock(match: re.Match[str]) -> str:
    shown = match.group(1)
    encoded = shown.replace("\\n", "\n")  # the dry run shows the payload's newlines as \n
    details = base64.b64decode(encoded).decode()
    assert encoded == ruby_encode64(details), "lock details not in Ruby's Base64.encode64 layout"
    return f'echo "<base64 of {details!r}>" >'


def normalise(text: str) -> list[str]:
    text = LOCK_PAYLOAD.sub(_decode_lock, text)
    return TIMESTAMP.sub("<TS>", text).splitlines()






@pytest.fixture
def project(tmp_path, monkeypatch, listeners):
    port, sockets = listeners
    write_project(tmp_path, DEPLOY_YML.format(*HOSTS, port=port, password=PASSWORD))
    dry_run_environment(monkeypatch, tmp_path, version="123", name=LOCKER, email=PERFORMER)
    return tmp_path


@pytest.fixture
def dry(kamalpy, project, listeners):
    def run(*args: str) -> list[str]:
        started = time.monotonic()
        result = kamalpy("--dry-run", *args)
        elapsed = time.monotonic() - started
        assert result.code == 0, result.err
        assert elapsed < FAST, f"dry run of {args} took {elapsed:.1f}s"
        assert_no_connection(listeners[1])
        assert PASSWORD not in result.out + result.err
        return normalise(result.out)

    return run


def lines(*pairs: tuple[str, str]) -> list[str]:
    return [f"{host}\t{command}" for host, command in pairs]


H1, H2 = HOSTS
# The lock's run directory: on the other hosts, then on the primary in the acquire's round trip.
ENSURE = [(H2, "/usr/bin/env mkdir -p .kamal"), (H1, "/usr/bin/env mkdir -p .kamal")]
AUTO_DETAILS = f"Locked by: {LOCKER} at <TS>\nVersion: 123\nMessage: Automatic deploy lock"
ACQUIRE = (H1, f'/usr/bin/env mkdir .kamal/lock-app && echo "<base64 of {AUTO_DETAILS!r}>" > .kamal/lock-app/details')
RELEASE = (H1, "/usr/bin/env rm .kamal/lock-app/details && rm -r .kamal/lock-app")


def audit(host: str, message: str, log: str = ".kamal/app-audit.log", tags: str = "") -> tuple[str, str]:
    return (host, f'/usr/bin/env mkdir -p .kamal && echo "[<TS>] [{PERFORMER}] {tags}{message}" >> {log}')


def prune_containers(host: str, keep: int) -> tuple[str, str]:
    return (host, "docker ps -q -a --filter label=service=app --filter status=created --filter status=exited "
                  f"--filter status=dead | tail -n +{keep + 1} | "
                  "while read container_id; do docker rm $container_id; done")


def prune_images(host: str) -> list[tuple[str, str]]:
    return [audit(host, "Pruned images"),
            (host, "docker image prune --force --filter label=service=app"),
            (host, "docker image ls --filter label=service=app --format '{{.ID}} {{.Repository}}:{{.Tag}}' | "
                   "grep -v -w \"$(docker container ls -a --format '{{.Image}}\\|' --filter label=service=app | "
                   "tr -d '\\n')hub.docker.com/dhh/app:latest\\|hub.docker.com/dhh/app:<none>\" | "
                   "while read image tag; do docker rmi $tag; done")]


def test_lock_acquire(dry):
    details = f"Locked by: {LOCKER} at <TS>\nVersion: 123\nMessage: it's \"$HOME\" `id`\nline 2"
    assert dry("lock", "acquire", "-m", "it's \"$HOME\" `id`\nline 2") == lines(
        *ENSURE,
        (H1, f'/usr/bin/env mkdir .kamal/lock-app && echo "<base64 of {details!r}>" > .kamal/lock-app/details'))


def test_lock_status_and_release(dry):
    assert dry("lock", "status") == lines(
        (H1, "/usr/bin/env stat .kamal/lock-app > /dev/null && cat .kamal/lock-app/details | base64 -d"))
    assert dry("lock", "release") == lines(RELEASE)


def test_lock_with_destination(dry, project):
    (project / "config" / "deploy.production.yml").write_text(DESTINATION_YML)
    assert dry("lock", "status", "-d", "production") == lines(
        (H1, "/usr/bin/env stat .kamal/lock-app-production > /dev/null && "
             "cat .kamal/lock-app-production/details | base64 -d"))
    assert dry("-d", "production", "lock", "release") == lines(
        (H1, "/usr/bin/env rm .kamal/lock-app-production/details && rm -r .kamal/lock-app-production"))


def test_audit(dry):
    assert dry("audit") == lines((H1, "/usr/bin/env tail -n 50 .kamal/app-audit.log"),
                                 (H2, "/usr/bin/env tail -n 50 .kamal/app-audit.log"))


def test_prune_all(dry):
    assert dry("prune", "all") == lines(
        *ENSURE, ACQUIRE,
        audit(H1, "Pruned containers"), prune_containers(H1, 5),
        audit(H2, "Pruned containers"), prune_containers(H2, 5),
        *prune_images(H1), *prune_images(H2),
        RELEASE)


def test_prune_images(dry):
    assert dry("prune", "images") == lines(*ENSURE, ACQUIRE, *prune_images(H1), *prune_images(H2), RELEASE)


def test_prune_containers_retain(dry):
    assert dry("prune", "containers", "--retain", "3") == lines(
        *ENSURE, ACQUIRE,
        audit(H1, "Pruned containers"), prune_containers(H1, 3),
        audit(H2, "Pruned containers"), prune_containers(H2, 3),
        RELEASE)


def test_prune_with_destination_audits_to_its_log(dry, project):
    (project / "config" / "deploy.staging.yml").write_text(DESTINATION_YML)
    out = dry("-d", "staging", "prune", "containers", "--retain", "1")
    assert lines(audit(H2, "Pruned containers", ".kamal/app-staging-audit.log", "[staging] ")) == [out[-3]]
    assert out[2].startswith(f"{H1}\t/usr/bin/env mkdir .kamal/lock-app-staging && echo ")


def test_registry_login_and_logout(dry):
    login = "docker login hub.docker.com -u [REDACTED] --password-stdin"
    assert dry("registry", "login") == lines(("local", login), (H1, login), (H2, login))
    assert dry("registry", "login", "-L") == lines((H1, login), (H2, login))
    assert dry("registry", "login", "-R") == lines(("local", login))
    logout = "docker logout hub.docker.com"
    assert dry("registry", "logout") == lines(("local", logout), (H1, logout), (H2, logout))


def test_registry_login_verbose_shows_no_password(kamalpy, project):
    result = kamalpy("--dry-run", "-v", "registry", "login")
    assert result.code == 0
    assert PASSWORD not in result.out + result.err
    assert '"dhh"' not in result.out  # the username is sensitive too, as in Kamal


def test_server_exec(dry):
    assert dry("server", "exec", "docker ps --format '{{.Names}}'") == lines(
        audit(H1, f"Executed cmd 'docker ps --format '{{{{.Names}}}}'' on {H1}"),
        (H1, "docker ps --format '{{.Names}}'"),
        audit(H2, f"Executed cmd 'docker ps --format '{{{{.Names}}}}'' on {H2}"),
        (H2, "docker ps --format '{{.Names}}'"))


def test_server_exec_single_word_gets_env_prefix(dry):
    out = dry("server", "exec", "hostname")
    assert out[1] == f"{H1}\t/usr/bin/env hostname"


def test_multi_line_command(dry):
    # SSHKit turns the lines of a command given as one string into `a; b`; the audit line keeps a dumped \n.
    out = dry("server", "exec", "echo one\necho two")
    assert out == lines(audit(H1, f"Executed cmd 'echo one\\necho two' on {H1}"), (H1, "echo one; echo two"),
                        audit(H2, f"Executed cmd 'echo one\\necho two' on {H2}"), (H2, "echo one; echo two"))


def test_server_exec_interactive_hands_over_to_ssh(dry, listeners):
    assert dry("server", "exec", "-i", "bin/rails console") == lines(
        ("local", f"ssh -t root@{H1} -p {listeners[0]} 'bin/rails console'"))


def test_server_bootstrap(dry, project):
    hooks = project / ".kamal" / "hooks"
    hooks.mkdir(parents=True)
    for name in ("pre-connect", "docker-setup"):
        (hooks / name).write_text("#!/bin/sh\nexit 0\n")
        (hooks / name).chmod(0o755)
    assert dry("server", "bootstrap") == lines(
        ("local", "/usr/bin/env .kamal/hooks/pre-connect"),
        *ENSURE, ACQUIRE,
        (H1, "docker -v"), (H1, "/usr/bin/env mkdir -p .kamal"),
        (H2, "docker -v"), (H2, "/usr/bin/env mkdir -p .kamal"),
        ("local", "/usr/bin/env .kamal/hooks/docker-setup"),
        RELEASE)


def test_skip_hooks(dry, project):
    hooks = project / ".kamal" / "hooks"
    hooks.mkdir(parents=True)
    (hooks / "pre-connect").write_text("#!/bin/sh\nexit 1\n")
    (hooks / "pre-connect").chmod(0o755)
    assert dry("-H", "audit")[0].startswith(f"{H1}\t")


def test_dry_run_does_not_run_hooks(kamalpy, project):
    hooks = project / ".kamal" / "hooks"
    hooks.mkdir(parents=True)
    marker = project / "ran"
    (hooks / "pre-connect").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (hooks / "pre-connect").chmod(0o755)
    assert kamalpy("--dry-run", "audit").code == 0
    assert not marker.exists()


def test_stdout_holds_only_command_lines(kamalpy, project):
    for args in (["lock", "acquire", "-m", "x"], ["lock", "status"], ["audit"], ["server", "exec", "date"],
                 ["prune", "all"], ["server", "bootstrap"]):
        result = kamalpy("--dry-run", *args)
        assert result.code == 0, (args, result.err)
        for line in result.out.splitlines():
            host, tab, command = line.partition("\t")
            assert tab and host in (*HOSTS, "local") and command, (args, line)


def test_the_listeners_would_notice_a_connection(listeners):
    port, sockets = listeners
    with socket.create_connection((H2, port), timeout=2):
        with pytest.raises(pytest.fail.Exception):
            assert_no_connection(sockets)
