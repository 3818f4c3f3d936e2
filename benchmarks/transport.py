"""Transport benchmarks on sandbox servers (run by hand, as root, not by pytest).

(a) Per-command overhead on a warm connection: ``true`` run N times on one host through the Executor
    (the connection is opened before timing starts). Target: median under 30 ms.
(b) ``kamalpy server exec true`` on 10 servers against 1 server, wall time of the whole command
    (median of R runs each, after one warm-up). Target: 10 hosts under 1.5 x the 1-host time.

It brings up its own 10-server sandbox (prefix ``kpb``, ``/var/tmp/kamalpy-bench``, ``10.213.7.0/24``;
override with KAMALPY_SANDBOX_PREFIX/DIR/SUBNET) beside any other, and takes it down afterwards unless
``--keep``. Run: ``python benchmarks/transport.py [-n 200] [-r 5] [--keep]``. Prints the numbers; exits 1
when a target is missed.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH_SANDBOX = {"KAMALPY_SANDBOX_PREFIX": "kpb", "KAMALPY_SANDBOX_DIR": "/var/tmp/kamalpy-bench",
                 "KAMALPY_SANDBOX_SUBNET": "10.213.7.0/24"}
SERVERS = 10
OVERHEAD_TARGET_MS = 30.0
FAN_OUT_TARGET = 1.5


def overhead(sandbox, runs: int) -> list[float]:
    """Milliseconds per ``true`` on one warm pooled connection."""
    from kamalpy.builtin_plugins.transport_paramiko import paramiko_transport
    from kamalpy.execution import Executor
    from kamalpy.output import Output
    from kamalpy.transport import SshSettings

    settings = SshSettings(keys=(sandbox.key,), keys_only=True, config=(sandbox.ssh_config,))
    executor = Executor(paramiko_transport(), settings, Output(quiet=True, stream=io.StringIO()))
    host = sandbox.hosts[0]
    try:
        session = executor.on([host], lambda s: s)[host]
        session.execute("true")  # connect and warm up
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            session.execute("true")
            samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        executor.close()


def project(root: Path, sandbox, hosts: list[str]) -> Path:
    config = yaml.safe_load(sandbox.deploy_yml())
    config = {"service": "bench", "image": "sandbox-app", **config, "servers": hosts, "builder": {"arch": "amd64"}}
    (root / "config").mkdir(parents=True)
    (root / "config" / "deploy.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def wall(kamalpy: str, cwd: Path, runs: int) -> list[float]:
    """Seconds per ``kamalpy server exec true`` (one warm-up run first, not counted)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"VERSION": "bench1"}
    samples = []
    for i in range(runs + 1):
        started = time.perf_counter()
        proc = subprocess.run([kamalpy, "-q", "server", "exec", "true"], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=120)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"kamalpy server exec failed in {cwd}: {proc.stderr}")
        if i:
            samples.append(elapsed)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--commands", type=int, default=200, help="commands for (a)")
    parser.add_argument("-r", "--runs", type=int, default=5, help="kamalpy runs per case for (b)")
    parser.add_argument("--keep", action="store_true", help="leave the benchmark sandbox up")
    args = parser.parse_args()
    for key, value in BENCH_SANDBOX.items():
        os.environ.setdefault(key, value)

    from kamalpy.builtin_plugins.sandbox import lifecycle
    from kamalpy.builtin_plugins.sandbox.handle import Sandbox
    from kamalpy.builtin_plugins.sandbox.state import Spec

    kamalpy = shutil.which("kamalpy", path=os.path.dirname(sys.executable)) or shutil.which("kamalpy")
    if not kamalpy:
        sys.exit("kamalpy is not installed")
    spec = Spec.from_env()
    current = lifecycle.status(spec)
    reuse = bool(current and current["ok"] and len(current["servers"]) >= SERVERS)
    if not reuse:
        if current is not None:
            lifecycle.down(spec)
        print(f"Bringing up {SERVERS} servers in {spec.dir} ({spec.subnet})...", flush=True)
        lifecycle.up(spec, SERVERS, with_images=False)
    try:
        sandbox = Sandbox.load(spec)
        print(f"load average: {os.getloadavg()[0]:.1f}", flush=True)

        samples = overhead(sandbox, args.commands)
        median_ms, mean_ms = statistics.median(samples), statistics.mean(samples)
        print(f"(a) per-command overhead, {args.commands} x `true` on one warm connection: "
              f"median {median_ms:.1f} ms, mean {mean_ms:.1f} ms, p90 {sorted(samples)[int(len(samples) * .9)]:.1f} ms "
              f"(target: median < {OVERHEAD_TARGET_MS:g} ms)", flush=True)

        with tempfile.TemporaryDirectory() as tmp:
            one = project(Path(tmp) / "one", sandbox, sandbox.hosts[:1])
            ten = project(Path(tmp) / "ten", sandbox, sandbox.hosts[:SERVERS])
            # Interleave the two cases so that load changes on a shared machine hit both alike.
            t1: list[float] = []
            t10: list[float] = []
            for _ in range(args.runs):
                t1 += wall(kamalpy, one, 1)
                t10 += wall(kamalpy, ten, 1)
        m1, m10 = statistics.median(t1), statistics.median(t10)
        ratio = m10 / m1
        print(f"(b) `kamalpy server exec true`: 1 host {m1:.2f} s, {SERVERS} hosts {m10:.2f} s (medians of "
              f"{args.runs}), ratio {ratio:.2f} (target: < {FAN_OUT_TARGET:g})", flush=True)
    finally:
        if not reuse and not args.keep:
            lifecycle.down(spec)

    missed = []
    if median_ms >= OVERHEAD_TARGET_MS:
        missed.append("(a) per-command overhead")
    if ratio >= FAN_OUT_TARGET:
        missed.append("(b) 10-host fan-out")
    if missed:
        print("Missed: " + ", ".join(missed))
        return 1
    print("All targets met.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
