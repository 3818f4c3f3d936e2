"""``--dry-run`` of the ``app`` commands that change things and of ``app exec``: Kamal's command strings.

The expected strings are those of Kamal's ``test/commands/app_test.rb`` (reference section 7.2), rendered
the SSHKit way (``/usr/bin/env`` before a first part other than ``docker``). Values only a server knows
read ``<version>`` and ``<container id>``; timestamps ``<TS>``, the lock payload ``<B64>``, the random part
of an exec container's name ``<6hex>``. The hosts are loopback addresses with a listener on the SSH port:
the test checks that nothing connected.
"""

from __future__ import annotations

import re
import sys

import pytest
from helpers import assert_no_connection, dry_run_environment, write_project

H1, H2 = "127.0.0.2", "127.0.0.3"
PASSWORD = "pa$$w0rd-never-shown"
PERFORMER = "deployer@example.com"
# web on both hosts, workers on H2 only: H2 is where removing one role must leave the shared parts.
DEPLOY_YML = f"""\
service: app
image: dhh/app
servers:
  web:
    - {H1}
    - {H2}
  workers:
    hosts:
      - {H2}
    cmd: bin/jobs
ssh:
  port: {{port}}
registry:
  username: dhh
  password: {PASSWORD}
builder:
  arch: amd64
"""

FILTERS = "--filter label=service=app --filter label=destination= --filter label=role={role}"




class FakeStdin:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def project(tmp_path, monkeypatch, listeners):
    def write(extra: str = "") -> None:
        write_project(tmp_path, DEPLOY_YML.format(port=listeners[0]) + extra)

    write()
    monkeypatch.setattr(sys, "stdin", FakeStdin(False))
    dry_run_environment(monkeypatch, tmp_path, version="999", name="Dee Ployer", email=PERFORMER)
    return write


def _normalise(text: str) -> list[str]:
    text = re.sub(r'echo "[A-Za-z0-9+/=\\n]*" > \.kamal/lock', 'echo "<B64>" > .kamal/lock', text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<TS>", text)
    return re.sub(r"(-exec-[^ ]+)-[0-9a-f]{6}\b", r"\1-<6hex>", text).splitlines()


@pytest.fixture
def dry(kamalpy, project, listeners):
    def run(*args: str) -> list[str]:
        result = kamalpy("--dry-run", *args)
        assert result.code == 0, result.err
        assert PASSWORD not in result.out + result.err
        assert_no_connection(listeners[1])
        return _normalise(result.out)

    return run


@pytest.fixture
def fails(kamalpy, project):
    def run(*args: str) -> str:
        result = kamalpy("--dry-run", *args)
        assert result.code != 0
        assert result.out == ""
        return result.err.strip()

    return run


def lines(*pairs: tuple[str, str]) -> list[str]:
    return [f"{host}\t{command}" for host, command in pairs]


def locked(*body: tuple[str, str], hosts: tuple[str, ...] = (H1, H2)) -> list[str]:
    primary = hosts[0]  # its run directory goes with the acquire, after the other hosts'
    return lines(*((h, "/usr/bin/env mkdir -p .kamal") for h in (*hosts[1:], primary)),
                 (primary, '/usr/bin/env mkdir .kamal/lock-app && echo "<B64>" > .kamal/lock-app/details'), *body,
                 (primary, "/usr/bin/env rm .kamal/lock-app/details && rm -r .kamal/lock-app"))


def audit(host: str, message: str, role: str | None = None) -> tuple[str, str]:
    tag = f" [{role}]" if role else ""
    return (host, f'/usr/bin/env mkdir -p .kamal && echo "[<TS>] [{PERFORMER}]{tag} {message}" >> .kamal/app-audit.log')


def _quote(text: str) -> str:
    return text.replace("'", "'\\''")


def _running(role: str, fmt: str) -> str:
    """Kamal's current running container pipeline (7.2 #9, #17), before ``| head -1``."""
    latest = f"docker ps --latest {fmt} {FILTERS.format(role=role)} --filter status=running --filter status=restarting"
    ancestor = "--filter ancestor=$(docker image ls --filter reference=dhh/app:latest --format '{{.ID}}')"
    return f"/usr/bin/env sh -c '{_quote(f'{latest} {ancestor} ; {latest}')}' | head -1"


def version_of(role: str) -> str:
    return _running(role, "--format '{{.Names}}'") + f" | while read line; do echo ${{line#app-{role}-}}; done"


def stop_current(role: str, args: str = "") -> str:
    return _running(role, "--quiet") + " | xargs docker stop" + args


PROXY_DEPLOY = ('docker exec kamal-proxy kamal-proxy deploy app-web --target="<container id>:80" '
                '--deploy-timeout="30s" --drain-timeout="30s" --buffer-requests --buffer-responses '
                '--log-request-header="Cache-Control" --log-request-header="Last-Modified" '
                '--log-request-header="User-Agent"')
LOOKUP_WEB = "docker container ls --all --filter 'name=^app-web-<version>$' --quiet"


def test_kamals_stop_string_for_a_proxied_role():
    """The expected strings above are Kamal's (7.2 #9, with SSHKit's /usr/bin/env before sh)."""
    kamal = ("sh -c 'docker ps --latest --quiet --filter label=service=app --filter label=destination= --filter "
             "label=role=web --filter status=running --filter status=restarting --filter ancestor=$(docker image ls "
             "--filter reference=dhh/app:latest --format '\\''{{.ID}}'\\'') ; docker ps --latest --quiet --filter "
             "label=service=app --filter label=destination= --filter label=role=web --filter status=running --filter "
             "status=restarting' | head -1 | xargs docker stop")
    assert stop_current("web") == "/usr/bin/env " + kamal


# ----- start / stop -----

def _start(host: str, role: str) -> list[tuple[str, str]]:
    steps = [audit(host, "Started app version 999"), (host, f"docker start app-{role}-999")]
    if role == "web":
        steps += [(host, version_of("web")), (host, LOOKUP_WEB), (host, PROXY_DEPLOY)]
    return steps


def _stop(host: str, role: str) -> list[tuple[str, str]]:
    if role == "web":  # proxied: drop the route when a container runs; no -t (the proxy drained it)
        return [audit(host, "Stopped app", "web"), (host, version_of("web")), (host, LOOKUP_WEB),
                (host, "docker exec kamal-proxy kamal-proxy remove app-web"), (host, stop_current("web"))]
    return [audit(host, "Stopped app", role), (host, stop_current(role, " -t 30"))]  # drain_timeout


def test_start(dry):
    assert dry("app", "start") == locked(*_start(H1, "web"), *_start(H2, "web"), *_start(H2, "workers"))


def test_start_with_a_version(dry):
    assert dry("app", "start", "--version", "123", "-r", "workers") == locked(
        audit(H2, "Started app version 123"), (H2, "docker start app-workers-123"), hosts=(H2,))


def test_stop(dry):
    assert dry("app", "stop") == locked(*_stop(H1, "web"), *_stop(H2, "web"), *_stop(H2, "workers"))


def test_stop_with_drain_timeout(dry, project):
    project("drain_timeout: 20\n")
    assert dry("app", "stop", "-r", "workers") == locked(
        audit(H2, "Stopped app", "workers"), (H2, stop_current("workers", " -t 20")), hosts=(H2,))


# ----- maintenance / live -----

def test_maintenance_defaults_to_the_config_drain_timeout(dry):
    stop = 'docker exec kamal-proxy kamal-proxy stop app-web --drain-timeout="30s"'
    assert dry("app", "maintenance") == locked((H1, stop), (H2, stop))


def test_maintenance_with_options(dry):
    stop = 'docker exec kamal-proxy kamal-proxy stop app-web --drain-timeout="10s" --message="Hi"'  # 7.2 #16
    assert dry("app", "maintenance", "--drain-timeout", "10", "--message", "Hi") == locked((H1, stop), (H2, stop))
    spaced = dry("app", "maintenance", "-h", H1, "--message", "Back at 5")
    assert spaced == locked((H1, 'docker exec kamal-proxy kamal-proxy stop app-web --drain-timeout="30s" '
                                 '--message="Back at 5"'), hosts=(H1,))


def test_live(dry):
    resume = "docker exec kamal-proxy kamal-proxy resume app-web"  # 7.2 #16
    assert dry("app", "live") == locked((H1, resume), (H2, resume))


def test_maintenance_skips_roles_without_proxy(dry):
    # workers run no proxy: nothing to do on its hosts, but the lock is still taken.
    assert dry("app", "live", "-r", "workers") == locked(hosts=(H2,))


# ----- remove -----

def _containers(host: str, role: str) -> list[tuple[str, str]]:
    return [audit(host, "Removed all app containers", role),
            (host, f"docker container prune --force {FILTERS.format(role=role)}")]


def _images(host: str) -> list[tuple[str, str]]:
    return [audit(host, "Removed all app images"),
            (host, "docker image prune --all --force --filter label=service=app")]


def _directories(host: str, *roles: str) -> list[tuple[str, str]]:
    # Kamal 2.11 removes the directory once per role, and writes one audit line per host, without a role.
    each = [(host, "/usr/bin/env rm -r .kamal/apps/app") for _ in roles]
    return [*each, audit(host, "Removed .kamal/apps/app"), (host, "/usr/bin/env rm -r .kamal/proxy/apps-config/app")]


def test_remove(dry):
    assert dry("app", "remove") == locked(
        *_stop(H1, "web"), *_stop(H2, "web"), *_stop(H2, "workers"),
        *_containers(H1, "web"), *_containers(H2, "web"), *_containers(H2, "workers"),
        *_images(H1), *_images(H2),
        *_directories(H1, "web"), *_directories(H2, "web", "workers"))


def test_remove_one_role_keeps_what_other_roles_share(dry, kamalpy):
    # H2 also runs web: its images and app directories stay.
    assert dry("app", "remove", "-r", "workers") == locked(
        *_stop(H2, "workers"), *_containers(H2, "workers"), hosts=(H2,))
    assert dry("app", "remove", "-r", "web") == locked(
        *_stop(H1, "web"), *_stop(H2, "web"), *_containers(H1, "web"), *_containers(H2, "web"),
        *_images(H1), *_directories(H1, "web"))
    said = kamalpy("--dry-run", "app", "remove", "-r", "web").err
    assert f"Keeping the app images on {H2}: other roles of the app remain there" in said
    # Both roles of H2 selected by host: everything of H2 goes.
    assert dry("app", "remove", "-h", H2) == locked(
        *_stop(H2, "web"), *_stop(H2, "workers"), *_containers(H2, "web"), *_containers(H2, "workers"),
        *_images(H2), *_directories(H2, "web", "workers"), hosts=(H2,))


def test_hidden_remove_commands(dry, kamalpy):
    remove = "docker container ls --all --filter 'name=^app-web-123$' --quiet | xargs docker container rm"  # 7.2 #19
    assert dry("app", "remove_container", "123", "-r", "web") == locked(
        audit(H1, "Removed app container with version 123", "web"), (H1, remove),
        audit(H2, "Removed app container with version 123", "web"), (H2, remove))
    assert dry("app", "remove_containers", "-h", H2) == locked(
        *_containers(H2, "web"), *_containers(H2, "workers"), hosts=(H2,))
    assert dry("app", "remove_images") == locked(*_images(H1), *_images(H2))
    assert dry("app", "remove_app_directories", "-h", H1) == locked(*_directories(H1, "web"), hosts=(H1,))
    listed = kamalpy("app", "--help").out
    assert "remove_container" not in listed and "remove_images" not in listed
    assert all(name in listed for name in ("start", "stop", "maintenance", "live", "remove", "exec", "boot"))


# ----- exec -----

LOGIN = "docker login -u [REDACTED] --password-stdin"


def _exec_audit(host: str, cmd: str, version: str, role: str | None = None) -> tuple[str, str]:
    return audit(host, f"Executed cmd '{cmd}' on app version {version}", role)


def _env(host: str, role: str, size: int = 1) -> list[tuple[str, str]]:
    """kamalpy writes the role's env file before a new container uses it (a deliberate difference: Kamal
    leaves it to ``app boot``, so a first deploy's pre-deploy ``app exec`` finds none, kamal#1700)."""
    return [(host, "/usr/bin/env mkdir -p .kamal/apps/app/env/roles"),
            (host, f"upload\tupload .kamal/apps/app/env/roles/{role}.env mode 0600 ({size} bytes)")]


def _new(host: str, role: str, rest: str, version: str = "999", run: str = "--rm") -> str:
    return (f"docker run {run} --name app-{role}-exec-{version}-<6hex> --network kamal --env-file "
            f".kamal/apps/app/env/roles/{role}.env {rest}")


def test_exec_in_new_containers(dry):
    # 7.2 #22: `--env foo="bar"` after the role's env file; the role's cmd is not used.
    rest = '--env foo="bar" --log-opt max-size="10m" dhh/app:999 bin/rails db:setup'
    assert dry("app", "exec", "--version", "999", "-e", "foo=bar", "bin/rails", "db:setup") == lines(
        *_env(H1, "web"), (H1, LOGIN), _exec_audit(H1, "bin/rails db:setup", "999"), (H1, _new(H1, "web", rest)),
        *_env(H2, "web"), *_env(H2, "workers"),
        (H2, LOGIN), _exec_audit(H2, "bin/rails db:setup", "999"), (H2, _new(H2, "web", rest)),
        _exec_audit(H2, "bin/rails db:setup", "999"), (H2, _new(H2, "workers", rest)))


def test_exec_without_version_uses_the_latest_tag(dry, kamalpy):
    assert dry("app", "exec", "-p", "ruby -v") == lines(
        *_env(H1, "web"), (H1, LOGIN), _exec_audit(H1, "ruby -v", "latest"),
        (H1, _new(H1, "web", '--log-opt max-size="10m" dhh/app:latest ruby -v', "latest")))
    said = kamalpy("--dry-run", "app", "exec", "-p", "ruby -v").err
    assert "Get most recent version available as an image..." in said
    assert "Launching command with version latest from new container..." in said


def test_exec_detached(dry):
    # 7.2 #22: --detach instead of --rm; an unknown option belongs to the command (Kamal's Thor does the same).
    assert dry("app", "exec", "--version", "999", "-p", "--detach", "bin/rails", "db:setup", "-x") == lines(
        *_env(H1, "web"), (H1, LOGIN), _exec_audit(H1, "bin/rails db:setup -x", "999"),
        (H1, _new(H1, "web", '--log-opt max-size="10m" dhh/app:999 bin/rails db:setup -x', run="--detach")))


def test_exec_reuse(dry):
    # 7.2 #22: `docker exec --env foo="bar" app-web-999 ...`; Kamal's KEY:VALUE form works too.
    found = dry("app", "exec", "--reuse", "--version", "999", "-e", "foo:bar", "-r", "web", "bin/rails db:setup")
    assert found == lines(
        _exec_audit(H1, "bin/rails db:setup", "999", "web"),
        (H1, 'docker exec --env foo="bar" app-web-999 bin/rails db:setup'),
        _exec_audit(H2, "bin/rails db:setup", "999", "web"),
        (H2, 'docker exec --env foo="bar" app-web-999 bin/rails db:setup'))


def test_exec_reuse_asks_the_primary_host_for_the_running_version(dry):
    assert dry("app", "exec", "--reuse", "-h", H2, "ls") == lines(
        (H2, version_of("web")),
        _exec_audit(H2, "ls", "<version>", "web"), (H2, "docker exec app-web-<version> ls"),
        _exec_audit(H2, "ls", "<version>", "workers"), (H2, "docker exec app-workers-<version> ls"))


def test_exec_interactive(dry, project, monkeypatch):
    project("env:\n  clear:\n    ENV1: value1\n")
    monkeypatch.setattr(sys, "stdin", FakeStdin(True))
    # 7.2 #22: the local ssh line, -it with a terminal; the registry login on the primary host first.
    ssh = ("ssh -t root@{host} -p {port} 'docker run -it --rm --name app-web-exec-999-<6hex> --network kamal "
           "--env ENV1=\"value1\" --env-file .kamal/apps/app/env/roles/web.env --log-opt max-size=\"10m\" "
           "dhh/app:999 bin/rails c'")
    found = dry("app", "exec", "-i", "--version", "999", "bin/rails c")
    port = re.search(r" -p (\d+) ", found[-1]).group(1)
    assert found == lines((H1, LOGIN), ("local", ssh.format(host=H1, port=port)))


def test_exec_interactive_without_a_terminal_and_reuse(dry, listeners):
    port = listeners[0]
    assert dry("app", "exec", "-i", "--reuse", "--version", "5", "-e", "A=1", "bash") == lines(
        ("local", f"ssh -t root@{H1} -p {port} 'docker exec -i --env A=\"1\" app-web-5 bash'"))
    assert dry("app", "exec", "-i", "-h", H2, "-r", "workers", "--version", "5", "sh") == lines(
        (H2, LOGIN), ("local", f"ssh -t root@{H2} -p {port} 'docker run -i --rm --name app-workers-exec-5-<6hex> "
                               "--network kamal --env-file .kamal/apps/app/env/roles/workers.env "
                               "--log-opt max-size=\"10m\" dhh/app:5 sh'"))


def test_exec_interactive_hands_over_and_passes_the_exit_status(kamalpy, project, monkeypatch, listeners):
    from kamalpy import handover

    calls = []

    class Child:
        def __init__(self, argv: list[str]) -> None:
            calls.append(argv)

        def wait(self) -> int:
            return 3

    monkeypatch.setattr(handover.subprocess, "Popen", Child)
    result = kamalpy("app", "exec", "-i", "--reuse", "--version", "5", "bash")
    assert result.code == 3, result.err
    assert calls == [["/bin/sh", "-c", f"exec ssh -t root@{H1} -p {listeners[0]} 'docker exec -i app-web-5 bash'"]]


@pytest.mark.parametrize("args, message", [
    ((), "No command provided. You must specify a command to execute."),
    (("--reuse",), "No command provided. You must specify a command to execute."),
    (("--detach", "-i", "ls"), "Detach is not compatible with interactive"),
    (("--detach", "--reuse", "ls"), "Detach is not compatible with reuse"),
    (("--detach", "-i", "--reuse", "ls"), "Detach is not compatible with interactive or reuse"),
    (("-e", "NOVALUE", "ls"), "Invalid --env value 'NOVALUE': expected KEY=VALUE (or KEY:VALUE)"),
])
def test_exec_refuses_bad_input(fails, args, message):
    assert fails("app", "exec", *args) == f"ERROR: {message}"


def test_bad_options(fails):
    assert "is not a valid integer" in fails("app", "maintenance", "--drain-timeout", "soon")
    assert "Missing argument 'VERSION'" in fails("app", "remove_container")
    assert "No such option" in fails("app", "stop", "--force")


# ----- boot -----

# How a role without proxy is waited for: one loop on the server, NAME being the container (a deliberate
# difference: Kamal looks at its status once per round trip, see docs/moving-from-kamal.md).
WAIT_LOOP = ("(end=$(($(date +%s)+30)); seen=; while :; do s=$(docker inspect --format '{{if .State.Health}}"
             "{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}} {{.RestartCount}}' NAME 2>/dev/null); "
             'st=${s% *}; if [ "$st" = healthy ] || { [ "$st" = running ] && [ "$s" = "$seen" ]; }; then echo "$st"; '
             'exit 0; fi; if [ "$st" = running ]; then [ -z "$seen" ] || st=restarting; seen=$s; '
             '[ "$(date +%s)" -lt "$end" ] || { echo "$st"; exit 1; }; sleep 7; continue; fi; seen=; '
             '[ "$(date +%s)" -lt "$end" ] || { echo "${st:-missing}"; exit 1; }; sleep 0.1; done)')


def _booted(host: str, role: str, cmd: str = "") -> list[str]:
    """Kamal's boot of one role on one host with no container running (7.2 #5, #9, #12, #13)."""
    name = f"app-{role}-999"
    run = (f"docker run --detach --restart unless-stopped --name {name} --network kamal "
           f"--hostname {host}-<12hex> --env KAMAL_CONTAINER_NAME=\"{name}\" --env KAMAL_VERSION=\"999\" "
           f"--env KAMAL_HOST=\"{host}\" --env-file .kamal/apps/app/env/roles/{role}.env --log-opt max-size=\"10m\" "
           f"--label service=\"app\" --label role=\"{role}\" --label destination dhh/app:999{cmd}")
    lookup = f"docker container ls --all --filter 'name=^{name}$' --quiet"
    # A proxied role is deployed to kamal-proxy (the id from `docker run`'s output: Kamal asks `docker container
    # ls` again); another one is waited for by its container state, in one loop on the server (a deliberate
    # difference: Kamal looks once per round trip).
    ready = ([(host, PROXY_DEPLOY)] if role == "web" else
             [(host, WAIT_LOOP.replace("NAME", name))])
    return lines((host, lookup), (host, version_of(role)), audit(host, "Booted app version 999", role),
                 (host, "/usr/bin/env mkdir -p .kamal/apps/app/env/roles"),
                 (host, f"upload\tupload .kamal/apps/app/env/roles/{role}.env mode 0600 (1 bytes)"),
                 (host, run), *ready)


def test_boot_dry_run(dry):
    found = [re.sub(r"(--hostname \S+)-[0-9a-f]{12} ", r"\1-<12hex> ", line)
             for line in dry("app", "boot", "--version", "999")]
    tag = [(host, "docker tag dhh/app:999 dhh/app:latest") for host in (H1, H2)]
    assert found == locked(*(tuple(line.split("\t", 1)) for line in
                             _booted(H1, "web") + _booted(H2, "web") + _booted(H2, "workers", " bin/jobs")),
                           audit(H1, "Tagging dhh/app:999 as the latest image"), tag[0],
                           audit(H2, "Tagging dhh/app:999 as the latest image"), tag[1])
