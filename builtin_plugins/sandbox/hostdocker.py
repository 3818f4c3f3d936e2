"""The host's own dockerd (root netns): the deploying machine's Docker engine.

``sandbox up`` starts it when nothing answers on /var/run/docker.sock (there is no systemd on the
test machines), trusting the sandbox subnet's registry. ``sandbox down`` leaves it running, as a
machine's Docker engine would be, and only removes the sandbox's images from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kamalpy.builtin_plugins.sandbox import system
from kamalpy.builtin_plugins.sandbox.state import Spec

SOCKET = Path("/var/run/docker.sock")
LOG = Path("/var/log/kamalpy-dockerd.log")
START_TIMEOUT = 60  # seconds; a loaded 2-core CI machine is slow
# Sandboxes with other prefixes and subnets (benchmarks, parallel test sessions) share this one dockerd,
# and whichever starts it first decides what it trusts: trust the range they are usually given as well.
SHARED_SUBNETS = "10.192.0.0/10"


def client_env(spec: Spec, sock: Path = SOCKET) -> dict[str, str]:
    """Environment for the docker CLI against ``sock``, with the sandbox's own DOCKER_CONFIG."""
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")}
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(spec.docker_config), DOCKER_BUILDKIT="0")
    return env


def running() -> bool:
    return system.docker_ping(SOCKET)


def start(spec: Spec, mtu: int) -> int | None:
    """Start the host dockerd unless one answers; returns the new pid, or None when one was running."""
    if running():
        return None
    if _host_dockerd_pids():  # one is starting (another test run?): a second would fail on the pid file
        return None
    subnets = dict.fromkeys([spec.subnet, SHARED_SUBNETS])
    trusted = [arg for subnet in subnets for arg in ("--insecure-registry", subnet)]
    return system.spawn_daemon(["dockerd", *trusted, "--mtu", str(mtu)], LOG)


def _host_dockerd_pids() -> set[int]:
    """dockerd processes in our network namespace (the sandbox servers' dockerds are in their own)."""
    own = os.readlink("/proc/self/ns/net")
    pids = set()
    for pid in system.pids_mentioning("", programs=("dockerd",)):
        try:
            if os.readlink(f"/proc/{pid}/ns/net") == own:
                pids.add(pid)
        except OSError:
            continue
    return pids


def wait(timeout: float = START_TIMEOUT) -> None:
    system.wait_until(running, timeout, f"the host dockerd on {SOCKET} (log: {LOG})")


def trusts(spec: Spec) -> bool:
    """Whether the host dockerd may push to the sandbox registry over plain HTTP."""
    proc = system.run(["docker", "info", "--format", "{{json .RegistryConfig}}"], env=client_env(spec), check=False)
    try:
        config = json.loads(proc.stdout)
    except ValueError:
        return False
    import ipaddress

    gateway = ipaddress.IPv4Address(spec.gateway)
    for cidr in config.get("InsecureRegistryCIDRs") or []:
        try:
            if gateway in ipaddress.ip_network(cidr):
                return True
        except ValueError:
            continue
    index = (config.get("IndexConfigs") or {}).get(spec.registry) or {}
    return index.get("Secure") is False
