"""Small host helpers: run a command, start a daemon, wait for a socket, find and kill processes."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from kamalpy.builtin_plugins.sandbox.state import SandboxError

T = TypeVar("T")
R = TypeVar("R")

# Every tool `up` needs (scripts/sandbox-deps installs them on Debian).
REQUIRED_TOOLS = ("ip", "iptables", "unshare", "setsid", "dockerd", "docker", "/usr/sbin/sshd", "ssh",
                  "busybox", "docker-registry", "caddy")


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def run(cmd: Sequence[str], *, input: str | bytes | None = None, check: bool = True, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; a failure becomes a one-line SandboxError."""
    text_input = input.decode() if isinstance(input, bytes) else input
    try:
        proc = subprocess.run(list(cmd), input=text_input, capture_output=True, text=True, timeout=timeout,
                              env=env, stdin=None if text_input is not None else subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        if not check:  # e.g. `down` on a machine without iptables: nothing of that kind to remove
            return subprocess.CompletedProcess(list(cmd), 127, "", str(error))
        raise SandboxError(f"{cmd[0]} failed: {error}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise SandboxError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {detail[-1] if detail else ''}")
    return proc


def spawn_daemon(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start a long-running process detached from us (reparented to init: no zombie); return its pid."""
    script = 'exec 3>&1 >>"$0" 2>&1 </dev/null; setsid "$@" 3>&- & echo $! >&3'
    proc = run(["sh", "-c", script, str(log), *cmd], env=env, timeout=30)
    return int(proc.stdout.strip())


def parallel(fn: Callable[[T], R], items: Iterable[T], workers: int = 16) -> list[R]:
    """fn over items in threads; the first exception is raised after all have finished."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
    return [future.result() for future in futures]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SandboxError(f"Timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def docker_ping(sock: Path | str, timeout: float = 2) -> bool:
    """True when a dockerd answers ``GET /_ping`` on this unix socket."""
    conn = _UnixHTTPConnection(str(sock), timeout)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def http_status(host: str, port: int, path: str, timeout: float = 2) -> int | None:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def ssh_banner(host: str, port: int = 22, timeout: float = 2) -> bool:
    """True when an SSH server greets on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def uplink_mtu() -> int:
    """The MTU of the default route's device (1400 on some VMs); bridge, veths and dockerds use it."""
    proc = run(["ip", "-o", "route", "show", "default"], check=False)
    words = proc.stdout.split()
    if "dev" in words:
        try:
            mtu = int(Path(f"/sys/class/net/{words[words.index('dev') + 1]}/mtu").read_text())
            return min(mtu, 1500)
        except (OSError, ValueError, IndexError):
            pass
    return 1500


# -- finding and killing processes ------------------------------------------------------------

def alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def netns_pids(name: str) -> set[int]:
    proc = run(["ip", "netns", "pids", name], check=False)
    return {int(word) for word in proc.stdout.split() if word.isdigit()}


DAEMONS = ("dockerd", "containerd", "containerd-shim-runc-v2", "sshd", "docker-registry")


def pids_mentioning(text: str, programs: Iterable[str] = DAEMONS) -> set[int]:
    """Live processes of ``programs`` whose command line contains ``text`` (e.g. the state dir).

    Limited to the sandbox's own daemons so that, say, a ``tail -f`` of a sandbox log is left alone.
    """
    needle = text.encode()
    names = set(programs)
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0].decode(errors="replace")) in names and any(needle in arg for arg in argv):
            found.add(int(entry.name))
    found.discard(os.getpid())
    return {pid for pid in found if alive(pid)}


def cgroup_mounts() -> list[Path]:
    mounts = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] in ("cgroup", "cgroup2"):
                mounts.append(Path(parts[1]))
    return mounts


def cgroup_v1_mount(controller: str) -> Path | None:
    """Where the cgroup v1 hierarchy of ``controller`` (``cpuacct``, ``memory``) is mounted, if it is."""
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 3 and parts[2] == "cgroup" and controller in parts[3].split(","):
                return Path(parts[1])
    return None


def cgroup_dirs(name: str) -> list[Path]:
    """Every ``/<name>`` cgroup (the cgroup parent of one server's containers), in each hierarchy."""
    return [mount / name for mount in cgroup_mounts() if (mount / name).is_dir()]


def cgroup_pids(dirs: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for top in dirs:
        for procs in top.rglob("cgroup.procs"):
            try:
                pids.update(int(line) for line in procs.read_text().split())
            except (OSError, ValueError):
                continue
    return {pid for pid in pids if alive(pid)}


def remove_cgroups(dirs: Iterable[Path]) -> None:
    """rmdir a cgroup tree, deepest first (cgroup dirs cannot be removed with their files)."""
    for top in dirs:
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                path.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError:
            pass


def kill_until_gone(find: Callable[[], set[int]], timeout: float = 10) -> set[int]:
    """SIGKILL what ``find`` returns until it returns nothing; return pids that would not die."""
    deadline = time.monotonic() + timeout
    while True:
        pids = find()
        if not pids or time.monotonic() > deadline:
            return pids
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.03)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 1 and (parts[1] + "/").startswith(prefix):
                found.append(parts[1])
    return found
