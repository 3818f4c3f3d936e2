"""Pull benchmark: ``kamalpy build pull`` of the sandbox app image on N servers at once, per ``pull_limit``.

Run by hand, as root, not by pytest, against a sandbox that is already up (``kamalpy sandbox up N``; select
it with KAMALPY_SANDBOX_PREFIX/DIR/SUBNET). For each limit and run: the image is removed from every server
(through its docker socket, no SSH), then ``build pull`` runs with ``x-kamalpy: {pull_limit: LIMIT}``.
Recorded: wall time, exit status (a failed pull is counted), the registry's CPU seconds and the CPU seconds
of the servers' dockerd and containerd (read from /proc, so they exclude other processes on the machine).

Run: ``python benchmarks/pulls.py [--hosts 20] [--limits 20,10,5] [--runs 3] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kamalpy.builtin_plugins.sandbox.handle import Sandbox

SERVICE = "bpull"
KAMALPY = [sys.executable, "-m", "kamalpy"]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU of one process (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def daemons(sandbox: Sandbox, count: int) -> list[int]:
    """The dockerd and containerd processes of the first ``count`` servers."""
    found = []
    for server in sandbox.servers[:count]:
        pids = subprocess.run(["ip", "netns", "pids", server["netns"]], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() in ("dockerd", "containerd"):
                    found.append(int(pid))
            except OSError:
                continue
    return found


def project(sandbox: Sandbox, root: Path, count: int, limit: int, repository: str) -> Path:
    image = repository.split("/", 1)[1]
    (root / "config").mkdir(parents=True, exist_ok=True)
    snippet = sandbox.deploy_yml()
    hosts = "".join(f"  - {host}\n" for host in sandbox.hosts[:count])
    body = snippet.split("servers:\n", 1)[1].split("ssh:", 1)[1]
    (root / "config" / "deploy.yml").write_text(
        f"service: {SERVICE}\nimage: {image}\nservers:\n{hosts}ssh:{body}"
        f"builder:\n  arch: amd64\nx-kamalpy:\n  pull_limit: {limit}\n")
    return root


def remove_image(sandbox: Sandbox, count: int, tag: str) -> None:
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(lambda host: sandbox.docker(host, "image", "rm", "--force", tag, check=False),
                      sandbox.hosts[:count]))


def measure(sandbox: Sandbox, count: int, limit: int, runs: int, repository: str) -> dict[str, object]:
    registry_pid = int(sandbox.state["registry"]["pid"])
    pids = daemons(sandbox, count)
    walls, registry_cpu, daemon_cpu, failures, errors = [], [], [], 0, []
    with tempfile.TemporaryDirectory() as tmp:
        root = project(sandbox, Path(tmp), count, limit, repository)
        tag = f"{sandbox.registry}/{SERVICE}:v1"
        for _ in range(runs):
            remove_image(sandbox, count, tag)
            reg0, dae0 = cpu_seconds(registry_pid), sum(cpu_seconds(p) for p in pids)
            started = time.monotonic()
            result = subprocess.run([*KAMALPY, "build", "pull", "--version", "v1"], cwd=root, capture_output=True,
                                    text=True, timeout=600)
            walls.append(time.monotonic() - started)
            registry_cpu.append(cpu_seconds(registry_pid) - reg0)
            daemon_cpu.append(sum(cpu_seconds(p) for p in pids) - dae0)
            if result.returncode != 0:
                failures += 1
                errors.append(result.stderr.strip().splitlines()[-1][:300])
    return {"hosts": count, "limit": limit, "runs": runs, "wall_median": statistics.median(walls),
            "wall_max": max(walls), "registry_cpu_median": statistics.median(registry_cpu),
            "daemons_cpu_median": statistics.median(daemon_cpu), "failed_runs": failures, "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--limits", default="20,10,5")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sandbox = Sandbox.load()
    count = min(args.hosts, len(sandbox.hosts))
    repository = sandbox.app_image(SERVICE)  # built and pushed once
    print(f"{'hosts':>5} {'limit':>5} {'wall s (median/max)':>20} {'registry CPU s':>15} "
          f"{'dockerd+containerd CPU s':>25} {'failed':>7}", flush=True)
    rows = []
    for limit in args.limits.split(","):
        row = measure(sandbox, count, int(limit), args.runs, repository)
        rows.append(row)
        print(f"{row['hosts']:>5} {row['limit']:>5} {row['wall_median']:>11.2f} / {row['wall_max']:<6.2f} "
              f"{row['registry_cpu_median']:>15.2f} {row['daemons_cpu_median']:>25.2f} "
              f"{row['failed_runs']:>4}/{row['runs']}", flush=True)
        for error in row["errors"]:
            print(f"      {error}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
