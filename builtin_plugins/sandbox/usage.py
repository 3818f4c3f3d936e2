"""What one sandbox server uses: CPU-seconds since it started, and memory now.

``files/server-init.sh`` puts the server's own processes (dockerd, containerd, the shims, sshd and every
ssh session with its shells and docker CLIs) in the cgroup ``/<name>/server``, and its dockerd puts the
containers in ``/<name>/<id>`` (daemon.json's cgroup-parent). So ``/<name>`` of the cgroup v1 ``cpuacct``
and ``memory`` hierarchies counts all of it; both count their child cgroups, including removed ones
(a container's CPU stays counted after ``docker rm``). ``down`` removes these cgroups.
"""

from __future__ import annotations

from pathlib import Path

from kamalpy.builtin_plugins.sandbox import system
from kamalpy.builtin_plugins.sandbox.state import SandboxError, Spec


def _cgroup_file(spec: Spec, index: int, controller: str, filename: str) -> Path:
    mount = system.cgroup_v1_mount(controller)
    if mount is None:
        raise SandboxError(f"Server usage needs the cgroup v1 '{controller}' hierarchy, which is not mounted")
    path = mount / spec.name(index) / filename
    if not path.exists():
        raise SandboxError(f"Sandbox server {spec.name(index)} has no {controller} cgroup ({path.parent}): "
                           "is it up, and was it started by this kamalpy?")
    return path


def server_cpu_seconds(spec: Spec, index: int) -> float:
    """CPU-seconds (user + system) used by server ``index`` since it started: daemons, sessions, containers."""
    return int(_cgroup_file(spec, index, "cpuacct", "cpuacct.usage").read_text()) / 1e9


def server_memory_bytes(spec: Spec, index: int) -> int:
    """Memory server ``index`` uses now, as ``docker stats`` counts it: the cgroup's usage without the
    inactive file cache (pages the kernel drops first, e.g. image layers read once)."""
    usage = int(_cgroup_file(spec, index, "memory", "memory.usage_in_bytes").read_text())
    stat = _cgroup_file(spec, index, "memory", "memory.stat").read_text().split()
    fields = dict(zip(stat[::2], stat[1::2], strict=False))
    return max(0, usage - int(fields.get("total_inactive_file", 0)))
