"""A real sshd on a loopback port, for tests of the SSH transport that need no sandbox (root, sshd, ssh).

It runs in a mount namespace of its own (a private /run for its privilege-separation directory), with its
own host key and a host certificate signed by a test CA, and accepts ``root`` with ``client_key``.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

needs_sshd = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("sshd") or not shutil.which("ssh") or not shutil.which("unshare"),
    reason="needs root, sshd, ssh and unshare (the sshd runs in its own mount namespace)")

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path, kind: str = "ed25519") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@dataclass
class Server:
    port: int
    dir: Path
    client_key: Path
    host_key: str  # "ssh-ed25519 AAAA..."
    other_key: str  # another ed25519 key, not the server's
    ecdsa_key: str  # a key of another type, not the server's
    ca_key: str  # the CA that signed the server's host certificate
    pid: int  # the listening sshd
    host22: str | None = None  # another loopback address where it listens on port 22 (None: could not bind)
    host: str = "127.0.0.1"

    def sessions(self) -> list[int]:
        """Process ids of the processes serving connections (every descendant of the listening sshd)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError):
                    continue
        found, wanted = [], {self.pid}
        while True:
            more = [pid for pid, parent in parents.items() if parent in wanted and pid not in found]
            if not more:
                return found
            found += more
            wanted = set(more)

    @property
    def name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(d / "host")
    ca_key = _keygen(d / "ca")
    subprocess.run(["ssh-keygen", "-q", "-s", str(d / "ca"), "-I", "test-host", "-h", "-n", "127.0.0.1",
                    str(d / "host.pub")], check=True)
    _keygen(d / "client")
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = _free_port()
    host22 = f"127.{random.randrange(1, 255)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    (d / "sshd_config").write_text("\n".join([
        f"ListenAddress 127.0.0.1:{port}", f"ListenAddress {host22}:22",
        f"HostKey {d / 'host'}", f"HostCertificate {d / 'host-cert.pub'}",
        f"PidFile {d / 'sshd.pid'}", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", f"AuthorizedKeysFile {d / 'authorized_keys'}",
        "StrictModes no", "LogLevel ERROR", ""]))
    # sshd wants /run/sshd (privilege separation): a private /run in a mount namespace of its own.
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             f"mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && "
                             f"exec {SSHD} -D -e -f {d / 'sshd_config'}"],
                            stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "w"))
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (d / "sshd.log").read_text()
            time.sleep(0.05)
    try:  # sshd goes on when port 22 cannot be bound there; the port-22 cases are then skipped
        socket.create_connection((host22, 22), timeout=1).close()
    except OSError:
        host22 = None
    yield Server(port, d, d / "client", host_key, _keygen(d / "other"), _keygen(d / "ecdsa", "ecdsa"), ca_key,
                 proc.pid, host22)
    proc.terminate()
    proc.wait(10)


