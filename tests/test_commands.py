"""The command layer: every command of kamal.md §7.6-§7.11, joined (Kamal's unit tests) and rendered (SSHKit)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from kamalpy.commands import auditor, docker, hook, lock, prune, registry, server
from kamalpy.commands.base import (
    Sensitive,
    any_of,
    append,
    chain,
    combine,
    file_join,
    iso8601,
    join,
    pipe,
    render,
    shell,
    write,
)
from kamalpy.commands.tags import service_version
from kamalpy.config.model import Configuration
from kamalpy.errors import KamalpyError

BASE = """
service: app
image: dhh/app
registry: {username: dhh, password: secret}
builder: {arch: amd64}
servers: [1.1.1.1]
"""
AT = "2026-06-18T12:00:00Z"
ME = "dhh@example.com"


def make(extra: str = "", *, destination: str | None = None, version: str = "123") -> Configuration:
    raw = yaml.safe_load(BASE + extra)
    return Configuration(raw, destination=destination, version=version)


# ----- base: joining and SSHKit rendering -----

def test_combinators_join_like_kamal() -> None:
    assert join(combine(["a", "1"], None, ["b"])) == "a 1 && b"
    assert join(chain(["a"], ["b"])) == "a ; b"
    assert join(pipe(["a"], "b c")) == "a | b c"
    assert join(any_of(["a"], ["b"])) == "a || b"
    assert join(append(["echo", "x"], "f")) == "echo x >> f"
    assert join(write(["echo", "x"], "f")) == "echo x > f"
    assert join(combine(pipe(["a"], ["b"]), ["c"])) == "a | b && c"
    assert combine() == []


def test_shell_quotes_single_quotes() -> None:
    assert join(shell(["echo", "it's"])) == "sh -c 'echo it'\\''s'"
    assert render(shell(["echo", "x"])) == "/usr/bin/env sh -c 'echo x'"


def test_render_maps_only_the_first_token() -> None:
    assert render(["docker", "ps"]) == "docker ps"
    assert render(["mkdir", "-p", ".kamal"]) == "/usr/bin/env mkdir -p .kamal"
    assert render(chain(["mkdir", "-p", "X"], ["cp", "-rnT", "A", "B"])) == "/usr/bin/env mkdir -p X ; cp -rnT A B"
    assert render(pipe(["docker", "ps"], ["grep", "x"])) == "docker ps | grep x"
    assert render([".kamal/hooks/pre-deploy"]) == "/usr/bin/env .kamal/hooks/pre-deploy"
    assert render(["  mkdir  ", "x"]) == "/usr/bin/env mkdir x"  # SSHKit strips the command name


def test_render_sends_a_first_part_with_whitespace_raw() -> None:
    assert render(['[ "${EUID:-$(id -u)}" -eq 0 ]']) == '[ "${EUID:-$(id -u)}" -eq 0 ]'


def test_render_wraps_env() -> None:
    assert render(["docker", "ps"], {"A": "1", "B": 'x"y'}) == '( export A="1" B="x\\"y" ; docker ps )'
    assert render(["ls"], {}) == "/usr/bin/env ls"


def test_render_rejects_an_empty_command() -> None:
    with pytest.raises(ValueError):
        render([])


def test_sensitive_parts_redact_only_when_asked() -> None:
    cmd = ["docker", "login", "-u", Sensitive('"dhh"')]
    assert join(cmd) == 'docker login -u "dhh"'
    assert join(cmd, redact=True) == "docker login -u [REDACTED]"
    assert render(cmd, redact=True) == "docker login -u [REDACTED]"


def test_file_join_and_iso8601() -> None:
    assert file_join(".kamal/", "/lock-app") == ".kamal/lock-app"
    assert file_join("custom/hooks/path", "foo") == "custom/hooks/path/foo"
    assert iso8601(datetime(2026, 6, 18, 12, 0, 0, 999999, tzinfo=timezone.utc)) == AT
    assert iso8601(datetime(2026, 6, 18, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))) == AT
    assert iso8601(datetime(2026, 6, 18, 12, 0, 0)) == AT  # naive counts as UTC
    assert len(iso8601()) == len(AT)


# ----- §7.6 registry -----

def test_registry_login_uses_password_stdin() -> None:
    config = make("registry: {server: hub.docker.com, username: dhh, password: secret}")
    cmd, stdin = registry.login(config)
    assert join(cmd) == 'docker login hub.docker.com -u "dhh" --password-stdin'
    assert render(cmd, redact=True) == "docker login hub.docker.com -u [REDACTED] --password-stdin"
    assert stdin == b"secret"
    assert "secret" not in render(cmd)


def test_registry_login_docker_hub_has_no_server() -> None:
    cmd, stdin = registry.login(make())
    assert join(cmd) == 'docker login -u "dhh" --password-stdin'
    assert stdin == b"secret"


def test_registry_login_hostile_credentials() -> None:
    config = make("""registry: {server: hub.docker.com, username: "us'er$x", password: "more-secret'\\"$(x)"}""")
    cmd, stdin = registry.login(config)
    assert join(cmd) == 'docker login hub.docker.com -u "us\'er\\$x" --password-stdin'
    assert stdin == b"more-secret'\"$(x)"


def test_registry_login_for_an_accessory_registry() -> None:
    config = make("""
registry: {server: hub.docker.com, username: dhh, password: secret}
accessories:
  db: {image: mysql, host: 1.1.1.1, registry: {server: other.hub.docker.com, username: user, password: pw}}
""")
    cmd, stdin = registry.login(config, config.accessory("db").registry)
    assert join(cmd) == 'docker login other.hub.docker.com -u "user" --password-stdin'
    assert stdin == b"pw"


def test_registry_logout() -> None:
    assert join(registry.logout(make("registry: {server: hub.docker.com, username: d, password: p}"))) == \
        "docker logout hub.docker.com"
    assert join(registry.logout(make())) == "docker logout"


def test_local_registry_refuses_login_and_logout() -> None:
    config = make('registry: {server: "localhost:5000"}')
    with pytest.raises(KamalpyError, match=r"^Cannot use login command with a local registry\. "
                                           r"Use `kamal registry setup` instead\.$"):
        registry.login(config)
    with pytest.raises(KamalpyError, match=r"^Cannot use logout command with a local registry\. "
                                           r"Use `kamal registry remove` instead\.$"):
        registry.logout(config)


def test_local_registry_setup_and_remove() -> None:
    config = make('registry: {server: "localhost:5000"}')
    assert join(registry.setup(config)) == ("docker start kamal-docker-registry || docker run --detach "
                                            "-p 127.0.0.1:5000:5000 --name kamal-docker-registry registry:3")
    assert join(registry.setup(make('registry: {server: "localhost:5555"}'))).count("127.0.0.1:5555:5000") == 1
    assert join(registry.remove()) == "docker stop kamal-docker-registry && docker rm kamal-docker-registry"
    assert render(registry.remove()) == join(registry.remove())


# ----- §7.7 lock -----

def _acquire(config: Configuration, message: str) -> list[str]:
    return lock.acquire(config, message, config.version, locked_by="David", locked_at=AT)


def test_lock_status_acquire_release_with_destination() -> None:
    config = make(destination="production")
    assert join(lock.status(config)) == ("stat .kamal/lock-app-production > /dev/null && "
                                         "cat .kamal/lock-app-production/details | base64 -d")
    assert render(lock.status(config)).startswith("/usr/bin/env stat .kamal/lock-app-production > /dev/null && cat ")
    details = "Locked by: David at 2026-06-18T12:00:00Z\nVersion: 123\nMessage: Automatic deploy lock"
    encoded = base64.b64encode(details.encode()).decode()
    expected_b64 = "".join(encoded[i:i + 60] + "\n" for i in range(0, len(encoded), 60))
    assert join(_acquire(config, lock.AUTOMATIC_MESSAGE)) == (
        f'mkdir .kamal/lock-app-production && echo "{expected_b64}" > .kamal/lock-app-production/details')
    assert join(lock.release(config)) == \
        "rm .kamal/lock-app-production/details && rm -r .kamal/lock-app-production"
    assert render(lock.release(config)) == \
        "/usr/bin/env rm .kamal/lock-app-production/details && rm -r .kamal/lock-app-production"


def test_lock_dir_without_destination() -> None:
    config = make()
    assert lock.lock_dir(config) == ".kamal/lock-app"
    assert lock.lock_details_file(config) == ".kamal/lock-app/details"
    assert join(lock.ensure_run_directory()) == "mkdir -p .kamal"
    assert render(lock.ensure_run_directory()) == "/usr/bin/env mkdir -p .kamal"


def test_encode64_is_rubys() -> None:
    assert lock.encode64("") == ""
    assert lock.encode64("a") == "YQ==\n"
    assert lock.encode64(b"x" * 45) == "eHh4" * 15 + "\n"  # exactly one full line
    long = lock.encode64("x" * 46)
    assert long == "eHh4" * 15 + "\neA==\n"
    for line in lock.encode64("é" * 500).splitlines():
        assert len(line) <= 60


def test_long_lock_message_wraps_at_60() -> None:
    message = "deploying the big migration, do not touch " * 5
    cmd = _acquire(make(), message)
    argument = cmd[cmd.index("echo") + 1]
    assert argument.startswith('"') and argument.endswith('\n"')
    lines = argument[1:-1].splitlines()
    assert len(lines) > 3 and all(len(line) == 60 for line in lines[:-1]) and len(lines[-1]) <= 60
    assert lock.decode_details(argument[1:-1]).endswith("Message: " + message.strip())


def test_lock_details_strip_like_ruby() -> None:
    assert lock.lock_details("me", AT, "1", "msg \n\t") == f"Locked by: me at {AT}\nVersion: 1\nMessage: msg"
    assert lock.lock_details("", AT, "1", "m").startswith("Locked by:  at ")


@pytest.mark.parametrize("message", ['say "hi" $HOME `id` $(id)', "two\nlines\n", "naïve ünïcödé 🚀", "a'b\\c"])
def test_hostile_lock_messages_round_trip(message: str) -> None:
    cmd = _acquire(make(), message)
    argument = cmd[cmd.index("echo") + 1]
    assert set(argument) <= set('"\n+/=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789')
    details = lock.decode_details(argument.strip('"'))
    parsed = lock.parse_details(details)
    assert parsed == lock.LockDetails("David", AT, "123", message.strip())
    assert not parsed.automatic


def test_parse_lock_details() -> None:
    text = f"Locked by: Jo at Home at {AT}\nVersion: 9\nMessage: Automatic deploy lock\n"
    assert lock.parse_details(text) == lock.LockDetails("Jo at Home", AT, "9", "Automatic deploy lock")
    assert lock.parse_details(text).automatic
    assert lock.parse_details("something else") is None
    assert lock.decode_details("not base64!") == "not base64!"
    assert lock.decode_details(lock.encode64(text).encode()) == text


@pytest.mark.skipif(shutil.which("sh") is None or shutil.which("base64") is None, reason="needs sh and base64")
def test_lock_commands_run_in_a_shell(tmp_path: Path) -> None:
    """Acquire, status and release against a real shell: the lock is a directory, status decodes it."""
    config = make(destination="production")
    message = 'hostile "q" $HOME `id` é\nsecond'

    def sh(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", render(cmd)], cwd=tmp_path, capture_output=True, text=True)

    assert sh(lock.ensure_run_directory()).returncode == 0
    assert sh(_acquire(config, message)).returncode == 0
    second = sh(_acquire(config, message))
    assert second.returncode != 0 and lock.HELD_MARKER in second.stderr
    status = sh(lock.status(config))
    assert lock.parse_details(status.stdout) == lock.LockDetails("David", AT, "123", message)
    assert sh(lock.release(config)).returncode == 0
    missing = sh(lock.status(config))
    assert missing.returncode != 0 and lock.MISSING_MARKER in missing.stderr


# ----- §7.8 auditor -----

def _record(config: Configuration, line: str, **details: str) -> str:
    return join(auditor.record(config, line, performer=ME, recorded_at=AT, details=details))


def test_audit_record() -> None:
    assert _record(make(), "app removed container") == (
        f'mkdir -p .kamal && echo "[{AT}] [{ME}] app removed container" >> .kamal/app-audit.log')
    assert render(auditor.record(make(), "x", performer=ME, recorded_at=AT)) == (
        f'/usr/bin/env mkdir -p .kamal && echo "[{AT}] [{ME}] x" >> .kamal/app-audit.log')


def test_audit_record_with_destination_role_and_details() -> None:
    assert _record(make(destination="staging"), "app removed container") == (
        f'mkdir -p .kamal && echo "[{AT}] [{ME}] [staging] app removed container" >> .kamal/app-staging-audit.log')
    assert _record(make(), "app removed container", role="web") == (
        f'mkdir -p .kamal && echo "[{AT}] [{ME}] [web] app removed container" >> .kamal/app-audit.log')
    assert _record(make(), "app removed container", detail="value") == (
        f'mkdir -p .kamal && echo "[{AT}] [{ME}] [value] app removed container" >> .kamal/app-audit.log')
    assert _record(make(destination="staging"), "m", role="web") == (
        f'mkdir -p .kamal && echo "[{AT}] [{ME}] [staging] [web] m" >> .kamal/app-staging-audit.log')


def test_audit_never_reads_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    config = make()
    config.version = None
    monkeypatch.delenv("VERSION", raising=False)
    config._git_version = lambda: pytest.fail("the audit line must not need the version")  # type: ignore[method-assign]
    assert "[web]" in _record(config, "m", role="web")


@pytest.mark.parametrize(("line", "echoed"), [
    ('say "hi"', 'say \\"hi\\"'),
    ("cost $5 ${HOME}", "cost \\$5 ${HOME}"),
    ("run `id` $(id)", "run \\`id\\` \\$(id)"),
    ("two\nlines", "two\\nlines"),
    ("back\\slash", "back\\\\slash"),
    ("it's", "it's"),
    ("héllo wörld", 'h"é"llo w"ö"rld'),
])
def test_audit_hostile_messages(line: str, echoed: str) -> None:
    assert _record(make(), line) == f'mkdir -p .kamal && echo "[{AT}] [{ME}] {echoed}" >> .kamal/app-audit.log'


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_audit_hostile_message_is_not_expanded_by_the_shell(tmp_path: Path) -> None:
    line = "Executed cmd 'echo $HOME `id` $(id) \"q\" é' on 1.1.1.1"
    cmd = auditor.record(make(), line, performer=ME, recorded_at=AT)
    subprocess.run(["sh", "-c", render(cmd)], cwd=tmp_path, check=True)
    assert (tmp_path / ".kamal/app-audit.log").read_text() == f"[{AT}] [{ME}] {line}\n"


def test_audit_reveal() -> None:
    assert join(auditor.reveal(make())) == "tail -n 50 .kamal/app-audit.log"
    assert render(auditor.reveal(make(destination="staging"))) == "/usr/bin/env tail -n 50 .kamal/app-staging-audit.log"


# ----- §7.9 prune -----

def test_prune_images() -> None:
    config = make()
    assert join(prune.dangling_images(config)) == "docker image prune --force --filter label=service=app"
    assert join(prune.tagged_images(config)) == (
        "docker image ls --filter label=service=app --format '{{.ID}} {{.Repository}}:{{.Tag}}' | "
        "grep -v -w \"$(docker container ls -a --format '{{.Image}}\\|' --filter label=service=app | tr -d '\\n')"
        "dhh/app:latest\\|dhh/app:<none>\" | while read image tag; do docker rmi $tag; done")
    assert render(prune.tagged_images(config)) == join(prune.tagged_images(config))


def test_prune_images_with_destination_keeps_its_latest_tag() -> None:
    assert "dhh/app:latest-staging\\|dhh/app:<none>" in join(prune.tagged_images(make(destination="staging")))


@pytest.mark.parametrize(("retain", "tail"), [(5, 6), (3, 4), (1, 2)])
def test_prune_containers(retain: int, tail: int) -> None:
    assert join(prune.app_containers(make(), retain=retain)) == (
        "docker ps -q -a --filter label=service=app --filter status=created --filter status=exited "
        f"--filter status=dead | tail -n +{tail} | while read container_id; do docker rm $container_id; done")


def test_prune_containers_default_retain_from_config() -> None:
    config = make("retain_containers: 3")
    assert "tail -n +4 |" in join(prune.app_containers(config, retain=config.retain_containers))


# ----- §7.10 docker / server -----

def test_docker_bootstrap_commands() -> None:
    assert join(docker.install()) == ("sh -c 'curl -fsSL https://get.docker.com || wget -O - https://get.docker.com"
                                      " || echo \"exit 1\"' | sh")
    assert render(docker.install()) == "/usr/bin/env " + join(docker.install())
    assert join(docker.installed()) == "docker -v"
    assert join(docker.running()) == "docker version"
    assert join(docker.create_network()) == "docker network create kamal"
    raw = {
        docker.superuser: '[ "${EUID:-$(id -u)}" -eq 0 ] || sudo -nl usermod >/dev/null',
        docker.root: '[ "${EUID:-$(id -u)}" -eq 0 ]',
        docker.in_docker_group: 'id -nG "${USER:-$(id -un)}" | grep -qw docker',
        docker.add_to_docker_group: 'sudo -n usermod -aG docker "${USER:-$(id -un)}"',
        docker.refresh_session: "kill -HUP $PPID",
    }
    for builder, expected in raw.items():
        assert join(builder()) == expected
        assert render(builder()) == expected  # sent raw, no /usr/bin/env


def test_server_commands() -> None:
    assert join(server.ensure_run_directory()) == "mkdir -p .kamal"
    assert join(server.app_directory_count(make())) == "ls .kamal/apps | wc -l"
    assert render(server.app_directory_count(make())) == "/usr/bin/env ls .kamal/apps | wc -l"
    assert join(server.remove_app_directory(make())) == "rm -r .kamal/apps/app"
    assert join(server.remove_app_directory(make(destination="staging"))) == "rm -r .kamal/apps/app-staging"


# ----- §7.11 hooks -----

def test_hook_run_and_path(tmp_path: Path) -> None:
    assert hook.run(make(), "foo") == [".kamal/hooks/foo"]
    assert render(hook.run(make(), "pre-deploy")) == "/usr/bin/env .kamal/hooks/pre-deploy"
    assert hook.run(make("hooks_path: custom/hooks/path"), "foo") == ["custom/hooks/path/foo"]
    assert not hook.hook_exists(make(), "foo", root=tmp_path)
    (tmp_path / ".kamal/hooks").mkdir(parents=True)
    (tmp_path / ".kamal/hooks/foo").write_text("#!/bin/sh\n")
    assert hook.hook_exists(make(), "foo", root=tmp_path)


def test_hook_env_minimal() -> None:
    env = hook.hook_env(make(), performer=ME, recorded_at=AT, hosts=["1.1.1.1", "1.1.1.2"], lock=False,
                        command="deploy")
    assert list(env.items()) == [
        ("KAMAL_RECORDED_AT", AT), ("KAMAL_PERFORMER", ME), ("KAMAL_VERSION", "123"),
        ("KAMAL_SERVICE_VERSION", "app@123"), ("KAMAL_SERVICE", "app"), ("KAMAL_HOSTS", "1.1.1.1,1.1.1.2"),
        ("KAMAL_LOCK", "false"), ("KAMAL_COMMAND", "deploy")]


def test_hook_env_everything() -> None:
    env = hook.hook_env(make(destination="staging", version="0123456789abcdef"), performer=ME, recorded_at=AT,
                        hosts=["1.1.1.1"], roles=["web", "workers"], lock=True, command="app", subcommand="boot",
                        runtime=12.5, secrets={"DB_PASSWORD": "secret"})
    assert env == {
        "KAMAL_RECORDED_AT": AT, "KAMAL_PERFORMER": ME, "KAMAL_DESTINATION": "staging",
        "KAMAL_VERSION": "0123456789abcdef", "KAMAL_SERVICE_VERSION": "app@0123456", "KAMAL_SERVICE": "app",
        "KAMAL_HOSTS": "1.1.1.1", "KAMAL_ROLES": "web,workers", "KAMAL_LOCK": "true", "KAMAL_COMMAND": "app",
        "KAMAL_SUBCOMMAND": "boot", "KAMAL_RUNTIME": "13", "DB_PASSWORD": "secret"}
    assert list(env)[2] == "KAMAL_DESTINATION"


def test_hook_env_service_version_keeps_underscored_versions() -> None:
    config = make(version="abcdef0123_uncommitted_0123456789abcdef")
    assert service_version(config) == "app@abcdef0123_uncommitted_0123456789abcdef"
    env = hook.hook_env(config, performer=ME, hosts=[], lock=False, command="deploy")
    assert env["KAMAL_SERVICE_VERSION"] == "app@abcdef0123_uncommitted_0123456789abcdef"
    assert env["KAMAL_HOSTS"] == ""  # present even when empty, as Kamal's `hosts.join(",")`


def test_ruby_round() -> None:
    assert [hook.ruby_round(x) for x in (0.4, 0.5, 1.5, 2.5, 2.49)] == [0, 1, 2, 3, 2]
