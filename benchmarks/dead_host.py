"""Dead-host detection: how long a command on a host that goes silent takes to fail (run by hand, as root).

For each run: a command (``sleep 120``) starts on a sandbox server through kamalpy's executor and the
paramiko transport, with kamalpy's default liveness settings (no ServerAlive* in the sandbox's ssh
config: a keepalive that must be answered every 5 s, 3 misses); once it runs, every packet to the server
is dropped (``iptables -A INPUT -j DROP`` in its network namespace, no reset sent), and the time from the
drop to the command's failure is measured. Target: at most 30 s, every run.

It uses the sandbox named by KAMALPY_SANDBOX_PREFIX/DIR/SUBNET (default: its own, prefix ``kpl``,
``/var/tmp/kamalpy-bench-dead``, ``10.213.9.0/24``), brought up with one server if it is not up, and
taken down afterwards unless it was up already or ``--keep``.
Run: ``python benchmarks/dead_host.py [-r 3] [--keep]``. Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time

BENCH_SANDBOX = {"KAMALPY_SANDBOX_PREFIX": "kpl", "KAMALPY_SANDBOX_DIR": "/var/tmp/kamalpy-bench-dead",
                 "KAMALPY_SANDBOX_SUBNET": "10.213.9.0/24"}
TARGET_S = 30.0


def detection(sandbox, host: str) -> tuple[float, str]:
    """Seconds from the drop to the failure, and the error."""
    from kamalpy.builtin_plugins.transport_paramiko import paramiko_transport
    from kamalpy.errors import HostErrors
    from kamalpy.execution import Executor
    from kamalpy.output import Output
    from kamalpy.transport import SshSettings

    settings = SshSettings(keys=(sandbox.key,), keys_only=True, config=(sandbox.ssh_config,))
    executor = Executor(paramiko_transport(), settings, Output(quiet=True, stream=io.StringIO()))
    marker = f"/tmp/kamalpy-dead-{secrets.token_hex(4)}"
    failed = threading.Event()
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            executor.on([host], lambda session: session.execute(f"touch {marker}; sleep 120"))
        except HostErrors as exc:
            outcome["error"] = str(exc)
        outcome["at"] = time.monotonic()
        failed.set()

    netns = sandbox.server(host)["netns"]
    rule = ["INPUT", "-j", "DROP"]
    threading.Thread(target=run, daemon=True).start()
    try:
        while sandbox.ssh(host, f"test -e {marker}", check=False).returncode != 0:
            if failed.is_set():
                raise SystemExit(f"the command ended before the drop: {outcome}")
            time.sleep(0.1)
        time.sleep(1)  # the command runs; a keepalive may be on its way
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-A", *rule], check=True)
        dropped = time.monotonic()
        if not failed.wait(120):
            return float("inf"), "not detected within 120 s"
    finally:
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-D", *rule], check=False)
        executor.close()
    sandbox.ssh(host, f"rm -f {marker}", check=False)  # the sleep ends by itself
    return float(outcome["at"]) - dropped, str(outcome.get("error", "no error"))  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--runs", type=int, default=3, help="runs (each takes about 20 s)")
    parser.add_argument("--keep", action="store_true", help="leave the benchmark sandbox up")
    args = parser.parse_args()
    for key, value in BENCH_SANDBOX.items():
        os.environ.setdefault(key, value)

    from kamalpy.builtin_plugins.sandbox import lifecycle
    from kamalpy.builtin_plugins.sandbox.handle import Sandbox
    from kamalpy.builtin_plugins.sandbox.state import Spec

    spec = Spec.from_env()
    current = lifecycle.status(spec)
    reuse = bool(current and current["ok"] and current["servers"])
    if not reuse:
        if current is not None:
            lifecycle.down(spec)
        print(f"Bringing up 1 server in {spec.dir} ({spec.subnet})...", flush=True)
        lifecycle.up(spec, 1, with_images=False)
    try:
        sandbox = Sandbox.load(spec)
        host = sandbox.hosts[-1]
        print(f"load average: {os.getloadavg()[0]:.1f}; host {host}", flush=True)
        samples = []
        for run in range(1, args.runs + 1):
            seconds, error = detection(sandbox, host)
            samples.append(seconds)
            print(f"run {run}: failed {seconds:.1f} s after the drop: {error}", flush=True)
    finally:
        if not reuse and not args.keep:
            lifecycle.down(spec)
    worst = max(samples)
    print(f"silent host found in: median {statistics.median(samples):.1f} s, max {worst:.1f} s over {len(samples)} "
          f"runs (target: <= {TARGET_S:g} s)")
    if worst > TARGET_S:
        print("Missed: dead-host detection")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
