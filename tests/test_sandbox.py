"""The sandbox servers: naming, the session sandbox (ssh, paramiko, registry, images, status), and ``down``.

Everything that needs root uses ONE session sandbox (the ``sandbox`` fixture) plus one small,
separately named sandbox for the registry-auth and ``down`` tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from kamalpy.builtin_plugins.sandbox import registry, report
from kamalpy.builtin_plugins.sandbox.state import SandboxError, Spec

# Until tests/conftest.py loads it for every test file (idempotent: pytest loads a plugin once).
pytest_plugins = ["sandbox_fixtures"]

# -- no root needed -------------------------------------------------------------------------------


def test_spec_names_and_addresses():
    spec = Spec(prefix="kps", dir=Path("/var/tmp/x"), subnet="10.213.0.0/24")
    assert (spec.name(3), spec.veth(3), spec.bridge, spec.comment) == ("kps3", "kpsv3", "kpsbr0", "kps-sandbox")
    assert (spec.gateway, spec.address(1), spec.address(10), spec.registry) == (
        "10.213.0.1", "10.213.0.11", "10.213.0.20", "10.213.0.1:5000")
    assert spec.index_of("kps12") == 12 and spec.index_of("kpsv1") is None and spec.index_of("kpsx1") is None
    assert spec.docker_socket(2) == Path("/var/tmp/x/s2/run/docker.sock")


def test_spec_from_env():
    env = {"KAMALPY_SANDBOX_PREFIX": "kpt", "KAMALPY_SANDBOX_DIR": "/tmp/s", "KAMALPY_SANDBOX_SUBNET": "10.9.8.0/24"}
    spec = Spec.from_env(env)
    assert (spec.prefix, spec.dir, spec.gateway) == ("kpt", Path("/tmp/s"), "10.9.8.1")
    assert Spec.from_env({}) == Spec()


@pytest.mark.parametrize("kwargs", [
    {"prefix": "KPS"}, {"prefix": "k"}, {"prefix": "toolongname"},
    {"subnet": "8.8.8.0/24"}, {"subnet": "10.0.0.0/16"}, {"subnet": "nonsense"},
    {"dir": Path("relative")},
])
def test_spec_rejects_bad_values(kwargs):
    with pytest.raises(SandboxError, match="Invalid sandbox"):
        Spec(**kwargs)


def test_registry_auth_parsing_and_htpasswd():
    assert registry.parse_auth(None) is None
    assert registry.parse_auth("me:p:w") == ("me", "p:w")
    for bad in ("me", ":pw", "me:"):
        with pytest.raises(SandboxError, match="USER:PASSWORD"):
            registry.parse_auth(bad)
    user, hashed = registry.htpasswd_line("me", "secret").split(":", 1)
    assert user == "me" and hashed.startswith("$2")
    bcrypt = pytest.importorskip("bcrypt")
    assert bcrypt.checkpw(b"secret", hashed.encode())


def test_deploy_snippet_is_valid_yaml():
    state = {
        "servers": [{"address": "10.213.0.11"}, {"address": "10.213.0.12"}],
        "key": "/k/id_ed25519", "ssh_config": "/k/ssh_config", "known_hosts": "/k/known_hosts",
        "registry": {"address": "10.213.0.1:5000", "username": None, "password": None},
    }
    data = yaml.safe_load(report.deploy_snippet(state))
    assert data == {
        "servers": ["10.213.0.11", "10.213.0.12"],
        "ssh": {"user": "root", "keys_only": True, "keys": ["/k/id_ed25519"], "config": "/k/ssh_config"},
        "registry": {"server": "10.213.0.1:5000", "username": "sandbox", "password": "sandbox"},
    }


def test_without_root_tests_skip_and_commands_refuse(monkeypatch, kamalpy):
    import sandbox_fixtures

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    if sys.platform.startswith("linux"):
        assert sandbox_fixtures.sandbox_skip_reason() == "the sandbox needs root"
    for args in (["sandbox", "up"], ["sandbox", "down"]):
        result = kamalpy(*args)
        assert result.code == 1
        assert result.err == "ERROR: The sandbox needs root (network namespaces, bridges, dockerd)\n"


# -- the session sandbox ------------------------------------------------------------------------

@pytest.mark.sandbox
def test_system_ssh_reaches_each_servers_own_dockerd(sandbox):
    from kamalpy.builtin_plugins.sandbox.system import parallel

    names = parallel(lambda host: sandbox.ssh(host, "docker info --format '{{.Name}}'").stdout.strip(),
                     sandbox.hosts)
    assert names == sandbox.names
    assert len(set(names)) == len(names) >= 3


@pytest.mark.sandbox
def test_paramiko_connects_with_key_and_known_hosts(sandbox):
    import paramiko

    host = sandbox.hosts[-1]
    client = paramiko.SSHClient()
    client.load_host_keys(sandbox.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host, username="root", key_filename=sandbox.key, look_for_keys=False, allow_agent=False,
                   timeout=10)
    try:
        _, stdout, _ = client.exec_command("hostname")
        assert stdout.read().decode().strip() == sandbox.server(host)["name"]
    finally:
        client.close()


@pytest.mark.sandbox
def test_server_homes_are_private(sandbox):
    first, second = sandbox.hosts[:2]
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    sandbox.ssh(first, f"touch ~/{marker}")
    assert sandbox.ssh(first, f"test -e ~/{marker}", check=False).returncode == 0
    assert sandbox.ssh(second, f"test -e ~/{marker}", check=False).returncode == 1
    sandbox.ssh(first, f"rm ~/{marker}")


@pytest.mark.sandbox
def test_registry_push_from_one_server_pull_on_another(sandbox):
    pusher, puller = sandbox.hosts[0], sandbox.hosts[1]
    tag = f"{sandbox.registry}/sandbox-test/pushed:{uuid.uuid4().hex[:8]}"
    sandbox.ssh(pusher, f"docker pull -q {sandbox.images['busybox']} && docker tag {sandbox.images['busybox']} {tag}"
                        f" && docker push -q {tag}")
    out = sandbox.ssh(puller, f"docker run --rm {tag} echo pulled-ok").stdout
    assert "pulled-ok" in out
    for host in (pusher, puller):
        sandbox.docker(host, "image", "rm", "-f", tag, check=False)


@pytest.mark.sandbox
def test_app_image_answers_and_stops_quickly(sandbox):
    host, other = sandbox.hosts[-1], sandbox.hosts[0]
    name = f"sandbox-test-app-{uuid.uuid4().hex[:6]}"
    sandbox.ssh(host, f"docker run -d --name {name} -p 8080:80 {sandbox.images['app_v2']}")
    try:
        deadline = time.monotonic() + 30
        while True:  # from the host, and from another server across the bridge
            got = subprocess.run(["curl", "-sf", f"http://{host}:8080/version"], capture_output=True, text=True)
            if got.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert got.stdout.strip() == "v2"
        assert sandbox.ssh(other, f"curl -sf http://{host}:8080/up").stdout.strip() == "ok"
        started = time.monotonic()
        sandbox.docker(host, "stop", "-t", "20", name)
        assert time.monotonic() - started < 10  # SIGTERM is trapped: no waiting for the timeout
    finally:
        sandbox.docker(host, "rm", "-f", name, check=False)


@pytest.mark.sandbox
def test_caddy_image_serves_its_admin_api(sandbox):
    host = sandbox.hosts[0]
    name = f"sandbox-test-caddy-{uuid.uuid4().hex[:6]}"
    sandbox.docker(host, "run", "-d", "--name", name, "-p", "127.0.0.1:2019:2019", sandbox.images["caddy"])
    try:
        deadline = time.monotonic() + 30
        while True:  # the admin API is published on the server's loopback only, so ask over ssh
            got = sandbox.ssh(host, "curl -sf http://127.0.0.1:2019/config/", check=False)
            if got.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert json.loads(got.stdout) == {"admin": {"listen": "0.0.0.0:2019"}}
    finally:
        sandbox.docker(host, "rm", "-f", name, check=False)


@pytest.mark.sandbox
def test_sshd_log_counts_logins_and_sessions(sandbox):
    import paramiko

    host = sandbox.hosts[1]
    logins, sessions = sandbox.ssh_logins(host), sandbox.ssh_sessions(host)
    sandbox.ssh(host, "true")
    client = paramiko.SSHClient()  # one connection, three commands
    client.load_host_keys(sandbox.known_hosts)
    client.connect(host, username="root", key_filename=sandbox.key, look_for_keys=False, allow_agent=False)
    try:
        for _ in range(3):
            client.exec_command("true")[1].channel.recv_exit_status()
    finally:
        client.close()
    deadline = time.monotonic() + 5  # sshd writes its log asynchronously
    while sandbox.ssh_sessions(host) < sessions + 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (sandbox.ssh_logins(host), sandbox.ssh_sessions(host)) == (logins + 2, sessions + 4)


@pytest.mark.sandbox
def test_status_lists_the_servers(sandbox, kamalpy):
    result = kamalpy("sandbox", "status")
    assert result.code == 0, result.err
    for name, host in zip(sandbox.names, sandbox.hosts, strict=True):
        assert any(line.split()[:3] == [name, host, "ok"] for line in result.out.splitlines())
    data = json.loads(kamalpy("sandbox", "status", "--json").out)
    assert data["ok"] and [s["address"] for s in data["servers"]] == sandbox.hosts


@pytest.mark.sandbox
def test_up_when_up_is_refused(sandbox, kamalpy):
    result = kamalpy("sandbox", "up", "2")
    assert result.code == 1
    assert "already up" in result.err and "sandbox down" in result.err


@pytest.mark.sandbox
def test_the_host_dockerd_trusts_the_registry(sandbox):
    from kamalpy.builtin_plugins.sandbox import hostdocker

    assert hostdocker.running() and hostdocker.trusts(sandbox.spec)
    # The deploying machine pulls what the servers push (used by build and deploy flows).
    proc = subprocess.run(["docker", "pull", "-q", sandbox.images["app"]], env=hostdocker.client_env(sandbox.spec),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.sandbox
def test_reverse_forward_reaches_the_hosts_loopback(sandbox):
    """A registry on the deploying machine's 127.0.0.1 is reachable from a server through ``ssh -R``."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            body = b"from-the-host\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = subprocess.run(
            ["ssh", "-F", sandbox.ssh_config, "-o", "ExitOnForwardFailure=yes", "-R", f"{port}:127.0.0.1:{port}",
             f"root@{sandbox.hosts[0]}", f"curl -sf http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        server.shutdown()
    assert proc.stdout == "from-the-host\n", proc.stderr


@pytest.mark.sandbox
def test_servers_reach_only_the_bridge_subnet(sandbox):
    started = time.monotonic()
    proc = sandbox.ssh(sandbox.hosts[0], "curl -s --max-time 5 http://192.0.2.1/", check=False)
    assert proc.returncode == 7  # could not connect: no route off the subnet
    assert time.monotonic() - started < 5


# -- a second, small sandbox: registry auth and `down` ---------------------------------------------

SMALL = Spec(prefix="kpt", dir=Path("/var/tmp/kamalpy-sandbox-test"), subnet="10.213.9.0/24")


@pytest.fixture(scope="module")
def small_sandbox(sandbox):
    """Two servers, no images, a registry requiring a login; named apart from the session sandbox."""
    from kamalpy.builtin_plugins.sandbox import lifecycle
    from kamalpy.builtin_plugins.sandbox.handle import Sandbox

    lifecycle.down(SMALL)
    lifecycle.up(SMALL, 2, registry_auth=("tester", "s3cret"), with_images=False)
    try:
        yield Sandbox.load(SMALL)
    finally:
        lifecycle.down(SMALL)


def _import_busybox(small, host, tag):
    from kamalpy.builtin_plugins.sandbox import images

    images._import(small.docker_env(host), tag, ['CMD ["sh"]'], images._busybox)


@pytest.mark.sandbox
def test_registry_requires_the_password_when_asked(small_sandbox):
    host = small_sandbox.hosts[0]
    tag = f"{small_sandbox.registry}/auth/busybox:1"
    _import_busybox(small_sandbox, host, tag)
    denied = small_sandbox.docker(host, "push", tag, check=False)
    assert denied.returncode != 0 and "no basic auth credentials" in denied.stderr + denied.stdout
    wrong = small_sandbox.docker(host, "login", small_sandbox.registry, "-u", "tester", "--password-stdin",
                                 input="wrong", check=False)
    assert wrong.returncode != 0
    # The password goes on standard input, as kamalpy's own registry login does.
    small_sandbox.ssh(host, f"echo s3cret | docker login {small_sandbox.registry} -u tester --password-stdin")
    small_sandbox.ssh(host, f"docker push -q {tag}")
    assert small_sandbox.registry_auth == ("tester", "s3cret")


@pytest.mark.sandbox
def test_failed_up_removes_what_it_made(monkeypatch, sandbox):  # `sandbox`: hold the session lock
    from kamalpy.builtin_plugins.sandbox import lifecycle, servers

    spec = Spec(prefix="kpf", dir=Path("/var/tmp/kamalpy-sandbox-fail"), subnet="10.213.8.0/24")

    def broken(*args):
        raise SandboxError("boom")

    monkeypatch.setattr(servers, "start_server", broken)
    with pytest.raises(SandboxError, match="boom"):
        lifecycle.up(spec, 2, with_images=False)
    assert _host_leftovers(spec) == {"netns": [], "links": [], "rules": [], "cgroups": [], "processes": [],
                                     "dir": False}


def _host_leftovers(spec):
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    cgroups = [p for p in Path("/sys/fs/cgroup").glob(f"**/{spec.prefix}[0-9]*") if p.is_dir()][:5]
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(spec.dir).encode() in cmdline:
            procs.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return {
        "netns": [line for line in netns.splitlines() if line.startswith(spec.prefix)],
        "links": [line for line in links.splitlines() if f": {spec.prefix}" in line],
        "rules": [line for line in rules.splitlines() if spec.comment in line],
        "cgroups": [str(p) for p in cgroups],
        "processes": procs,
        "dir": spec.dir.exists(),
    }


@pytest.mark.sandbox
def test_down_removes_everything_and_only_its_own(small_sandbox, sandbox):
    from kamalpy.builtin_plugins.sandbox import lifecycle

    host = small_sandbox.hosts[1]
    _import_busybox(small_sandbox, host, "busybox:local")
    small_sandbox.ssh(host, "docker run -d --name sleeper busybox:local sleep 600")  # a container to kill
    before = _host_leftovers(SMALL)
    assert len(before["netns"]) == 2 and before["rules"] and before["processes"] and before["cgroups"]

    started = time.monotonic()
    removed = lifecycle.down(SMALL)
    took = time.monotonic() - started
    assert removed["servers"] == 2
    assert _host_leftovers(SMALL) == {"netns": [], "links": [], "rules": [], "cgroups": [], "processes": [],
                                      "dir": False}
    assert took < 30
    assert lifecycle.down(SMALL)["servers"] == 0  # down when nothing is up: fine and quiet
    assert lifecycle.status(sandbox.spec)["ok"]  # the session sandbox was not touched


# -- server usage accounting --------------------------------------------------------------------------------

BURN_SECONDS = 1.0


@pytest.mark.sandbox
def test_cpu_burnt_in_an_ssh_session_counts_on_that_server_only(sandbox):
    first, second = sandbox.hosts[:2]
    before = {host: sandbox.cpu_seconds(host) for host in (first, second)}
    # A process of the session busy for BURN_SECONDS of its own CPU time (not wall time: the machine is shared).
    burn = ("python3 -c 'import time\nstart = time.process_time()\n"
            f"while time.process_time() - start < {BURN_SECONDS}: pass'")
    sandbox.ssh(first, burn)
    burnt = {host: sandbox.cpu_seconds(host) - before[host] for host in (first, second)}
    # The session's sshd, shell and python start-up come on top; the idle daemons add little.
    assert BURN_SECONDS <= burnt[first] < BURN_SECONDS + 0.6, burnt
    assert burnt[second] < 0.3, burnt


@pytest.mark.sandbox
def test_server_memory_counts_the_daemons_and_the_containers(sandbox):
    host = sandbox.hosts[1]
    idle = sandbox.memory_bytes(host)
    assert 10 << 20 < idle < 500 << 20  # dockerd, containerd and sshd
    name = f"usage-{uuid.uuid4().hex[:8]}"
    # A container holding 48 MB: a file in its /dev/shm (tmpfs pages are charged to the cgroup that wrote them).
    sandbox.docker(host, "run", "-d", "--name", name, sandbox.images["busybox"],
                   "sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 && sleep 600")
    try:
        grown = _eventually(lambda: sandbox.memory_bytes(host) - idle > 40 << 20)
        assert grown, (idle, sandbox.memory_bytes(host))
    finally:
        sandbox.docker(host, "rm", "-f", name, check=False)


def _eventually(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False
