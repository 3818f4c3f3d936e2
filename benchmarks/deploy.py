"""Deploy benchmark: kamalpy (each execution mode) against Kamal on sandbox servers (run by hand, as root).

For each host count and role (``web`` behind the kamal-proxy stand-in, ``workers`` without proxy), each tool
gets its own project (its own service, so they never touch each other's containers): ``setup -P`` of v1
once (measured), then ``--runs`` times: ``deploy -P`` of v2, ``rollback v1``, ``app details`` and
``server exec true``, the tools taking turns going first. Per command it records the wall time, the CPU
(user + sys) and peak RSS of the deploying process (``os.wait4``), the SSH sessions and logins per host
(sshd's log: "Starting session:", "Accepted publickey"), the CPU-seconds the servers spent per host
(``builtin_plugins/sandbox/usage.py``: the server's cgroup, daemons, sessions and containers), and the
connection errors (in the tool's output, and sshd's "drop connection" under MaxStartups).

After every setup, deploy, rollback and exec it compares the effects per host with the service name, ids
and random suffixes replaced: the service's containers (name, state), its images, the kamal-proxy calls
the stand-in recorded (the target container by name), the audit lines added and its files under
``~/.kamal``. They are read through each server's docker socket and its private directories on this
machine, so reading them adds no SSH session. The reference is Kamal when it runs, else kamalpy's
default mode.

Modes: ``default`` is kamalpy as installed; ``engine-api`` runs the same kamalpy with the contrib
distribution ``contrib/kamalpy-engine-api`` pip-installed into a temporary directory on ``PYTHONPATH``
(the Docker steps through one Engine API stream per host).

It brings up its own sandbox sized to the largest host count (prefix ``kpd``,
``/var/tmp/kamalpy-bench-deploy``, ``10.214.0.0/24``; override with KAMALPY_SANDBOX_PREFIX/DIR/SUBNET) and
takes it down afterwards unless ``--keep``; one already up with enough servers is reused and left up.

Run: ``python benchmarks/deploy.py [--hosts 1,3,10] [--runs 3] [--roles web,workers] [--tools kamal,kamalpy]
[--modes default,engine-api] [--keep] [--json FILE]``. Prints a table; exits 1 when a target of issue 15
is missed (see ``verdicts``), a command fails, or the effects differ.
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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH_SANDBOX = {"KAMALPY_SANDBOX_PREFIX": "kpd", "KAMALPY_SANDBOX_DIR": "/var/tmp/kamalpy-bench-deploy",
                 "KAMALPY_SANDBOX_SUBNET": "10.214.0.0/24"}
REPO = Path(__file__).resolve().parent.parent
ENGINE_API = REPO / "contrib" / "kamalpy-engine-api"
MODES = ("default", "engine-api")
ROLES = ("web", "workers")
TOOLS = ("kamal", "kamalpy")
SERVICES = {"kamal": "bkamal", "kamalpy": "bkpy", "kamalpy-engine-api": "bkpe"}  # they share only kamal-proxy
WORKERS_CMD = "/bin/sh /usr/local/bin/app-start"  # the sandbox app, as a role without proxy
CALLS_LOG = "/home/kamal-proxy/.config/kamal-proxy/calls.log"  # what the kamal-proxy stand-in was asked
CALLS_VOLUME = "docker/volumes/kamal-proxy-config/_data/calls.log"  # the same file, under a server's directory
COMMAND_TIMEOUT = 900  # seconds for one command on a loaded 2-core machine (100 hosts)
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
# What the issue asks (kamalpy against Kamal in the same run), checked on these commands:
TARGET_COMMANDS = ("deploy", "rollback")
WALL_RATIO, WALL_HOSTS = 0.5, (1, 3, 10)  # either mode
SESSION_RATIO = 0.4  # default mode
SERVER_CPU_RATIO = 0.5  # either mode
RSS_LIMIT_MB, RSS_HOSTS = 150, 100
CONNECTION_ERROR = re.compile(r"connection (refused|reset|closed|lost|timed out)|could not connect|"
                              r"error reading ssh protocol banner|no existing session|"
                              r"Net::SSH::|ECONNREFUSED|ECONNRESET|EHOSTUNREACH", re.IGNORECASE)
SSHD_DROPS = ("drop connection #", "exceeded MaxStartups")


@dataclass
class Tool:
    """One tool (Kamal, or kamalpy in one mode): how to run it, and under which service name."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def service(self) -> str:
        return SERVICES[self.name]

    @property
    def kamalpy(self) -> bool:
        return self.name != "kamal"


@dataclass
class Measure:
    """One command run once."""

    wall: float
    cpu: float  # user + sys of the deploying process and the children it waited for
    rss_mb: float  # its peak resident set size
    sessions: list[int]  # per host, primary first
    logins: list[int]
    server_cpu: list[float] | None  # per host; None when the sandbox cannot tell
    connection_errors: int
    failed: str | None = None


@dataclass
class Series:
    """One command of one tool on one (host count, role): every run of it."""

    tool: str
    hosts: int
    role: str
    command: str
    runs: list[Measure] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ok = [m for m in self.runs if not m.failed]

        def med(values: list[float]) -> float | None:
            return round(statistics.median(values), 3) if values else None

        walls = [m.wall for m in ok]
        per_host = [n for m in ok for n in m.sessions]
        cpu = [c for m in ok if m.server_cpu is not None for c in m.server_cpu]
        return {
            "tool": self.tool, "hosts": self.hosts, "role": self.role, "command": self.command,
            "runs": len(self.runs), "failed": [m.failed for m in self.runs if m.failed],
            "wall_median": med(walls), "wall_min": round(min(walls), 2) if walls else None,
            "wall_max": round(max(walls), 2) if walls else None,
            "cpu_median": med([m.cpu for m in ok]), "rss_mb_max": max((m.rss_mb for m in ok), default=None),
            "sessions_per_host_median": med(per_host),
            "sessions_primary_median": med([m.sessions[0] for m in ok]),
            "logins_per_host_median": med([n for m in ok for n in m.logins]),
            "server_cpu_per_host_median": med(cpu),
            "connection_errors": sum(m.connection_errors for m in self.runs),
            "wall": [round(m.wall, 2) for m in self.runs],
            "sessions": [m.sessions for m in self.runs], "logins": [m.logins for m in self.runs],
            "server_cpu": [[round(c, 3) for c in m.server_cpu] if m.server_cpu else None for m in self.runs],
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


def push_app_images(sandbox: Any, tools: list[Tool]) -> dict[str, str]:
    """The sandbox app labelled for each tool's service: the repository per tool.

    ``Sandbox.app_image`` pushes from the host's dockerd, which may trust only another sandbox's
    registry: then it tags and pushes on server 1 and removes the images there, so its first pull is real.
    """
    return {tool.name: sandbox.app_image(tool.service) for tool in tools}


def server_root(sandbox: Any, host: str) -> Path:
    """The server's private /root, seen from this machine (``~/.kamal`` lives there)."""
    return Path(sandbox.server(host)["dir"]) / "root"


def clean(sandbox: Any, hosts: list[str], tools: list[Tool]) -> None:
    """Every container (with kamal-proxy) and the services' locks gone: each case starts from scratch."""
    sandbox.reset()
    for host in hosts:
        for tool in tools:
            shutil.rmtree(server_root(sandbox, host) / ".kamal" / f"lock-{tool.service}", ignore_errors=True)


def parallel(fn: Callable[[str], Any], hosts: list[str]) -> list[Any]:
    from kamalpy.builtin_plugins.sandbox import system

    return system.parallel(fn, hosts, workers=32)


def server_cpu_reader(sandbox: Any) -> tuple[Callable[[list[str]], list[float]] | None, str]:
    """A reader of the servers' CPU-seconds, or None and why it cannot read them."""
    try:
        from kamalpy.builtin_plugins.sandbox import usage
    except ImportError:
        return None, "builtin_plugins/sandbox/usage.py is missing (the sandbox100 change)"

    def read(hosts: list[str]) -> list[float]:
        return [usage.server_cpu_seconds(sandbox.spec, sandbox.server(h)["index"]) for h in hosts]

    try:
        read(sandbox.hosts[:1])
    except Exception as exc:  # noqa: BLE001 - an old sandbox (no cgroups per server): say why, measure the rest
        return None, str(exc)
    return read, ""


def sshd_drops(sandbox: Any, host: str) -> int:
    try:
        text = sandbox.sshd_log(host).read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return sum(text.count(needle) for needle in SSHD_DROPS)


# -- the tools -------------------------------------------------------------------------------------------
def engine_api_site(tmp: Path) -> Path:
    """contrib/kamalpy-engine-api installed into ``tmp`` (for PYTHONPATH), or exit naming what is missing."""
    if not (ENGINE_API / "pyproject.toml").is_file():
        sys.exit(f"--modes engine-api needs the contrib distribution {ENGINE_API}, which this checkout lacks")
    copy, target = tmp / "engine-api-src", tmp / "engine-api-site"
    shutil.copytree(ENGINE_API, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(copy)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"Installing {ENGINE_API} failed:\n{proc.stdout}{proc.stderr}")
    return target


def make_tools(args: argparse.Namespace, tmp: Path) -> list[Tool]:
    tools: list[Tool] = []
    if "kamal" in args.tools:
        if not args.kamal:
            sys.exit("Kamal is not installed (kamal not on PATH; use --kamal, or --tools kamalpy)")
        tools.append(Tool("kamal", [os.path.abspath(args.kamal)]))  # the runs have their own cwd
    if "kamalpy" in args.tools:
        kamalpy = shutil.which("kamalpy", path=os.path.dirname(sys.executable)) or shutil.which("kamalpy")
        if not kamalpy:
            sys.exit("kamalpy is not installed")
        if "default" in args.modes:
            tools.append(Tool("kamalpy", [kamalpy]))
        if "engine-api" in args.modes:
            site = engine_api_site(tmp)
            path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
            tools.append(Tool("kamalpy-engine-api", [kamalpy], {"PYTHONPATH": path}))
    return tools


def project(root: Path, sandbox: Any, tool: Tool, role: str, repository: str, hosts: list[str]) -> Path:
    """A git project for ``tool``: the same config for every tool apart from the service and the image."""
    sandbox_config = yaml.safe_load(sandbox.deploy_yml())
    config: dict[str, Any] = {"service": tool.service, "image": repository.split("/", 1)[1]}
    if role == "web":
        config["servers"] = {"web": hosts}
        config["proxy"] = {"run": {"registry": sandbox.registry}}  # the stand-in image the sandbox provides
    else:
        # Kamal's primary role runs kamal-proxy unless told not to.
        config["servers"] = {"workers": {"hosts": hosts, "cmd": WORKERS_CMD, "proxy": False}}
        config["primary_role"] = "workers"
    config.update({
        "ssh": sandbox_config["ssh"],
        # Kamal and kamalpy both take a list of secret names (a plain string is taken as the password too).
        "registry": {**sandbox_config["registry"], "password": ["KAMAL_REGISTRY_PASSWORD"]},
        "builder": {"arch": "amd64"},
    })
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


def run_measured(tool: Tool, args: list[str], cwd: Path) -> tuple[float, float, float, int, str]:
    """(wall, cpu, peak RSS MB, exit status, output) of one command, the process reaped with ``os.wait4``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(tool.env)
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen([*tool.argv, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        timer = threading.Timer(COMMAND_TIMEOUT, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        text = out.read().decode(errors="replace")
    # ru_maxrss is in kilobytes on Linux: the largest of the process and the children it waited for.
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, text


# -- what a command did on the servers -------------------------------------------------------------------
def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def proxy_calls(sandbox: Any, host: str) -> list[str]:
    """The stand-in's calls log, read from its volume on this machine (no process on the server)."""
    path = Path(sandbox.server(host)["dir"]) / CALLS_VOLUME
    if path.parent.exists():
        return _lines(path)
    proc = sandbox.docker(host, "exec", "kamal-proxy", "cat", CALLS_LOG, check=False)
    return proc.stdout.splitlines() if proc.returncode == 0 else []


def marks(sandbox: Any, host: str, tools: list[Tool]) -> dict[str, int]:
    """Where each log stands before a command, so that the command's own lines can be picked out after it."""
    root = server_root(sandbox, host)
    return {"calls": len(proxy_calls(sandbox, host)),
            **{tool.name: len(_lines(root / ".kamal" / f"{tool.service}-audit.log")) for tool in tools}}


def effects(sandbox: Any, host: str, tool: Tool, before: dict[str, int]) -> dict[str, list[str]]:
    """What ``tool``'s command left on ``host``, with names and ids made comparable between the tools."""
    service = tool.service

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
    audit = _lines(root / ".kamal" / f"{service}-audit.log")[before[tool.name]:]
    audit = [re.sub(r"^\[[^]]*\] \[[^]]*\] ", "", line) for line in audit]  # time and user
    files = []
    for top in (root / ".kamal" / "apps" / service, root / ".kamal" / f"lock-{service}"):
        if top.exists():
            for path in sorted([top, *top.rglob("*")]):
                files.append(f"{path.relative_to(root)} {path.stat().st_mode & 0o7777:o}")
    return {
        "containers": sorted(norm(line) for line in containers),
        "images": sorted(norm(tag) for tag in images),
        # The stand-in's own start ("run") is recorded by whichever tool boots the shared kamal-proxy first.
        "proxy_calls": [norm(re.sub(r"--target=([0-9a-f]+):", target, line))
                        for line in proxy_calls(sandbox, host)[before["calls"]:] if line != "run"],
        "audit": [norm(line) for line in audit],
        "files": [norm(line) for line in files],
    }


def differences(reference: str, theirs: dict[str, dict[str, list[str]]], other: str,
                ours: dict[str, dict[str, list[str]]], label: str) -> list[str]:
    out = []
    for host, expected in theirs.items():
        for what in expected:
            if expected[what] != ours[host][what]:
                out.append(f"{label} {host} {what}: {reference} {expected[what]} / {other} {ours[host][what]}")
    return out


# -- one host count and role -----------------------------------------------------------------------------
COMPARED = ("setup", "deploy", "rollback", "exec")  # details changes nothing


def commands(run: int) -> list[tuple[str, list[str]]]:
    """The measured commands of one run (``setup`` before the first), in order."""
    # `server exec -q hostname`, not `-q true`: Thor reads `true` as -q's value, leaving Kamal no command.
    steps = [("deploy", ["deploy", "-q", "-P", "--version", "v2"]), ("rollback", ["rollback", "-q", "v1"]),
             ("details", ["app", "details", "-q"]), ("exec", ["server", "exec", "-q", "hostname"])]
    return ([("setup", ["setup", "-q", "-P", "--version", "v1"])] if run == 0 else []) + steps


class Case:
    """Every tool on the first ``count`` servers with one role."""

    def __init__(self, sandbox: Any, tools: list[Tool], repos: dict[str, str], count: int, role: str,
                 workdir: Path, cpu_reader: Callable[[list[str]], list[float]] | None) -> None:
        self.sandbox, self.tools, self.count, self.role = sandbox, tools, count, role
        self.hosts = sandbox.hosts[:count]
        self.cpu_reader = cpu_reader
        clean(sandbox, sandbox.hosts, tools)
        self.roots = {tool.name: project(workdir / f"{tool.name}-{count}-{role}", sandbox, tool, role,
                                         repos[tool.name], self.hosts) for tool in tools}
        self.series: dict[tuple[str, str], Series] = {}
        self.diffs: list[str] = []
        self.broken: set[str] = set()  # tools whose command failed: their later commands are skipped
        self.last_effects: dict[str, Any] = {}

    def measure(self, tool: Tool, command: str, args: list[str]) -> dict[str, dict[str, list[str]]] | None:
        sandbox, hosts = self.sandbox, self.hosts
        before = dict(zip(hosts, parallel(lambda h: marks(sandbox, h, self.tools), hosts), strict=True))
        sessions = [sandbox.ssh_sessions(h) for h in hosts]
        logins = [sandbox.ssh_logins(h) for h in hosts]
        drops = sum(sshd_drops(sandbox, h) for h in hosts)
        cpu_before = self.cpu_reader(hosts) if self.cpu_reader else None
        wall, cpu, rss, status, output = run_measured(tool, args, self.roots[tool.name])
        cpu_after = self.cpu_reader(hosts) if self.cpu_reader else None
        errors = len(CONNECTION_ERROR.findall(output)) + sum(sshd_drops(sandbox, h) for h in hosts) - drops
        failed = None
        if status != 0:
            failed = f"{' '.join(args)} exit {status}: {output.strip().splitlines()[-1:] or ['']}"
            self.broken.add(tool.name)
            print(f"FAILED {tool.name} on {self.count} hosts ({self.role}): {' '.join(args)} (exit {status})\n"
                  f"{output[-3000:]}", flush=True)
        measure = Measure(
            wall, cpu, rss, [sandbox.ssh_sessions(h) - n for h, n in zip(hosts, sessions, strict=True)],
            [sandbox.ssh_logins(h) - n for h, n in zip(hosts, logins, strict=True)],
            [a - b for a, b in zip(cpu_after, cpu_before, strict=True)] if cpu_before and cpu_after else None,
            errors, failed)
        key = (tool.name, command)
        self.series.setdefault(key, Series(tool.name, self.count, self.role, command)).runs.append(measure)
        server = f"  server cpu/host {statistics.median(measure.server_cpu):.2f} s" if measure.server_cpu else ""
        print(f"  {self.count:>3} hosts {self.role:<7} {command:<8} {tool.name:<18} {wall:7.2f} s  cpu {cpu:5.2f} s  "
              f"rss {rss:5.0f} MB  sessions/host {statistics.median(measure.sessions):g}{server}", flush=True)
        if failed or command not in COMPARED:
            return None
        return dict(zip(hosts, parallel(lambda h: effects(sandbox, h, tool, before[h]), hosts), strict=True))

    def run(self, runs: int) -> None:
        reference = self.tools[0].name
        for run in range(runs):
            order = self.tools[run % len(self.tools):] + self.tools[:run % len(self.tools)]  # take turns first
            for command, args in commands(run):
                seen = {}
                for tool in order:
                    if tool.name in self.broken:
                        continue
                    found = self.measure(tool, command, args)
                    if found is not None:
                        seen[tool.name] = found
                if reference in seen:
                    for name, found in seen.items():
                        if name != reference:
                            self.diffs += differences(reference, seen[reference], name, found,
                                                      f"[{self.count} hosts, {self.role}, run {run + 1}, {command}]")
                if seen:
                    self.last_effects[command] = {name: found[self.hosts[0]] for name, found in seen.items()}


# -- report ----------------------------------------------------------------------------------------------
def table(summaries: list[dict[str, Any]]) -> str:
    head = (f"{'hosts':>5} {'role':<7} {'command':<8} {'tool':<18} {'runs':>4}  {'wall median (min-max)':<24} "
            f"{'cpu s':>6} {'rss MB':>6} {'sess/host':>9} {'primary':>7} {'logins/host':>11} "
            f"{'srv cpu/host':>12} {'conn err':>8}")
    rows = [head, "-" * len(head)]

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for s in summaries:
        wall = (f"{s['wall_median']:.2f} s ({s['wall_min']:.2f}-{s['wall_max']:.2f})" if s["wall_median"] is not None
                else "FAILED")
        rows.append(f"{s['hosts']:>5} {s['role']:<7} {s['command']:<8} {s['tool']:<18} {s['runs']:>4}  {wall:<24} "
                    f"{num(s['cpu_median'], '.2f'):>6} {num(s['rss_mb_max'], '.0f'):>6} "
                    f"{num(s['sessions_per_host_median'], 'g'):>9} {num(s['sessions_primary_median'], 'g'):>7} "
                    f"{num(s['logins_per_host_median'], 'g'):>11} {num(s['server_cpu_per_host_median'], '.2f'):>12} "
                    f"{s['connection_errors']:>8}")
    return "\n".join(rows)


def verdicts(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 15's targets, each checked where its inputs were measured."""
    found: list[dict[str, Any]] = []

    def find(tool: str, hosts: int, role: str, command: str) -> dict[str, Any] | None:
        return next((s for s in summaries if (s["tool"], s["hosts"], s["role"], s["command"]) ==
                     (tool, hosts, role, command)), None)

    def check(target: str, where: str, value: Any, limit: Any, met: bool) -> None:
        found.append({"target": target, "where": where, "value": value, "limit": limit, "met": met})

    modes = ("kamalpy", "kamalpy-engine-api")
    for s in summaries:
        where = f"{s['hosts']} hosts {s['role']} {s['command']} {s['tool']}"
        if s["failed"]:
            check("every command succeeds", where, s["failed"], [], False)
        if s["connection_errors"]:
            check("0 connection errors", where, s["connection_errors"], 0, False)
        if s["tool"] in modes and s["hosts"] >= RSS_HOSTS and s["rss_mb_max"] is not None:
            check(f"peak RSS < {RSS_LIMIT_MB} MB at {RSS_HOSTS} hosts", where, s["rss_mb_max"], RSS_LIMIT_MB,
                  s["rss_mb_max"] < RSS_LIMIT_MB)
        kamal = find("kamal", s["hosts"], s["role"], s["command"]) if s["tool"] == "kamal" else None
        if kamal is None or s["command"] not in TARGET_COMMANDS:
            continue
        ours = {mode: find(mode, s["hosts"], s["role"], s["command"]) for mode in modes}
        ours = {mode: found_ for mode, found_ in ours.items() if found_ is not None}
        if not ours:
            continue
        where = f"{s['hosts']} hosts {s['role']} {s['command']}"

        def best(key: str, summaries_: dict[str, dict[str, Any]]) -> float | None:
            values = [x[key] for x in summaries_.values() if x[key] is not None]
            return min(values) if values else None

        if s["hosts"] in WALL_HOSTS and kamal["wall_median"] is not None:
            value = best("wall_median", ours)
            limit = round(kamal["wall_median"] * WALL_RATIO, 2)
            check(f"wall <= {WALL_RATIO}x Kamal's (either mode)", where, value, limit,
                  value is not None and value <= limit)
        if "kamalpy" in ours and kamal["sessions_per_host_median"] is not None:
            value = ours["kamalpy"]["sessions_per_host_median"]
            limit = round(kamal["sessions_per_host_median"] * SESSION_RATIO, 2)
            check(f"SSH sessions/host <= {SESSION_RATIO}x Kamal's (default mode)", where, value, limit,
                  value is not None and value <= limit)
        if kamal["server_cpu_per_host_median"] is not None:
            value = best("server_cpu_per_host_median", ours)
            limit = round(kamal["server_cpu_per_host_median"] * SERVER_CPU_RATIO, 3)
            check(f"server CPU/host <= {SERVER_CPU_RATIO}x Kamal's (either mode)", where, value, limit,
                  value is not None and value <= limit)
    return found


def listed(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        sys.exit(f"{option}: {', '.join(unknown) or 'nothing'} is not one of {', '.join(allowed)}")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,3,10", help="comma-separated server counts, up to 100 (default 1,3,10)")
    parser.add_argument("-r", "--runs", type=int, default=3,
                        help="measured deploy/rollback/details/exec rounds per tool and case (default 3)")
    parser.add_argument("--roles", default="web,workers", help="web (behind kamal-proxy), workers (no proxy)")
    parser.add_argument("--tools", default="kamal,kamalpy", help="kamal, kamalpy (default both)")
    parser.add_argument("--modes", default="default", help="kamalpy's modes: default, engine-api (default: default)")
    parser.add_argument("--kamal", default=shutil.which("kamal", path=os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")])),
        help="the Kamal executable (default: beside this Python, else on PATH)")
    parser.add_argument("--keep", action="store_true", help="leave the benchmark sandbox up")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON to FILE")
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    if not counts or min(counts) < 1:
        sys.exit("--hosts: counts from 1")
    args.roles = listed(args.roles, ROLES, "--roles")
    args.tools = listed(args.tools, TOOLS, "--tools")
    args.modes = listed(args.modes, MODES, "--modes")
    for key, value in BENCH_SANDBOX.items():
        os.environ.setdefault(key, value)

    from kamalpy.builtin_plugins.sandbox import lifecycle

    summaries: list[dict[str, Any]] = []
    diffs: list[str] = []
    loads: dict[str, list[float]] = {}
    samples: dict[str, Any] = {}  # the last run's effects on each case's primary host, for the JSON
    with tempfile.TemporaryDirectory(prefix="kamalpy-bench-deploy-") as tmp:
        tools = make_tools(args, Path(tmp))
        sandbox, brought_up = sandbox_up(max(counts))
        cpu_reader, why = server_cpu_reader(sandbox)
        if cpu_reader is None:
            print(f"Server CPU is not measured: {why}", flush=True)
        try:
            repos = push_app_images(sandbox, tools)
            for count in counts:
                for role in args.roles:
                    load_before = os.getloadavg()[0]
                    case = Case(sandbox, tools, repos, count, role, Path(tmp), cpu_reader)
                    case.run(args.runs)
                    loads[f"{count} {role}"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
                    summaries += [series.summary() for series in case.series.values()]
                    diffs += case.diffs
                    samples[f"{count} {role}"] = case.last_effects
            clean(sandbox, sandbox.hosts, tools)
        finally:
            if brought_up and not args.keep:
                lifecycle.down(sandbox.spec)

    order = {name: i for i, name in enumerate(SERVICES)}
    commands_order = {name: i for i, name in enumerate(("setup", "deploy", "rollback", "details", "exec"))}
    summaries.sort(key=lambda s: (s["hosts"], s["role"], commands_order[s["command"]], order[s["tool"]]))
    print()
    print(table(summaries))
    print("load average (1 min) before/after each case: "
          + ", ".join(f"{case} {a}/{b}" for case, (a, b) in loads.items()))
    if cpu_reader is None:
        print(f"Server CPU not measured: {why}")
    checks = verdicts(summaries)
    for v in checks:
        print(f"{'met   ' if v['met'] else 'MISSED'} {v['target']}: {v['where']}: {v['value']} (limit {v['limit']})")
    reference = tools[0].name
    print(f"Effects: {'the same for every tool' if not diffs else f'{len(diffs)} differences'} "
          f"(reference: {reference})")
    for line in diffs:
        print("  " + line)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "series": summaries, "verdicts": checks, "differences": diffs, "load": loads, "runs": args.runs,
            "server_cpu_measured": cpu_reader is not None, "effects_primary_last_run": samples}, indent=2) + "\n")
    return 1 if diffs or any(not v["met"] for v in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
