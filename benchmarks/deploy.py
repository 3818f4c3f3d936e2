"""Deploy benchmark: kamalpy against Kamal on sandbox servers (run by hand, as root, not by pytest).

``deploy -P --version V`` of an already pushed image to 1, 3 and 10 servers, by both tools from the same
config (each with its own service, so they never touch each other's containers): wall time, SSH round
trips per host (sshd's "Starting session:" lines: one per command channel) and logins per host. Each case
first deploys v1 once with each tool (setup, not measured), then alternates v2 and v1 for ``--runs``
deploys per tool, the two tools taking turns first.

Target (issue "Zero-downtime deploys"): the same effects on the servers as Kamal with at most half of
Kamal's round trips per host. "Effects" are compared after every measured deploy, per host, with the
service name, container ids and random suffixes replaced: the service's containers (name, state), its
images, the kamal-proxy calls the stand-in recorded during the deploy (with the target container by
name), the audit log lines it added, and its files under ``~/.kamal`` (app env files with modes, the
lock). They are read through each server's
docker socket and its private /root on the host, so reading them adds no SSH round trip.

It brings up its own sandbox (prefix ``kpd``, ``/var/tmp/kamalpy-bench-deploy``, ``10.214.0.0/24``;
override with KAMALPY_SANDBOX_PREFIX/DIR/SUBNET) beside any other, and takes it down afterwards unless
``--keep``; one that is already up with enough servers is reused and left up.

Run: ``python benchmarks/deploy.py [--hosts 1,3,10] [--runs 4] [--keep] [--json FILE]``. Prints a table;
exits 1 when kamalpy's median round trips per host exceed half of Kamal's, or the effects differ.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH_SANDBOX = {"KAMALPY_SANDBOX_PREFIX": "kpd", "KAMALPY_SANDBOX_DIR": "/var/tmp/kamalpy-bench-deploy",
                 "KAMALPY_SANDBOX_SUBNET": "10.214.0.0/24"}
SERVICES = {"kamal": "bkamal", "kamalpy": "bkpy"}  # one service per tool: they share only kamal-proxy
CALLS_LOG = "/home/kamal-proxy/.config/kamal-proxy/calls.log"  # what the kamal-proxy stand-in was asked
ROUND_TRIP_RATIO = 0.5
DEPLOY_TIMEOUT = 600  # seconds for one deploy on a loaded 2-core machine
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]


@dataclass
class Case:
    """One tool on N hosts: the measured deploys."""

    tool: str
    hosts: list[str]
    wall: list[float] = field(default_factory=list)
    sessions: list[list[int]] = field(default_factory=list)  # per run, per host (primary first)
    logins: list[list[int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        per_host = [n for run in self.sessions for n in run]
        others = [n for run in self.sessions for n in run[1:]]
        return {
            "tool": self.tool, "hosts": len(self.hosts), "runs": len(self.wall),
            "wall_median": round(statistics.median(self.wall), 2),
            "wall_min": round(min(self.wall), 2), "wall_max": round(max(self.wall), 2),
            "round_trips_per_host_median": statistics.median(per_host),
            "round_trips_primary_median": statistics.median(run[0] for run in self.sessions),
            "round_trips_others": [min(others), statistics.median(others), max(others)] if others else None,
            "logins_per_host_median": statistics.median(n for run in self.logins for n in run),
            "wall": [round(t, 2) for t in self.wall], "sessions": self.sessions, "logins": self.logins,
        }


# -- the sandbox -----------------------------------------------------------------------------------------
def sandbox_up(count: int) -> tuple[Any, bool]:
    """The benchmark sandbox with at least ``count`` servers, and whether this run brought it up."""
    from kamalpy.builtin_plugins.sandbox import lifecycle
    from kamalpy.builtin_plugins.sandbox.handle import Sandbox
    from kamalpy.builtin_plugins.sandbox.state import Spec

    spec = Spec.from_env()
    current = lifecycle.status(spec)
    if current and current["ok"] and len(current["servers"]) >= count:
        print(f"Reusing the sandbox in {spec.dir} ({len(current['servers'])} servers, left up)", flush=True)
        return Sandbox.load(spec), False
    if current is not None:
        lifecycle.down(spec)
    print(f"Bringing up {count} servers in {spec.dir} ({spec.subnet})...", flush=True)
    lifecycle.up(spec, count)
    return Sandbox.load(spec), True


def push_app_images(sandbox: Any) -> dict[str, str]:
    """The sandbox app labelled for each tool's service; repository per tool.

    ``Sandbox.app_image`` pushes from the host's dockerd, which may trust only another sandbox's
    registry (it is started once, for the first sandbox): then tag and push on server 1, which trusts
    ours, and remove the images there again so its first pull is a real one.
    """
    from kamalpy.builtin_plugins.sandbox import hostdocker, images

    if hostdocker.trusts(sandbox.spec):
        return {tool: sandbox.app_image(service) for tool, service in SERVICES.items()}
    env = hostdocker.client_env(sandbox.spec, sandbox.docker_socket(1))
    repos = {tool: images.service_images(env, sandbox.registry, service, service) for tool, service in SERVICES.items()}
    images.remove_local(env, sandbox.registry)
    return repos


def server_root(sandbox: Any, host: str) -> Path:
    """The server's private /root, seen from the host (``~/.kamal`` lives there)."""
    return Path(sandbox.server(host)["dir"]) / "root"


def clean(sandbox: Any, hosts: list[str]) -> None:
    """Every container (with kamal-proxy) and our services' locks gone: each case starts from scratch."""
    sandbox.reset()
    for host in hosts:
        for service in SERVICES.values():
            shutil.rmtree(server_root(sandbox, host) / ".kamal" / f"lock-{service}", ignore_errors=True)


def parallel(fn: Callable[[str], Any], hosts: list[str]) -> list[Any]:
    from kamalpy.builtin_plugins.sandbox import system

    return system.parallel(fn, hosts)


# -- the projects ----------------------------------------------------------------------------------------
def project(root: Path, sandbox: Any, tool: str, repository: str, hosts: list[str]) -> Path:
    """A git project for ``tool``: the same config for both tools except the service and image."""
    sandbox_config = yaml.safe_load(sandbox.deploy_yml())
    service = SERVICES[tool]
    config = {
        "service": service,
        "image": repository.split("/", 1)[1],
        "servers": hosts,
        "ssh": sandbox_config["ssh"],
        # Kamal and kamalpy both take a list of secret names (a plain string is taken as the password too).
        "registry": {**sandbox_config["registry"], "password": ["KAMAL_REGISTRY_PASSWORD"]},
        "builder": {"arch": "amd64"},
        "proxy": {"run": {"registry": sandbox.registry}},  # the stand-in image the sandbox provides
    }
    password = sandbox_config["registry"]["password"]
    root.mkdir(parents=True)
    (root / "config").mkdir()
    (root / "config" / "deploy.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / ".kamal").mkdir()
    (root / ".kamal" / "secrets").write_text(f"KAMAL_REGISTRY_PASSWORD={password}\n")
    subprocess.run([*GIT, "init", "-q"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "bench"], cwd=root, check=True)
    return root


def deploy(argv: list[str], cwd: Path, version: str) -> float:
    """Seconds for one ``deploy -P --version VERSION``; exits with the output when it fails."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    proc = subprocess.run([*argv, "deploy", "-q", "-P", "--version", version], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=DEPLOY_TIMEOUT, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} deploy --version {version} failed in {cwd} (exit {proc.returncode}):\n"
                         f"{(proc.stdout + proc.stderr)[-4000:]}")
    return elapsed


# -- what a deploy did on the servers --------------------------------------------------------------------
def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def proxy_calls(sandbox: Any, host: str) -> list[str]:
    proc = sandbox.docker(host, "exec", "kamal-proxy", "cat", CALLS_LOG, check=False)
    return proc.stdout.splitlines() if proc.returncode == 0 else []


def marks(sandbox: Any, host: str) -> dict[str, int]:
    """Where each log stands before a deploy, so that the deploy's own lines can be picked out after it."""
    root = server_root(sandbox, host)
    return {"calls": len(proxy_calls(sandbox, host)),
            **{tool: len(_lines(root / ".kamal" / f"{svc}-audit.log")) for tool, svc in SERVICES.items()}}


def effects(sandbox: Any, host: str, tool: str, before: dict[str, int]) -> dict[str, list[str]]:
    """What ``tool``'s deploy left on ``host``, with names and ids made comparable between the tools."""
    service = SERVICES[tool]

    def norm(text: str) -> str:
        text = text.replace(service, "SERVICE")
        text = re.sub(r"_replaced_[0-9a-f]+", "_replaced_X", text)
        return re.sub(r"\b[0-9a-f]{12,64}\b", "ID", text)

    listed = [line.split() for line in sandbox.docker(host, "ps", "-a", "--no-trunc", "--filter",
                                                      f"label=service={service}", "--format",
                                                      "{{.ID}} {{.Names}} {{.State}}").stdout.splitlines()]
    containers = [f"{name} {state}" for _, name, state in listed]

    def target(match: re.Match[str]) -> str:  # which container kamal-proxy was pointed at, by name
        names = [name for cid, name, _ in listed if cid.startswith(match.group(1))]
        return f"--target={names[0] if names else 'UNKNOWN'}:"
    repo = f"{sandbox.registry}/{service}:"
    images = [tag for tag in sandbox.docker(host, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
              if tag.startswith(repo)]
    root = server_root(sandbox, host)
    audit = _lines(root / ".kamal" / f"{service}-audit.log")[before[tool]:]
    audit = [re.sub(r"^\[[^]]*\] \[[^]]*\] ", "", line) for line in audit]  # time and user
    files = []
    for top in (root / ".kamal" / "apps" / service, root / ".kamal" / f"lock-{service}"):
        if top.exists():
            for path in sorted([top, *top.rglob("*")]):
                files.append(f"{path.relative_to(root)} {path.stat().st_mode & 0o7777:o}")
    return {
        "containers": sorted(norm(line) for line in containers),
        "images": sorted(norm(tag) for tag in images),
        "proxy_calls": [norm(re.sub(r"--target=([0-9a-f]+):", target, line))
                        for line in proxy_calls(sandbox, host)[before["calls"]:]],
        "audit": [norm(line) for line in audit],
        "files": [norm(line) for line in files],
    }


def differences(kamal: dict[str, dict[str, list[str]]], kamalpy: dict[str, dict[str, list[str]]],
                label: str) -> list[str]:
    out = []
    for host, theirs in kamal.items():
        ours = kamalpy[host]
        for what in theirs:
            if theirs[what] != ours[what]:
                out.append(f"{label} {host} {what}: Kamal {theirs[what]} / kamalpy {ours[what]}")
    return out


# -- one host count --------------------------------------------------------------------------------------
def run_case(sandbox: Any, tools: dict[str, list[str]], repos: dict[str, str], count: int, runs: int,
             workdir: Path, samples: dict[str, Any]) -> tuple[dict[str, Case], list[str]]:
    hosts = sandbox.hosts[:count]
    clean(sandbox, sandbox.hosts)
    roots = {tool: project(workdir / f"{tool}-{count}", sandbox, tool, repos[tool], hosts) for tool in tools}
    for tool, argv in tools.items():  # setup: first boot of the proxy and the app, not measured
        deploy(argv, roots[tool], "v1")
    cases = {tool: Case(tool, hosts) for tool in tools}
    diffs: list[str] = []
    for run in range(runs):
        version = ("v2", "v1")[run % 2]
        order = list(tools) if run % 2 == 0 else list(reversed(tools))  # load drifts: take turns going first
        seen: dict[str, dict[str, dict[str, list[str]]]] = {}
        for tool in order:
            before = dict(zip(hosts, parallel(lambda h: marks(sandbox, h), hosts), strict=True))
            sessions = [sandbox.ssh_sessions(h) for h in hosts]
            logins = [sandbox.ssh_logins(h) for h in hosts]
            cases[tool].wall.append(deploy(tools[tool], roots[tool], version))
            cases[tool].sessions.append([sandbox.ssh_sessions(h) - n for h, n in zip(hosts, sessions, strict=True)])
            cases[tool].logins.append([sandbox.ssh_logins(h) - n for h, n in zip(hosts, logins, strict=True)])
            seen[tool] = dict(zip(hosts, parallel(lambda h, t=tool, b=before: effects(sandbox, h, t, b[h]), hosts),
                                  strict=True))
            print(f"  {count:>2} hosts run {run + 1} {version} {tool:<8} {cases[tool].wall[-1]:6.2f} s  "
                  f"round trips {cases[tool].sessions[-1]}", flush=True)
        samples[str(count)] = {tool: effects_by_host[hosts[0]] for tool, effects_by_host in seen.items()}
        if len(seen) == 2:
            diffs += differences(seen["kamal"], seen["kamalpy"], f"[{count} hosts, run {run + 1}, {version}]")
    return cases, diffs


# -- report ----------------------------------------------------------------------------------------------
def table(summaries: list[dict[str, Any]]) -> str:
    head = (f"{'tool':<8} {'hosts':>5} {'runs':>4}  {'wall median (min-max)':<22} {'round trips/host':>16}  "
            f"{'primary':>7}  {'others min/med/max':<18} {'logins/host':>11}")
    rows = [head, "-" * len(head)]
    for s in summaries:
        others = "/".join(f"{n:g}" for n in s["round_trips_others"]) if s["round_trips_others"] else "-"
        wall = f"{s['wall_median']:.2f} s ({s['wall_min']:.2f}-{s['wall_max']:.2f})"
        rows.append(f"{s['tool']:<8} {s['hosts']:>5} {s['runs']:>4}  {wall:<22} "
                    f"{s['round_trips_per_host_median']:>16g}  {s['round_trips_primary_median']:>7g}  "
                    f"{others:<18} {s['logins_per_host_median']:>11g}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,3,10", help="comma-separated server counts (default 1,3,10)")
    parser.add_argument("-r", "--runs", type=int, default=4, help="measured deploys per tool and case (default 4)")
    parser.add_argument("--kamal", default=shutil.which("kamal"), help="the Kamal executable (default: on PATH)")
    parser.add_argument("--keep", action="store_true", help="leave the benchmark sandbox up")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON to FILE")
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    for key, value in BENCH_SANDBOX.items():
        os.environ.setdefault(key, value)
    kamalpy = shutil.which("kamalpy", path=os.path.dirname(sys.executable)) or shutil.which("kamalpy")
    if not kamalpy:
        sys.exit("kamalpy is not installed")
    if not args.kamal:
        sys.exit("Kamal is not installed (kamal not on PATH; use --kamal)")
    tools = {"kamal": [args.kamal], "kamalpy": [kamalpy]}

    from kamalpy.builtin_plugins.sandbox import lifecycle

    sandbox, brought_up = sandbox_up(max(counts))
    summaries: list[dict[str, Any]] = []
    diffs: list[str] = []
    loads: dict[str, list[float]] = {}
    samples: dict[str, Any] = {}  # the last run's effects on each case's primary host, for the JSON
    try:
        repos = push_app_images(sandbox)
        with tempfile.TemporaryDirectory(prefix="kamalpy-bench-deploy-") as tmp:
            for count in counts:
                load_before = os.getloadavg()[0]
                cases, case_diffs = run_case(sandbox, tools, repos, count, args.runs, Path(tmp), samples)
                loads[str(count)] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
                summaries += [case.summary() for case in cases.values()]
                diffs += case_diffs
        clean(sandbox, sandbox.hosts)
    finally:
        if brought_up and not args.keep:
            lifecycle.down(sandbox.spec)

    print()
    print(table(summaries))
    print("load average (1 min) before/after each case: "
          + ", ".join(f"{n} hosts {a}/{b}" for n, (a, b) in loads.items()))
    verdicts = []
    for count in counts:
        theirs, ours = (next(s for s in summaries if s["hosts"] == count and s["tool"] == t) for t in tools)
        limit = theirs["round_trips_per_host_median"] * ROUND_TRIP_RATIO
        met = ours["round_trips_per_host_median"] <= limit
        verdicts.append({"hosts": count, "kamal": theirs["round_trips_per_host_median"],
                         "kamalpy": ours["round_trips_per_host_median"], "limit": limit, "met": met})
        print(f"{count:>2} hosts: kamalpy {ours['round_trips_per_host_median']:g} round trips per host, "
              f"Kamal {theirs['round_trips_per_host_median']:g} (limit {limit:g}): {'met' if met else 'MISSED'}")
    print(f"Effects: {'the same for both tools' if not diffs else f'{len(diffs)} differences'}")
    for line in diffs:
        print("  " + line)
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": summaries, "round_trips": verdicts, "differences": diffs,
                                               "load": loads, "runs": args.runs,
                                               "effects_primary_last_run": samples}, indent=2) + "\n")
    missed = [v for v in verdicts if not v["met"]]
    return 1 if missed or diffs else 0


if __name__ == "__main__":
    sys.exit(main())
