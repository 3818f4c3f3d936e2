"""The servers: keys and ssh files, the bridge, and per server a netns with its own sshd and dockerd.

Server ``i`` is network namespace ``<prefix>i`` on the bridge ``<prefix>br0``. ``files/server-init.sh``
runs inside it (under ``unshare --mount --uts``) to give it a hostname, private ``/run``, ``/root`` and
``/tmp`` (so the docker socket, ``~/.docker`` and ``authorized_keys`` are per server), then starts
dockerd and sshd. ssh sessions inherit that mount namespace, so a plain ``docker`` talks to the server's
own dockerd; from the host the same socket is ``<dir>/s<i>/run/docker.sock``.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from kamalpy.builtin_plugins.sandbox import system
from kamalpy.builtin_plugins.sandbox.state import Spec

SSHD_LOG_LEVEL = "VERBOSE"  # VERBOSE logs "Connection from ..." per connection, which tests count


def _keypair(comment: str) -> tuple[str, str]:
    """A new ed25519 key as (OpenSSH private key, public key line); no ssh-keygen process per server."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    path.chmod(mode)


def write_client_files(spec: Spec, indices: list[int], host_keys: dict[int, str]) -> str:
    """The client key, known_hosts and ssh_config; returns the client's public key line."""
    private, public = _keypair("kamalpy-sandbox")
    _write(spec.key, private, 0o600)
    _write(spec.key.with_suffix(".pub"), public + "\n")
    _write(spec.known_hosts, "".join(
        f"{spec.address(i)},{spec.name(i)} {' '.join(host_keys[i].split()[:2])}\n" for i in indices))
    lines = [f"# Written by `kamalpy sandbox up`: ssh -F {spec.ssh_config} root@{spec.address(indices[0])}", ""]
    for i in indices:
        lines += [f"Host {spec.name(i)}", f"  HostName {spec.address(i)}", ""]
    patterns = " ".join(f"{spec.name(i)} {spec.address(i)}" for i in indices)
    lines += [
        f"Host {patterns}",
        "  User root",
        f"  IdentityFile {spec.key}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {spec.known_hosts}",
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        "  ConnectTimeout 10",
        "  LogLevel ERROR",
        "",
    ]
    _write(spec.ssh_config, "\n".join(lines))
    return public


def prepare_server(spec: Spec, index: int, mtu: int) -> str:
    """Create server ``index``'s directory, host key, sshd and dockerd config; return its public host key."""
    sdir = spec.server_dir(index)
    for sub, mode in (("run", 0o755), ("run/sshd", 0o755), ("root", 0o700), ("root/.ssh", 0o700),
                      ("tmp", 0o1777), ("docker", 0o710)):
        (sdir / sub).mkdir(parents=True, exist_ok=True)
        (sdir / sub).chmod(mode)  # mkdir's mode is masked by the umask; sshd's StrictModes checks these
    private, public = _keypair(spec.name(index))
    _write(sdir / "ssh_host_ed25519_key", private, 0o600)
    _write(sdir / "sshd_config", "\n".join([
        f"ListenAddress {spec.address(index)}:22",
        f"HostKey {sdir / 'ssh_host_ed25519_key'}",
        "PidFile /run/sshd.pid",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "PrintMotd no",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp internal-sftp",
        f"LogLevel {SSHD_LOG_LEVEL}",
        "",  # MaxSessions and MaxStartups keep OpenSSH's defaults, as on a real server
    ]))
    _write(sdir / "daemon.json", json.dumps({
        "data-root": str(sdir / "docker"),
        "hosts": ["unix:///run/docker.sock"],
        "pidfile": "/run/docker.pid",
        "insecure-registries": [spec.registry],
        "cgroup-parent": f"/{spec.name(index)}",
        "mtu": mtu,
    }, indent=2) + "\n")
    return public


def authorize(spec: Spec, index: int, public_key: str) -> None:
    _write(spec.server_dir(index) / "root" / ".ssh" / "authorized_keys", public_key + "\n", 0o600)


def create_network(spec: Spec, indices: list[int], mtu: int) -> None:
    """The bridge, its FORWARD rule, and a netns with a veth per server, in two ``ip -batch`` calls."""
    system.run(["ip", "-batch", "-"], input="\n".join([
        f"link add {spec.bridge} mtu {mtu} type bridge",
        f"addr add {spec.gateway}/24 dev {spec.bridge}",
        f"link set {spec.bridge} up",
        *(f"netns add {spec.name(i)}" for i in indices),
    ]) + "\n")
    system.run(["ip", "-batch", "-"], input="\n".join(
        line for i in indices for line in (
            f"link add {spec.veth(i)} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {spec.name(i)}",
            f"link set {spec.veth(i)} master {spec.bridge} up",
        )) + "\n")
    # A host dockerd sets the FORWARD policy to DROP and br_netfilter makes bridged traffic pass FORWARD:
    # without this rule server-to-server traffic is dropped.
    system.run(["iptables", "-I", "FORWARD", "-i", spec.bridge, "-o", spec.bridge,
                "-m", "comment", "--comment", spec.comment, "-j", "ACCEPT"])


def start_server(spec: Spec, index: int, mtu: int) -> None:
    """Run the init script inside the server's netns; dockerd and sshd outlive it."""
    script = resources.files("kamalpy.builtin_plugins.sandbox").joinpath("files/server-init.sh")
    sdir = spec.server_dir(index)
    system.run(["ip", "netns", "exec", spec.name(index), "unshare", "--mount", "--uts", "--propagation", "private",
                "sh", str(script), spec.name(index), f"{spec.address(index)}/24", str(sdir)],
               timeout=60)


def server_ready(spec: Spec, index: int) -> bool:
    return system.docker_ping(spec.docker_socket(index), timeout=1) and system.ssh_banner(spec.address(index))


def ssh_check(spec: Spec, index: int) -> str:
    """Log in with the system ssh client and the written ssh_config; returns the server's hostname."""
    proc = system.run(["ssh", "-F", str(spec.ssh_config), f"root@{spec.address(index)}", "hostname"], timeout=30)
    return proc.stdout.strip()


# -- teardown ---------------------------------------------------------------------------------

def list_netns(spec: Spec) -> list[int]:
    proc = system.run(["ip", "netns", "list"], check=False)
    found = (spec.index_of(line.split()[0]) for line in proc.stdout.splitlines() if line.strip())
    return sorted(i for i in found if i is not None)


def list_links(spec: Spec) -> list[str]:
    """Host links named with the prefix: the bridge and the host ends of the veths."""
    proc = system.run(["ip", "-o", "link", "show"], check=False)
    names = [line.split(":")[1].strip().split("@")[0] for line in proc.stdout.splitlines() if ":" in line]
    pattern = re.compile(rf"{spec.prefix}(br0|v\d+)")
    return [name for name in names if pattern.fullmatch(name)]


def destroy_server(spec: Spec, index: int) -> set[int]:
    """Kill everything of server ``index`` (its daemons and containers) and delete its netns and cgroups.

    SIGKILL is enough: the server's mounts live in its private mount namespace and vanish with its
    last process, and the whole directory is deleted anyway. Container processes are not in the
    server's netns, so they are found through the server's cgroup parent.
    """
    name = spec.name(index)
    system.run(["ip", "link", "del", spec.veth(index)], check=False)
    cgroups = system.cgroup_dirs(name)
    stuck = system.kill_until_gone(lambda: system.netns_pids(name) | system.cgroup_pids(cgroups))
    system.run(["ip", "netns", "del", name], check=False)
    system.remove_cgroups(system.cgroup_dirs(name))
    return stuck


def iptables_rules(spec: Spec) -> list[str]:
    proc = system.run(["iptables", "-S", "FORWARD"], check=False)
    return [line for line in proc.stdout.splitlines() if f"--comment {spec.comment}" in line
            or f'--comment "{spec.comment}"' in line]


def remove_network(spec: Spec) -> None:
    for rule in iptables_rules(spec):
        args = rule.split()
        system.run(["iptables", "-D", *args[1:]], check=False)
    system.run(["ip", "link", "del", spec.bridge], check=False)
