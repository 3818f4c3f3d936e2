"""The caddy driver's switch of one host: from the new container running to traffic on it (run by hand, as root).

On one sandbox server, ``deploy -P`` alternates v1 and v2 behind the ``caddy`` driver while a poller asks
Caddy for ``/version`` every 10 ms. For each deploy it records when Docker started the new container
(``State.StartedAt``, the server's dockerd, same clock) and when the poller first got the new version
through Caddy; the difference is the switch time. Both health probes are measured in the same run, taking
turns: ``server`` (the default: ``curl`` on the server to the container's address) and ``container``
(``proxy.caddy.probe_image``: a one-off busybox container in Caddy's namespace, the driver's only probe
before). It also counts failed polls (there must be none) and the deploy's wall time.

It uses the sandbox of KAMALPY_SANDBOX_PREFIX/DIR/SUBNET (default: its own, ``kpw`` on 10.215.0.0/24),
brought up with one server unless one is up; ``--keep`` leaves a sandbox it brought up running.

Run: ``python benchmarks/caddy_driver_switch.py [--runs 6] [--keep]``. Prints a table (median, min, max).
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from deploy import GIT, deploy, sandbox_up  # noqa: E402  (the sandbox and deploy helpers of the deploy benchmark)

BENCH_SANDBOX = {"KAMALPY_SANDBOX_PREFIX": "kpw", "KAMALPY_SANDBOX_DIR": "/var/tmp/kamalpy-bench-switch",
                 "KAMALPY_SANDBOX_SUBNET": "10.215.0.0/24"}
HTTP_PORT, ADMIN_PORT = 18081, 12020
KAMALPY = [str(Path(sys.executable).parent / "kamalpy")]


class Poller:
    """Asks Caddy for ``/version`` every ``interval`` seconds on a keep-alive connection; records answers."""

    def __init__(self, host: str, domain: str, interval: float = 0.01) -> None:
        self.host, self.domain, self.interval = host, domain, interval
        self.seen: list[tuple[float, str]] = []  # (wall clock, version or "ERR")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, HTTP_PORT, timeout=5)
        while not self._stop.is_set():
            try:
                conn.request("GET", "/version", headers={"Host": self.domain})
                response = conn.getresponse()
                body = response.read().decode().strip()
                self.seen.append((time.time(), body if response.status == 200 else "ERR"))
            except (OSError, http.client.HTTPException):
                self.seen.append((time.time(), "ERR"))
                conn.close()
                conn = http.client.HTTPConnection(self.host, HTTP_PORT, timeout=5)
            time.sleep(self.interval)

    def first(self, version: str, after: float) -> float | None:
        return next((t for t, v in self.seen if v == version and t >= after), None)

    def errors(self, since: float) -> int:
        return sum(1 for t, v in self.seen if v == "ERR" and t >= since)


def project(root: Path, sandbox: Any, host: str, probe_image: str | None) -> Path:
    service = f"sw{os.getpid() % 10000}"
    repository = sandbox.app_image(service)
    caddy_version = sandbox.images["caddy"].rsplit(":", 1)[1]
    caddy_settings: dict[str, Any] = {"admin_port": ADMIN_PORT}
    if probe_image:
        caddy_settings["probe_image"] = probe_image
    config = {"service": service, "image": repository.split("/", 1)[1], **yaml.safe_load(sandbox.deploy_yml()),
              "servers": [host], "builder": {"arch": "amd64"},
              "proxy": {"driver": "caddy", "host": f"{service}.test",
                        "run": {"registry": sandbox.registry, "repository": "caddy", "version": caddy_version,
                                "http_port": HTTP_PORT},
                        "caddy": caddy_settings}}
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "deploy.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    if not (root / ".git").exists():
        subprocess.run([*GIT, "init", "-q"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "bench", "--allow-empty"], cwd=root, check=True)
    return root


def started_at(sandbox: Any, host: str, service: str, version: str) -> float:
    name = f"{service}-web-{version}"
    stamp = sandbox.docker(host, "inspect", "-f", "{{.State.StartedAt}}", name).stdout.strip()
    # Docker prints nanoseconds; datetime takes microseconds.
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{whole}.{fraction[:6] or '0'}+00:00").timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="deploys per probe (default 6)")
    parser.add_argument("--keep", action="store_true", help="leave a sandbox this run brought up")
    args = parser.parse_args()
    for key, value in BENCH_SANDBOX.items():
        os.environ.setdefault(key, value)
    sandbox, brought_up = sandbox_up(1)
    host = sandbox.hosts[0]
    modes = {"server": None, "container": sandbox.images["busybox"]}
    figures: dict[str, dict[str, list[float]]] = {m: {"switch": [], "deploy": [], "errors": []} for m in modes}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = project(Path(tmp) / "app", sandbox, host, None)
            service = yaml.safe_load((root / "config" / "deploy.yml").read_text())["service"]
            subprocess.run([*KAMALPY, "setup", "-q", "-P", "--version", "v1"], cwd=root, check=True,
                           capture_output=True)
            current = "v1"
            with Poller(host, f"{service}.test") as poller:
                for run in range(args.runs):
                    for mode, image in modes.items():
                        project(root, sandbox, host, image)
                        target = "v2" if current == "v1" else "v1"
                        began = time.time()
                        figures[mode]["deploy"].append(deploy(KAMALPY, root, target))
                        time.sleep(0.5)  # the poller sees the new version well before the deploy ends
                        first = poller.first(target, began)
                        start = started_at(sandbox, host, service, target)
                        if first is None:
                            raise SystemExit(f"{mode} run {run}: {target} was never served")
                        figures[mode]["switch"].append(first - start)
                        figures[mode]["errors"].append(poller.errors(began))
                        current = target
            subprocess.run([*KAMALPY, "remove", "-q", "-y"], cwd=root, capture_output=True)
            subprocess.run([*KAMALPY, "proxy", "remove", "-q", "--force"], cwd=root, capture_output=True)
    finally:
        if brought_up and not args.keep:
            from kamalpy.builtin_plugins.sandbox import lifecycle

            lifecycle.down(sandbox.spec)
    print(f"\n{'probe':<10} {'switch median':>14} {'min':>7} {'max':>7} {'deploy median':>14} {'failed polls':>13}")
    for mode, found in figures.items():
        switch = found["switch"]
        print(f"{mode:<10} {statistics.median(switch):>13.2f}s {min(switch):>6.2f}s {max(switch):>6.2f}s "
              f"{statistics.median(found['deploy']):>13.2f}s {int(sum(found['errors'])):>13}")
    return 0 if all(sum(f["errors"]) == 0 for f in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
