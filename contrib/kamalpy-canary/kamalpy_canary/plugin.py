"""Canary boot: the new version on a few hosts first, watched through the proxy, then on the rest.

A hook wrapper around ``kamalpy_boot_app``: it boots ``canary.hosts`` hosts (those of the primary role
first) with :meth:`BootContext.boot_role`, then sends sample requests through the proxy on each canary
host for ``canary.watch`` seconds (``canary.path`` and ``canary.health_path``, with the route's Host
header, from the server itself). A watch that passes hands the other hosts to the next implementation of
the hook (the built-in ``boot_rolling``: boot groups, barrier, parallel roles) by narrowing
``boot.hosts`` before it yields. A watch that fails boots the previous version back on the canary hosts
only and raises: the other hosts were never touched, and the flow releases the lock.
"""

from __future__ import annotations

import shlex
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from kamalpy.plugin import BootContext, ConfigKey, KamalpyError, hookimpl

KEY = "canary"
DEFAULTS: dict[str, Any] = {"hosts": 1, "watch": 30, "path": "/", "health_path": "/up", "max_error_rate": 0.01,
                            "min_requests": 20}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "hosts": {"type": "integer", "minimum": 1},
        "watch": {"type": "number", "minimum": 0},
        "path": {"type": "string", "pattern": "^/"},
        "health_path": {"type": "string", "pattern": "^/"},
        "max_error_rate": {"type": "number", "minimum": 0, "maximum": 1},
        "min_requests": {"type": "integer", "minimum": 1},
    },
}
DESCRIPTION = """\
Boot the new version on `hosts` app hosts first (default 1, primary-role hosts first), send sample requests
through the proxy on them for `watch` seconds (default 30): `path` (default "/") and `health_path` (default
"/up"), with the route's Host header, at least `min_requests` (default 20) of each. If more than
`max_error_rate` (default 0.01) of them fail (no 2xx/3xx answer), the canary hosts boot the previous version
again, the other hosts are left as they were and the deploy fails; otherwise the other hosts boot as usual."""
PAUSE = 0.1  # seconds between two samples: ~10 requests a second, light next to real traffic
CURL_TIMEOUT = 5


class CanaryFailed(KamalpyError):
    """The canary failed its watch (it runs the previous version again)."""


@dataclass
class Sample:
    """What the watch saw on one canary host."""

    ok: int = 0
    failed: int = 0
    health_ok: int = 0
    health_failed: int = 0

    @property
    def requests(self) -> int:
        return self.ok + self.failed + self.health_ok + self.health_failed

    @property
    def error_rate(self) -> float:
        return (self.failed + self.health_failed) / self.requests if self.requests else 1.0

    @classmethod
    def parse(cls, output: str) -> Sample:
        numbers = (output.strip().splitlines() or [""])[-1].split()
        if len(numbers) != 4 or not all(n.isdigit() for n in numbers):
            raise KamalpyError(f"canary: unexpected watch output {output.strip()[-200:]!r}")
        return cls(*(int(n) for n in numbers))

    def __add__(self, other: Sample) -> Sample:
        return Sample(self.ok + other.ok, self.failed + other.failed, self.health_ok + other.health_ok,
                      self.health_failed + other.health_failed)

    def describe(self) -> str:
        return (f"{self.failed + self.health_failed} of {self.requests} sampled requests failed "
                f"({self.error_rate:.1%}; health path: {self.health_failed} of {self.health_ok + self.health_failed})")


def settings(config: Any) -> dict[str, Any]:
    return {**DEFAULTS, **(config.extension(KEY) or {})}


@hookimpl
def kamalpy_config_keys() -> list[ConfigKey]:
    return [ConfigKey(KEY, SCHEMA, default=None, description=DESCRIPTION)]


@hookimpl(wrapper=True)
def kamalpy_boot_app(boot: BootContext) -> Generator[None, Any, Any]:
    commander = boot.commander
    chosen = settings(commander.config) if commander.config.extension(KEY) is not None else None
    canaries = canary_hosts(boot, chosen["hosts"]) if chosen else []
    if not canaries:  # no `canary:` key, or nothing left after it: the usual boot
        return (yield)
    rest = [host for host in boot.hosts if host not in canaries]
    output = commander.output
    previous = _boot_canaries(boot, canaries)
    output.say(f"Watching the canary {', '.join(canaries)} for {chosen['watch']}s "
               f"(sample requests to {chosen['path']} and {chosen['health_path']} through the proxy)...")
    if not commander.dry_run:
        try:
            samples = commander.on(canaries, lambda session: _watch(session, boot, chosen))
        except KamalpyError as error:  # the watch itself failed: do not leave an unwatched canary behind
            _roll_back(boot, canaries, previous)
            raise KamalpyError(f"canary: the watch failed, the canaries run the previous version again: {error}") \
                from error
        for host, sample in samples.items():
            output.say(f"Canary {host}: {sample.describe() if sample else 'no role behind the proxy, nothing sampled'}")
        bad = {host: s for host, s in samples.items() if s and s.error_rate > chosen["max_error_rate"]}
        if bad:
            _roll_back(boot, canaries, previous)
            raise CanaryFailed(_failure(boot, bad, previous, rest, chosen))
    output.say(f"Canary passed, booting {boot.version} on the other hosts ({len(rest)})")
    boot.hosts = rest
    return (yield)  # the next boot plugin (built in: Kamal's rolling boot) boots the rest


def canary_hosts(boot: BootContext, count: int) -> list[str]:
    """The first ``count`` hosts of the selection, primary-role hosts first; none when every host would be one."""
    primary = boot.commander.config.primary_role_name
    ordered = sorted(boot.hosts, key=lambda host: not any(r.name == primary for r in boot.roles_on(host)))
    return ordered[:count] if count < len(boot.hosts) else []


def _roles(boot: BootContext, host: str) -> list[Any]:
    primary = boot.commander.config.primary_role_name
    return sorted(boot.roles_on(host), key=lambda role: role.name != primary)  # primary first, as Kamal's barrier


def _boot_canaries(boot: BootContext, canaries: list[str]) -> dict[str, dict[str, str]]:
    """Boot the canaries (the pre/post-app-boot hooks around them, as around a boot group); the version each
    role ran before, by host and role name, for a rollback."""
    def per_host(session: Any) -> dict[str, str]:
        previous = {}
        for role in _roles(boot, session.host):
            previous[role.name] = boot.running_version(session, role) or ""
            boot.boot_role(session, role)
        return previous

    def curl(session: Any) -> None:
        if any(proxy_target(r) for r in _roles(boot, session.host)) and not session.execute(
                "command -v curl", raise_on_non_zero=False, quiet=True).ok:
            raise KamalpyError(f"{session.host}: canary: curl is not installed: the watch cannot sample requests")

    if not boot.commander.dry_run:  # the watch samples with curl: refuse before anything changes
        boot.commander.on(canaries, curl)
    boot.run_hook("pre-app-boot", canaries)
    previous = boot.commander.on(canaries, per_host)
    boot.run_hook("post-app-boot", canaries)
    return previous


def proxy_target(role: Any) -> tuple[str, str] | None:
    """``(http://127.0.0.1:PORT, Host header)`` to reach the role through the proxy on its host."""
    proxy = role.proxy
    if proxy is None:
        return None
    run = proxy.run or {}
    if run.get("publish") is False:
        return None
    port = run.get("http_port") or 80
    host = (proxy.hosts or ["localhost"])[0]
    return f"http://127.0.0.1:{port}", host


def watch_script(base: str, host: str, path: str, health_path: str, seconds: float, min_requests: int) -> str:
    """A POSIX sh loop run on the canary host: ``ok failed health_ok health_failed`` once the watch ends.

    Samples until ``seconds`` have passed and ``min_requests`` of each were made (at most a minute longer)."""
    def request(url_path: str) -> str:
        return (f"curl -s -o /dev/null -w '%{{http_code}}' --max-time {CURL_TIMEOUT} "
                f"-H {shlex.quote('Host: ' + host)} {shlex.quote(base + url_path)}")

    return (
        f"start=$(date +%s); end=$((start + {int(seconds + 0.999)})); hard=$((end + 60)); "
        "ok=0; bad=0; hok=0; hbad=0; "
        "while now=$(date +%s); [ $now -lt $hard ] && "
        f"{{ [ $now -lt $end ] || [ $((ok + bad)) -lt {min_requests} ]; }}; do "
        f"case $({request(path)}) in 2??|3??) ok=$((ok + 1));; *) bad=$((bad + 1));; esac; "
        f"case $({request(health_path)}) in 2??|3??) hok=$((hok + 1));; *) hbad=$((hbad + 1));; esac; "
        f"sleep {PAUSE}; done; "
        'echo "$ok $bad $hok $hbad"'
    )


def _watch(session: Any, boot: BootContext, chosen: dict[str, Any]) -> Sample | None:
    """What the samples through the proxy saw on the session's host; None when no role there is behind it."""
    total = None
    for role in _roles(boot, session.host):
        target = proxy_target(role)
        if target is None:
            continue  # a role without proxy takes no requests: its boot already waited until Docker saw it ready
        script = watch_script(*target, chosen["path"], chosen["health_path"], chosen["watch"], chosen["min_requests"])
        result = session.execute(f"sh -c {shlex.quote(script)}", raise_on_non_zero=False,
                                 timeout=chosen["watch"] + 120)
        found = Sample.parse(result.stdout)
        total = found if total is None else total + found
    return total


def _roll_back(boot: BootContext, canaries: list[str], previous: dict[str, dict[str, str]]) -> None:
    """Boot the version each role ran before on the canaries: its stopped container is renamed out of the way
    and the previous version started again, as ``kamalpy rollback`` does."""
    config = boot.commander.config
    new_version = config.version
    boot.commander.output.say(f"Canary failed, booting the previous version on {', '.join(canaries)} again")
    olds = sorted({v for host in canaries for v in previous.get(host, {}).values() if v and v != new_version})
    try:
        # boot_role boots the run's version (config.version), as Kamal's rollback sets it first: one version
        # at a time, so that hosts booted side by side never see another's.
        for old in olds:
            config.version = old

            def per_host(session: Any, old: str = old) -> None:
                for role in _roles(boot, session.host):
                    if previous.get(session.host, {}).get(role.name) == old:
                        boot.boot_role(session, role)

            boot.commander.on(canaries, per_host)
    finally:
        config.version = new_version


def _failure(boot: BootContext, bad: dict[str, Sample], previous: dict[str, dict[str, str]], rest: list[str],
             chosen: dict[str, Any]) -> str:
    host, sample = next(iter(bad.items()))
    before = sorted({v for versions in previous.values() for v in versions.values() if v})
    back = f"it runs {', '.join(before)} again" if before else "it had no previous version to go back to"
    others = f"the other hosts ({', '.join(rest)}) were not changed" if rest else "no other host was changed"
    return (f"Canary {host} failed its watch: {sample.describe()}, above canary/max_error_rate "
            f"{chosen['max_error_rate']:.1%}, with version {boot.version}; {back} and {others}. "
            "Fix the release and deploy again (or `kamalpy app boot --version VERSION` to pick one).")
