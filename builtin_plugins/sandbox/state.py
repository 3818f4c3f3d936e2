"""Where the sandbox lives and what it is called: names, addresses, paths, and the JSON state file.

Everything the sandbox creates on the host is named from one prefix (``kps`` by default), so ``down``
finds exactly that and nothing else: network namespaces ``kps1..N``, host-side veths ``kpsv1..N``,
the bridge ``kpsbr0``, the iptables comment ``kps-sandbox``, the cgroups ``/kps1..N``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kamalpy.errors import KamalpyError

DIR_ENV = "KAMALPY_SANDBOX_DIR"
PREFIX_ENV = "KAMALPY_SANDBOX_PREFIX"
SUBNET_ENV = "KAMALPY_SANDBOX_SUBNET"

DEFAULT_DIR = "/var/tmp/kamalpy-sandbox"
DEFAULT_PREFIX = "kps"
DEFAULT_SUBNET = "10.213.0.0/24"
REGISTRY_PORT = 5000
FIRST_HOST = 11  # server i gets .(10 + i): .1 is the bridge, .2-.10 stay free
# An idle server takes about 31 MiB and 1 CPU-ms/s, its start about 0.5 CPU-s (docs/benchmarks.md): 200 fit
# a 24 GB, 2-core machine with room for the deploys' containers; a deploy to 100 already saturates 2 cores.
MAX_SERVERS = 200
STATE_VERSION = 1


class SandboxError(KamalpyError):
    """The sandbox could not be created, inspected or removed."""


@dataclass(frozen=True)
class Spec:
    """One sandbox's naming and addressing. Two specs with different prefixes never touch each other."""

    prefix: str = DEFAULT_PREFIX
    dir: Path = Path(DEFAULT_DIR)
    subnet: str = DEFAULT_SUBNET

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Spec:
        env = os.environ if environ is None else environ
        return cls(
            prefix=env.get(PREFIX_ENV) or DEFAULT_PREFIX,
            dir=Path(env.get(DIR_ENV) or DEFAULT_DIR),
            subnet=env.get(SUBNET_ENV) or DEFAULT_SUBNET,
        )

    def __post_init__(self) -> None:
        # Short lowercase prefixes keep interface names under Linux's 15-character limit.
        if not re.fullmatch(r"[a-z][a-z0-9]{1,5}", self.prefix):
            raise SandboxError(f"Invalid sandbox prefix '{self.prefix}': use 2-6 lowercase letters or digits")
        try:
            net = ipaddress.IPv4Network(self.subnet)
        except ValueError as error:
            raise SandboxError(f"Invalid sandbox subnet '{self.subnet}': {error}") from None
        if net.prefixlen != 24 or not net.is_private:
            raise SandboxError(f"Invalid sandbox subnet '{self.subnet}': use a private /24")
        if not self.dir.is_absolute():
            raise SandboxError(f"Invalid sandbox dir '{self.dir}': use an absolute path")

    # -- names ---------------------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        return f"{self.prefix}br0"

    @property
    def comment(self) -> str:
        return f"{self.prefix}-sandbox"

    def name(self, index: int) -> str:
        """Server ``index``'s netns, hostname and cgroup name."""
        return f"{self.prefix}{index}"

    def veth(self, index: int) -> str:
        return f"{self.prefix}v{index}"

    def index_of(self, name: str) -> int | None:
        match = re.fullmatch(rf"{self.prefix}(\d+)", name)
        return int(match.group(1)) if match else None

    # -- addresses -----------------------------------------------------------------------------
    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)

    def address(self, index: int) -> str:
        return str(self.network.network_address + FIRST_HOST - 1 + index)

    @property
    def registry(self) -> str:
        return f"{self.gateway}:{REGISTRY_PORT}"

    # -- paths ---------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def docker_config(self) -> Path:
        """DOCKER_CONFIG for the sandbox's own docker calls, so root's ~/.docker is never touched."""
        return self.dir / "docker-config"

    def server_dir(self, index: int) -> Path:
        return self.dir / f"s{index}"

    def docker_socket(self, index: int) -> Path:
        # The server's /run is a bind mount of this directory, so dockerd's default socket shows up here.
        return self.server_dir(index) / "run" / "docker.sock"


def load_state(spec: Spec) -> dict[str, Any] | None:
    """The state written by ``up``, or None when no sandbox of this spec is up."""
    try:
        data = json.loads(spec.state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise SandboxError(f"Unreadable sandbox state {spec.state_file}: {error}") from None
    return data if isinstance(data, dict) else None


def save_state(spec: Spec, data: dict[str, Any]) -> None:
    tmp = spec.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.chmod(0o600)  # it may hold the registry password
    tmp.replace(spec.state_file)
