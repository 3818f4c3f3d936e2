"""End to end on the sandbox servers: kamalpy (a subprocess) talking SSH to real hosts.

Each test gets its own service name, so its lock directory and audit log are its own even on servers
other sessions use, and cleans them up. Counting SSH logins uses a key made for this module: sshd logs
its fingerprint with every login, so other users of the sandbox cannot disturb the count.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from e2e_fixtures import E2EProject
from helpers import KAMALPY, Result, run_kamalpy

pytestmark = pytest.mark.sandbox

PERFORMER = "deployer@example.com"
LOCKER = "Dee Ployer"
VERSION = "v1"
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
CONNECT_TIMEOUT = 10  # kamalpy's default


# -- helpers ---------------------------------------------------------------------------------------

def ruby_encode64(data: bytes) -> str:
    """Ruby's Base64.encode64: 60 characters a line, each line newline-terminated."""
    encoded = base64.b64encode(data).decode()
    return "".join(encoded[i:i + 60] + "\n" for i in range(0, len(encoded), 60))


def errors(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("ERROR")]


def assert_clean(result: Result) -> None:
    """No traceback and at most one error line, whatever happened."""
    assert "Traceback" not in result.out + result.err, result.err
    assert len(errors(result)) <= 1, result.err


def by_host(result: Result) -> dict[str, str]:
    """``App Host: H\\n<output>\\n\\n`` blocks of stdout."""
    found = re.findall(r"^App Host: (\S+)\n(.*?)\n\n", result.out, re.MULTILINE | re.DOTALL)
    return dict(found)


class Project(E2EProject):
    """A project directory for the sandbox hosts, run with ``kamalpy`` as a subprocess."""

    PREFIX = "e2e"

    def __init__(self, root: Path, sandbox) -> None:
        super().__init__(root, sandbox)
        self.hosts = list(sandbox.hosts)
        self.config = self.sandbox_config(image="sandbox-app")
        self.gitconfig = root / "gitconfig"
        self.gitconfig.write_text(f"[user]\n\tname = {LOCKER}\n\temail = {PERFORMER}\n")
        self.docker_config = root / "docker-config"  # the deploying machine's docker login goes here
        self.docker_config.mkdir()
        self.write()

    @property
    def primary(self) -> str:
        return self.hosts[0]

    def write(self, destination: str | None = None, config: dict | None = None) -> None:
        super().write(config, f"deploy.{destination}.yml" if destination else "deploy.yml")

    def hook(self, name: str, script: str) -> Path:
        path = self.root / ".kamal" / "hooks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)
        return path

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(VERSION=VERSION, GIT_CONFIG_GLOBAL=str(self.gitconfig), GIT_CONFIG_NOSYSTEM="1",
                           DOCKER_CONFIG=str(self.docker_config), **extra)

    def check_output(self, result: Result) -> None:
        assert_clean(result)

    def remote(self, host: str, command: str) -> str:
        """Stdout of a command run with the system ssh (not kamalpy)."""
        return self.sandbox.ssh(host, command).stdout

    def remote_ok(self, host: str, command: str) -> bool:
        return self.sandbox.ssh(host, command, check=False).returncode == 0

    @property
    def lock_dir(self) -> str:
        return f".kamal/lock-{self.service}"

    def cleanup(self) -> None:
        super().cleanup()
        command = f"rm -rf .kamal/lock-{self.service}* .kamal/{self.service}-*audit.log"  # destinations' too
        with ThreadPoolExecutor() as pool:
            list(pool.map(lambda host: self.sandbox.ssh(host, command, check=False), self.hosts))


@pytest.fixture(scope="module")
def own_key(sandbox, tmp_path_factory):
    """A key authorised on every server for this module only: (path, fingerprint as sshd logs it)."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path_factory.mktemp("key") / "id_ed25519"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    comment = f"kamalpy-e2e-{secrets.token_hex(4)}"
    blob = base64.b64decode(public.split()[1])
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    for host in sandbox.hosts:
        sandbox.ssh(host, f"echo '{public.decode()} {comment}' >> .ssh/authorized_keys")
    yield str(path), fingerprint
    for host in sandbox.hosts:
        sandbox.ssh(host, f"sed -i '/ {comment}$/d' .ssh/authorized_keys", check=False)


def logins(sandbox, host: str, fingerprint: str) -> int:
    """Logins with the key of that fingerprint so far, from the server's sshd log."""
    return sandbox.sshd_log(host).read_text(errors="replace").count(f"ssh2: ED25519 {fingerprint}")


def use_key(project: Project, key: str) -> None:
    project.config["ssh"] = {**project.config["ssh"], "keys": [key]}
    project.write()


# -- server exec -----------------------------------------------------------------------------------

def test_server_exec_runs_on_every_server(project):
    result = project.ok("server", "exec", "docker info --format '{{.Name}}'")
    assert by_host(result) == dict(zip(project.hosts, project.sandbox.names, strict=True))
    assert f"Running 'docker info --format '{{{{.Name}}}}'' on {', '.join(project.hosts)}..." in result.err


def test_server_exec_interactive_hands_over_to_ssh(project):
    """``-i`` runs the system ``ssh -t`` on the primary host, in a terminal (``script`` gives it a pty)."""
    if shutil.which("script") is None:
        pytest.skip("script (util-linux) is not installed")
    line = shlex.join([KAMALPY, "server", "exec", "-i", "-q", "echo interactive on $(hostname)"])
    proc = subprocess.run(["script", "-qec", line, "/dev/null"], cwd=project.root, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60,
                          env={**os.environ, "VERSION": VERSION, "KAMAL_LOCK": "false"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"interactive on {project.sandbox.names[0]}" in proc.stdout.replace("\r", "")


# -- deploy lock -----------------------------------------------------------------------------------

HOSTILE = "it's \"quoted\" $HOME ${PATH} $(id -u) `uname` \\back\\slash ; rm -rf nothing &&\nsecond\tline"


def test_lock_layout_is_kamals(project):
    primary, others = project.primary, project.hosts[1:]
    assert project.ok("lock", "status").out == "There is no deploy lock\n"

    acquired = project.ok("lock", "acquire", "-m", HOSTILE)
    assert "Acquired the deploy lock" in acquired.err
    for host in project.hosts:
        assert project.remote_ok(host, "test -d .kamal"), host
    for host in others:
        assert not project.remote_ok(host, f"test -e {project.lock_dir}"), host
    assert project.remote(primary, f"ls -A {project.lock_dir}") == "details\n"

    stored = project.remote(primary, f"cat {project.lock_dir}/details")
    details = base64.b64decode(stored).decode()
    match = re.fullmatch(rf"Locked by: {LOCKER} at ({TS})\nVersion: {VERSION}\nMessage: (.*)", details, re.DOTALL)
    assert match, details
    assert match[2] == HOSTILE  # the hostile message round-trips exactly
    # Kamal's layout byte for byte: Base64.encode64 (60-character lines, final newline), plus echo's newline.
    assert stored == ruby_encode64(details.encode()) + "\n"

    assert project.ok("lock", "status").out == details + "\n"

    again = project.run("lock", "acquire", "-m", "second")
    assert again.code == 1
    assert "Deploy lock already in place!" in again.err
    [found] = errors(again)  # Kamal's text first, then how to clear a stale lock (docs/failures.md)
    assert found.startswith("ERROR: Deploy lock found. Run 'kamalpy lock help' for more information (")
    assert "'kamalpy lock release'" in found
    assert project.remote(primary, f"cat {project.lock_dir}/details") == stored  # untouched

    assert "Released the deploy lock" in project.ok("lock", "release").err
    assert not project.remote_ok(primary, f"test -e {project.lock_dir}")
    assert project.remote_ok(primary, "test -d .kamal")
    assert project.ok("lock", "release").out == "There is no deploy lock\n"


def test_lock_wait_times_out_on_an_automatic_lock(project):
    project.ok("lock", "acquire", "-m", "Automatic deploy lock")  # what a running deploy leaves
    started = time.monotonic()
    result = project.run("prune", "images", "--lock-wait", "--lock-wait-timeout", "2", "--lock-wait-interval", "0.5")
    elapsed = time.monotonic() - started
    assert result.code == 1
    assert "Acquiring the deploy lock (waiting up to 2s)..." in result.err
    assert "Timed out after 2s waiting for the deploy lock" in result.err
    assert errors(result) == ["ERROR: Timed out waiting for deploy lock"]
    assert elapsed < 20
    assert project.remote_ok(project.primary, f"test -d {project.lock_dir}")  # not ours to remove
    project.ok("lock", "release")


def test_lock_wait_gives_up_at_once_on_a_manual_lock(project):
    project.ok("lock", "acquire", "-m", "maintenance")
    started = time.monotonic()
    result = project.run("prune", "images", "--lock-wait", "--lock-wait-timeout", "60", "--lock-wait-interval", "30")
    elapsed = time.monotonic() - started
    assert result.code == 1
    assert "Message: maintenance" in result.err
    assert errors(result) == ["ERROR: Deploy lock held manually, not waiting. "
                              "Run 'kamalpy lock help' for more information"]
    assert elapsed < 15  # it did not wait for the 30 s interval
    assert "Pruned images" not in project.remote(project.primary, f"cat .kamal/{project.service}-audit.log || true")
    project.ok("lock", "release")


# -- audit and prune -------------------------------------------------------------------------------

def _container(project: Project, host: str, name: str, *args: str, service: str | None = None) -> None:
    project.sandbox.docker(host, "run", "--label", f"service={service or project.service}", "--name", name,
                           *args, project.sandbox.images["busybox"], *(["sleep", "600"] if "-d" in args else ["true"]))


def _names(project: Project, host: str) -> set[str]:
    listed = project.sandbox.docker(host, "ps", "-a", "--format", "{{.Names}}").stdout.split()
    return {name for name in listed if name.startswith(project.service)}


def test_audit_and_prune(project):
    host, svc = project.primary, project.service
    project.config["retain_containers"] = 2
    project.write()
    old = [f"{svc}-old{i}" for i in range(4)]
    try:
        for name in old:
            _container(project, host, name)
        _container(project, host, f"{svc}-running", "-d")
        _container(project, host, f"{svc}-other", service=f"{svc}x")
        # Two commits to one tag: the first image is left dangling, with the service label.
        commit = ["commit", "--change", f"LABEL service={svc}", old[0], f"{svc}-img:1"]
        dangling = project.sandbox.docker(host, *commit).stdout.strip()
        project.sandbox.docker(host, *commit)

        project.ok("server", "exec", "true")
        project.ok("prune", "all")

        # The two newest stopped containers stay, so do running and other services' ones.
        assert _names(project, host) == {old[2], old[3], f"{svc}-running", f"{svc}-other"}
        assert project.sandbox.docker(host, "image", "inspect", dangling, check=False).returncode != 0
        # No lock left behind.
        assert not project.remote_ok(host, f"test -e {project.lock_dir}")

        stamp = rf"\[{TS}\] \[{re.escape(PERFORMER)}\]"
        audit = project.ok("audit")
        shown = by_host(audit)
        assert sorted(shown) == sorted(project.hosts)
        for each in project.hosts:
            log = project.remote(each, f"cat .kamal/{svc}-audit.log")
            expected = [f"Executed cmd 'true' on {each}", "Pruned containers", "Pruned images"]
            assert re.fullmatch("".join(rf"{stamp} {re.escape(line)}\n" for line in expected), log), log
            assert shown[each] + "\n" == log
    finally:
        project.sandbox.docker(host, "rm", "-f", *old, f"{svc}-running", f"{svc}-other", check=False)
        project.sandbox.docker(host, "rmi", f"{svc}-img:1", check=False)


def test_prune_containers_retain_option(project):
    host, svc = project.hosts[1], project.service
    names = [f"{svc}-c{i}" for i in range(3)]
    try:
        for name in names:
            _container(project, host, name)
        project.ok("prune", "containers", "--retain", "1")
        assert _names(project, host) == {names[-1]}
        result = project.run("prune", "containers", "--retain", "0")
        assert result.code == 1 and errors(result) == ["ERROR: retain must be at least 1"]
    finally:
        project.sandbox.docker(host, "rm", "-f", *names, check=False)


def test_destination_audit_log(project):
    project.write("staging", {"env": {"clear": {"WHERE": "staging"}}})
    project.ok("-d", "staging", "server", "exec", "true")
    for host in project.hosts:
        log = project.remote(host, f"cat .kamal/{project.service}-staging-audit.log")
        assert re.fullmatch(rf"\[{TS}\] \[{re.escape(PERFORMER)}\] \[staging\] Executed cmd 'true' on "
                            rf"{re.escape(host)}\n", log), log
        assert not project.remote_ok(host, f"test -e .kamal/{project.service}-audit.log")
    assert "[staging] Executed cmd 'true'" in project.ok("-d", "staging", "audit").out


# -- registry --------------------------------------------------------------------------------------

def test_registry_login_and_logout(project):
    sandbox = project.sandbox
    password = sandbox.registry_auth[1] if sandbox.registry_auth else f"pw-{secrets.token_hex(8)}"
    project.config["registry"] = {**project.config["registry"], "password": password}
    project.write()
    registry = project.config["registry"]["server"]
    # The deploying machine takes part only if its dockerd trusts the sandbox registry (it normally does).
    local = run_kamalpy("registry", "login", "-R", cwd=project.root,
                        env={"VERSION": VERSION, "DOCKER_CONFIG": str(project.docker_config)}).code == 0
    skip = [] if local else ["-L"]

    login = project.ok("-v", "registry", "login", *skip)
    assert password not in login.out + login.err
    assert "--password-stdin" in login.err
    for host in project.hosts:
        auths = json.loads(project.remote(host, "cat ~/.docker/config.json"))["auths"]
        assert registry in auths, host
    if local:
        assert registry in json.loads((project.docker_config / "config.json").read_text())["auths"]

    logout = project.ok("registry", "logout", *skip)
    assert password not in logout.out + logout.err
    for host in project.hosts:
        assert registry not in json.loads(project.remote(host, "cat ~/.docker/config.json"))["auths"]
    if local:
        assert registry not in json.loads((project.docker_config / "config.json").read_text())["auths"]


# -- connections -----------------------------------------------------------------------------------

def test_one_connection_per_host_per_run(project, own_key):
    key, fingerprint = own_key
    use_key(project, key)
    sandbox = project.sandbox
    before = {host: logins(sandbox, host, fingerprint) for host in project.hosts}
    sessions = {host: sandbox.ssh_sessions(host) for host in project.hosts}
    project.ok("prune", "all")  # lock, audit lines, prune commands: a dozen commands on the primary
    after = {host: logins(sandbox, host, fingerprint) for host in project.hosts}
    assert {host: after[host] - before[host] for host in project.hosts} == dict.fromkeys(project.hosts, 1)
    # ... over which several commands ran (each a session channel).
    assert sandbox.ssh_sessions(project.primary) - sessions[project.primary] >= 6


def _down_address(project: Project) -> str:
    return project.primary.rsplit(".", 1)[0] + ".99"  # in the bridge subnet, nothing listens there


def test_a_down_host_is_reported_while_the_others_answer(project):
    down = _down_address(project)
    project.config["servers"] = [*project.hosts, down]
    project.write()
    started = time.monotonic()
    result = project.run("server", "exec", "hostname")
    elapsed = time.monotonic() - started
    assert result.code == 1
    assert by_host(result) == dict(zip(project.hosts, project.sandbox.names, strict=True))
    [error] = errors(result)
    assert error.startswith(f"ERROR: {down}: "), error
    assert elapsed < CONNECT_TIMEOUT + 8  # within the connect timeout, plus start-up on a busy machine


def test_a_host_that_goes_silent_mid_command_is_found_within_30s(project):
    """Packets to the host dropped while a command runs: no reset, no answer. kamalpy's keepalives find it."""
    host = project.hosts[-1]
    netns = project.sandbox.server(host)["netns"]
    marker = f"/tmp/kamalpy-silent-{secrets.token_hex(4)}"
    env = {**os.environ, "VERSION": VERSION, "KAMAL_LOCK": "false"}
    proc = subprocess.Popen([KAMALPY, "-h", host, "server", "exec", f"touch {marker}; sleep 90"], cwd=project.root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rule = ["INPUT", "-j", "DROP"]
    try:
        deadline = time.monotonic() + 30
        while not project.remote_ok(host, f"test -e {marker}"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-A", *rule], check=True)
        dropped = time.monotonic()
        out, err = proc.communicate(timeout=45)
        found = time.monotonic() - dropped
    finally:
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-D", *rule], check=False)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "Traceback" not in err
    [error] = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert error.startswith(f"ERROR: {host}: connection lost: the host stopped answering"), error
    assert error.endswith(f"while running: touch {marker}; sleep 90"), error
    assert found < 30, found
    project.sandbox.ssh(host, f"rm -f {marker}", check=False)


def test_changed_host_key_is_refused_and_unknown_key_recorded(project, tmp_path):
    sandbox = project.sandbox
    first, second, third = project.hosts[:3]
    real = {}
    for line in Path(sandbox.known_hosts).read_text().splitlines():
        names, kind, key = line.split()[:3]
        for name in names.split(","):
            real[name] = f"{kind} {key}"
    known_hosts = tmp_path / "known_hosts"
    # The first host "changed" its key (we recorded the second's); the third is unknown.
    known_hosts.write_text(f"{first} {real[second]}\n{second} {real[second]}\n")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host *\n  UserKnownHostsFile {known_hosts}\n")
    project.config["ssh"] = {**project.config["ssh"], "config": str(ssh_config)}
    project.write()

    result = project.run("-h", f"{first},{second},{third}", "server", "exec", "hostname")
    assert result.code == 1
    [error] = errors(result)
    assert error.startswith(f"ERROR: {first}: host key changed"), error
    assert "refusing to connect" in error and str(known_hosts) in error
    assert sorted(by_host(result)) == sorted([second, third])

    recorded = known_hosts.read_text().splitlines()
    assert recorded[:2] == [f"{first} {real[second]}", f"{second} {real[second]}"]  # the old key is kept
    assert recorded[2:] == [f"{third} {real[third]}"]  # accept-new

    again = project.run("-h", f"{second},{third}", "server", "exec", "true")
    assert again.code == 0
    assert known_hosts.read_text().splitlines() == recorded  # nothing added twice


def test_wrong_user_is_one_line_naming_the_host(project):
    project.config["ssh"] = {**project.config["ssh"], "user": "nobody"}
    project.write()
    result = project.run("-h", project.primary, "server", "exec", "true")
    assert result.code == 1
    assert errors(result) == [f"ERROR: {project.primary}: authentication failed for user 'nobody' "
                              "(Authentication failed.)"]


def test_wrong_key_is_one_line(project, tmp_path):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "wrong_key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    use_key(project, str(path))
    result = project.run("server", "exec", "true")
    assert result.code == 1
    [error] = errors(result)
    assert error.startswith(f"ERROR: Exceptions on {len(project.hosts)} hosts: "), error
    for host in project.hosts:
        assert f"{host}: authentication failed for user 'root'" in error


# -- hooks -----------------------------------------------------------------------------------------

def test_server_bootstrap_runs_docker_setup_with_kamals_env(project, tmp_path):
    env_file = tmp_path / "docker-setup.env"
    project.hook("docker-setup", f"env | grep ^KAMAL_ | sort > {env_file}\n")
    result = project.ok("server", "bootstrap")
    assert "Running the docker-setup hook..." in result.err
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    recorded_at = env.pop("KAMAL_RECORDED_AT")
    assert re.fullmatch(TS, recorded_at)
    assert env == {
        "KAMAL_COMMAND": "server",
        "KAMAL_SUBCOMMAND": "bootstrap",
        "KAMAL_HOSTS": ",".join(project.hosts),
        "KAMAL_LOCK": "true",
        "KAMAL_PERFORMER": PERFORMER,
        "KAMAL_SERVICE": project.service,
        "KAMAL_SERVICE_VERSION": f"{project.service}@{VERSION}",
        "KAMAL_VERSION": VERSION,
    }
    assert project.ok("lock", "status").out == "There is no deploy lock\n"
    for host in project.hosts:
        assert project.remote_ok(host, "test -d .kamal")


def test_pre_connect_runs_once_before_the_first_connection(project, own_key, tmp_path):
    key, fingerprint = own_key
    use_key(project, key)
    sandbox = project.sandbox
    runs = tmp_path / "pre-connect.runs"
    logs = " ".join(str(sandbox.sshd_log(host)) for host in project.hosts)
    # The hook notes how many logins with our key the servers had seen when it ran.
    project.hook("pre-connect", f"cat {logs} | grep -c 'ssh2: ED25519 {fingerprint}' >> {runs}\n")
    before = sum(logins(sandbox, host, fingerprint) for host in project.hosts)
    project.ok("prune", "all")
    assert runs.read_text().split() == [str(before)]
    assert sum(logins(sandbox, host, fingerprint) for host in project.hosts) == before + len(project.hosts)


def test_failing_pre_connect_stops_the_command(project, own_key):
    key, fingerprint = own_key
    use_key(project, key)
    sandbox = project.sandbox
    project.hook("pre-connect", "echo 'VPN is down' >&2\nexit 3\n")
    before = {host: logins(sandbox, host, fingerprint) for host in project.hosts}
    result = project.run("server", "exec", "touch /tmp/should-not-run")
    assert result.code == 1
    [error] = errors(result)
    assert error.startswith("ERROR: Hook `pre-connect` failed") and "VPN is down" in error, error
    assert {host: logins(sandbox, host, fingerprint) for host in project.hosts} == before
    assert by_host(result) == {}


def test_reverse_port_forward_reaches_the_deploying_machine(project):
    """A server reaches a port on the deploying machine's 127.0.0.1 through the SSH connection (local registry)."""
    import http.server
    import threading

    from kamalpy.builtin_plugins.ssh_paramiko import ParamikoTransport
    from kamalpy.transport import SshSettings

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello from the deploying machine")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    settings = SshSettings(keys=(project.sandbox.key,), keys_only=True, config=(project.sandbox.ssh_config,))
    connection = ParamikoTransport().connect(project.primary, settings)
    try:
        forward = connection.forward_remote(port, "127.0.0.1", port)
        result = connection.run(f"curl -s --max-time 10 http://localhost:{forward.remote_port}/", timeout=30)
        assert result.stdout == "hello from the deploying machine", result
        forward.close()
        after = connection.run(f"curl -s --max-time 5 http://localhost:{port}/", timeout=30)
        assert after.exit_status == 7, after  # connection refused: the forward is gone
    finally:
        connection.close()
        server.shutdown()


@pytest.mark.parametrize("how", ["proxy", "proxy_command"])
def test_jump_host_and_proxy_command(project, how):
    """``ssh.proxy`` (a jump host) and ``ssh.proxy_command`` reach a server through another one."""
    via, target = project.hosts[0], project.hosts[1]
    ssh = dict(project.config["ssh"])
    if how == "proxy":
        ssh["proxy"] = f"root@{via}"
    else:
        ssh["proxy_command"] = f"ssh -F {project.sandbox.ssh_config} -W %h:%p root@{via}"
    project.write(config={**project.config, "servers": [target], "ssh": ssh})
    result = project.ok("server", "exec", "echo $SSH_CONNECTION")
    # sshd on the target saw the connection come from the jump server, not from the deploying machine.
    assert by_host(result)[target].split()[0] == via


def test_upload_sets_the_mode_before_any_byte_is_written(project):
    """Uploads (env files with secrets) land with their mode: 0600 stays 0600 whatever the umask."""
    from kamalpy.builtin_plugins.ssh_paramiko import ParamikoTransport
    from kamalpy.transport import SshSettings

    settings = SshSettings(keys=(project.sandbox.key,), keys_only=True, config=(project.sandbox.ssh_config,))
    connection = ParamikoTransport().connect(project.primary, settings)
    path = f".kamal/{project.service}-upload-test.env"
    try:
        connection.run("mkdir -p .kamal")
        connection.upload(b"SECRET=s3cr3t\n", path, 0o600)
        result = connection.run(f"stat -c %a {path} && cat {path} && rm {path}")
        assert result.stdout == "600\nSECRET=s3cr3t\n", result
    finally:
        connection.close()


def test_key_data_from_a_secret(project, tmp_path):
    """``ssh.key_data`` names a secret whose value is the private key (no key file, no ssh config)."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(Path(project.sandbox.known_hosts).read_text())
    (project.root / ".kamal").mkdir(exist_ok=True)
    (project.root / ".kamal" / "secrets").write_text(f"SSH_KEY=$(cat {project.sandbox.key})\n")
    ssh = {"user": "root", "keys_only": True, "key_data": ["SSH_KEY"], "config": False}
    project.write(config={**project.config, "servers": [project.primary], "ssh": ssh})
    result = project.ok("server", "exec", "hostname", env={"HOME": str(tmp_path)})
    assert by_host(result) == {project.primary: project.sandbox.names[0]}
    assert "PRIVATE KEY" not in result.out + result.err
