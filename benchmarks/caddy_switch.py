"""Caddy upstream switch under load: which switch method loses no request (run by hand, as root, not by pytest).

On ONE sandbox server (``kamalpy sandbox up`` first) it starts Caddy (``--sysctl net.ipv4.tcp_migrate_req=1``,
admin API published on the server's 127.0.0.1 only and reached over an SSH ``direct-tcpip`` channel), a probe
container sharing Caddy's network namespace, and app containers on a user-defined network. Then, per method, it
switches the app between v1 and v2 N times while the host sends GET /version to the server (threads with a new
connection per request and threads with one keep-alive connection), bounded by a request count and by seconds.

Methods (every one has the same retries and passive health checks; only the switch differs):

``load``   PATCH of the handler's upstream list through the admin API: a config load (new listener) per switch.
``alias``  ``dynamic_upstreams`` of source ``a`` resolving the network alias ``<prefix>-web`` through Docker's DNS;
           the new container joins the alias (after a probe), Caddy's refresh picks it up, then the old one stops.
           No config load.
``slots``  two static upstreams ``<prefix>-blue:80`` / ``<prefix>-green:80`` (aliases resolved at every dial) with
           active health checks; the new container takes the free slot, the old one stops. No config load.

Everything it starts is named ``<prefix>-*`` (``--prefix``, default ``cswb<pid>``) and removed at the end, also on
failure. Run: ``python benchmarks/caddy_switch.py [-n 200] [--server 10.213.0.13] [--methods load,alias,slots]``.
Prints per method: switches, requests, failed requests by kind, latency and time per switch; exits 1 when the best
method (the one with fewest failures) has any failure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

STATE = Path(os.environ.get("KAMALPY_SANDBOX_DIR", "/var/tmp/kamalpy-sandbox")) / "state.json"
HTTP_PORT = 18080        # published on the server for the load (not 80: other sandbox users may own it)
ADMIN_PORT = 12019       # published on the server's loopback only
REFRESH = 0.5            # seconds between Caddy's A lookups of the alias (method "alias")
ACTIVE_INTERVAL = 0.25   # seconds between Caddy's active health checks (method "slots")
DRAIN = 0.5              # seconds between taking the old upstream out and stopping it (method "load")
FAIL_DURATION = 3        # seconds an upstream stays out after a failed request (passive health)
APP_DRAIN_SCRIPT = ('mkdir -p /www; echo ok >/www/up; echo "$APP_VERSION" >/www/version; '
                    'httpd -f -p 80 -h /www & pid=$!; trap \'kill "$pid"; sleep DRAIN; exit 0\' TERM; wait "$pid"')
STOP_TIMEOUT = 10        # docker stop -t


class Server:
    """One sandbox server over one SSH connection: docker commands and the Caddy admin API."""

    def __init__(self, state: dict, address: str) -> None:
        self.address = address
        self.client = paramiko.SSHClient()
        self.client.load_host_keys(state["known_hosts"])
        self.client.connect(address, username="root", key_filename=state["key"], look_for_keys=False,
                            allow_agent=False, timeout=10)

    def run(self, command: str, check: bool = True) -> tuple[int, str]:
        _stdin, stdout, stderr = self.client.exec_command(command, timeout=120)
        out = stdout.read().decode() + stderr.read().decode()
        rc = stdout.channel.recv_exit_status()
        if check and rc:
            raise RuntimeError(f"{command!r} exited {rc}: {out.strip()}")
        return rc, out

    def admin(self, method: str, path: str, body: object | None = None) -> str:
        """One admin API request over a direct-tcpip channel to the server's 127.0.0.1:ADMIN_PORT."""
        channel = self.client.get_transport().open_channel("direct-tcpip", ("127.0.0.1", ADMIN_PORT),
                                                           ("127.0.0.1", 0), timeout=10)
        try:
            data = b"" if body is None else json.dumps(body).encode()
            head = (f"{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n").encode()
            channel.sendall(head + data)
            chunks = []
            while chunk := channel.recv(65536):
                chunks.append(chunk)
        finally:
            channel.close()
        reply = b"".join(chunks).decode(errors="replace")
        status = reply.split(" ", 2)[1] if reply.startswith("HTTP/") else "?"
        if status != "200":
            raise RuntimeError(f"admin {method} {path}: {reply.strip()[:300]}")
        return reply.partition("\r\n\r\n")[2]

    def close(self) -> None:
        self.client.close()


def reverse_proxy(method: str, prefix: str, first: str) -> dict:
    """The reverse_proxy handler of a method; ``first`` is the first app container's name."""
    handler: dict = {
        "@id": f"{prefix}-rp",
        "handler": "reverse_proxy",
        # Retry a failed dial (and a GET whose upstream died mid-request) on another upstream.
        "load_balancing": {"selection_policy": {"policy": "round_robin"}, "try_duration": "5s",
                           "try_interval": "50ms"},
        "health_checks": {"passive": {"fail_duration": f"{FAIL_DURATION}s", "max_fails": 1}},
        # A stopped container's address stops answering ARP: give up on it quickly and retry elsewhere.
        "transport": {"protocol": "http", "dial_timeout": "500ms"},
    }
    if method == "load":
        handler["upstreams"] = [{"dial": f"{first}:80"}]
    elif method == "alias":
        handler["dynamic_upstreams"] = {"source": "a", "name": f"{prefix}-web", "port": "80",
                                        "refresh": f"{int(REFRESH * 1000)}ms",
                                        "resolver": {"addresses": ["127.0.0.11:53"]}}
    else:
        handler["upstreams"] = [{"dial": f"{prefix}-blue:80"}, {"dial": f"{prefix}-green:80"}]
        handler["health_checks"]["active"] = {"uri": "/up", "interval": f"{int(ACTIVE_INTERVAL * 1000)}ms",
                                              "timeout": "1s"}
    return handler


def caddy_config(handler: dict) -> dict:
    return {"admin": {"listen": "0.0.0.0:2019"},
            "apps": {"http": {"servers": {"web": {"listen": [":80"], "routes": [{"handle": [handler]}]}}}}}


@dataclass
class Tally:
    """What one load thread saw."""

    kind: str
    requests: int = 0
    failures: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    flips: int = 0
    latencies: list[float] = field(default_factory=list)


def load(address: str, kind: str, tally: Tally, stop: threading.Event, max_requests: int, deadline: float) -> None:
    """GET /version until stopped or bounded; ``kind`` is "new" (a connection per request) or "keepalive"."""
    conn: http.client.HTTPConnection | None = None
    last = None
    while not stop.is_set() and tally.requests < max_requests and time.monotonic() < deadline:
        if conn is None:
            conn = http.client.HTTPConnection(address, HTTP_PORT, timeout=10)
        started = time.perf_counter()
        try:
            conn.request("GET", "/version", headers={} if kind == "keepalive" else {"Connection": "close"})
            response = conn.getresponse()
            body = response.read().decode().strip()
            if response.status != 200:
                tally.failures[f"HTTP {response.status}"] += 1
            else:
                tally.versions[body] += 1
                if last is not None and body != last:
                    tally.flips += 1
                last = body
            if kind != "keepalive" or response.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as error:
            tally.failures[type(error).__name__] += 1
            conn.close()
            conn = None
        tally.latencies.append(time.perf_counter() - started)
        tally.requests += 1
    if conn is not None:
        conn.close()


class Bench:
    def __init__(self, server: Server, state: dict, prefix: str) -> None:
        self.server, self.prefix = server, prefix
        self.images = {"v1": state["images"]["app"], "v2": state["images"]["app_v2"]}
        self.busybox, self.caddy = state["images"]["busybox"], state["images"]["caddy"]
        self.count = 0
        self.app_drain = 0.0
        self.net = f"{prefix}-net"

    def docker(self, args: str, check: bool = True) -> str:
        return self.server.run(f"docker {args}", check=check)[1]

    def setup(self) -> None:
        for image in (*self.images.values(), self.busybox, self.caddy):
            self.docker(f"pull -q {image}")
        self.docker(f"network create {self.net}")
        self.docker(f"run -d --name {self.prefix}-caddy --network {self.net} --sysctl net.ipv4.tcp_migrate_req=1 "
                    f"-p {HTTP_PORT}:80 -p 127.0.0.1:{ADMIN_PORT}:2019 {self.caddy}")
        # The probe shares Caddy's network namespace: it sees the apps exactly as Caddy does.
        self.docker(f"run -d --name {self.prefix}-probe --network container:{self.prefix}-caddy {self.busybox} "
                    "sleep 2147483647")
        for _ in range(100):
            try:
                self.server.admin("GET", "/config/")
                return
            except (RuntimeError, paramiko.SSHException):
                time.sleep(0.1)
        raise RuntimeError("caddy's admin API did not answer")

    def cleanup(self) -> None:
        names = self.docker(f"ps -aq --filter name=^{self.prefix}-", check=False).split()
        if names:
            self.docker("rm -f " + " ".join(names), check=False)
        self.docker(f"network rm {self.net}", check=False)

    def start_app(self, version: str, alias: str | None = None) -> str:
        self.count += 1
        name = f"{self.prefix}-app{self.count}"
        alias_opt = f" --network-alias {alias}" if alias else ""
        command = ""
        if self.app_drain:
            # An app that, on SIGTERM, closes its listener and lets in-flight requests finish (as most app servers
            # do); the sandbox app's own script ends at once, cutting in-flight requests.
            command = " sh -c " + shlex.quote(APP_DRAIN_SCRIPT.replace("DRAIN", str(self.app_drain)))
        self.docker(f"run -d --rm --name {name} --network {self.net}{alias_opt} -e APP_VERSION={version} "
                    f"{self.images[version]}{command}")
        return name

    def probe(self, host: str, version: str, timeout: float = 20) -> None:
        """Wait until ``host`` answers /up (and /version as expected) from inside Caddy's network namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # busybox 1.35's `wget -T` segfaults here: bound it with `timeout` instead.
            rc, out = self.server.run(f"docker exec {self.prefix}-probe timeout 2 sh -c 'wget -q -O- "
                                      f"http://{host}/up && wget -q -O- http://{host}/version'", check=False)
            if rc == 0 and out.split() == ["ok", version]:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{host} did not become healthy")

    def stop(self, name: str) -> None:
        self.docker(f"stop -t {STOP_TIMEOUT} {name}")  # --rm removes it

    # One method = its first container and one switch step, returning the live container's name.
    def first(self, method: str) -> str:
        self.slot, self.vacated = "blue", {}
        alias = {"alias": f"{self.prefix}-web", "slots": f"{self.prefix}-blue"}.get(method)
        name = self.start_app("v1", alias)
        self.probe(name, "v1")
        self.server.admin("POST", "/load", caddy_config(reverse_proxy(method, self.prefix, name)))
        if method == "slots":
            time.sleep(ACTIVE_INTERVAL * 3)
        return name

    def switch(self, method: str, old: str, version: str) -> str:
        if method == "load":
            new = self.start_app(version)
            self.probe(new, version)
            self.server.admin("PATCH", f"/id/{self.prefix}-rp/upstreams", [{"dial": f"{new}:80"}])
            time.sleep(DRAIN)
        elif method == "alias":
            new = self.start_app(version)
            self.probe(new, version)
            # Join the alias only once healthy (an alias can't be added to a connected endpoint).
            self.docker(f"network disconnect {self.net} {new}")
            self.docker(f"network connect --alias {self.prefix}-web {self.net} {new}")
            self.probe(new, version)
            time.sleep(REFRESH * 2 + 0.2)  # Caddy's cached lookup now holds both
        else:
            self.slot = "green" if self.slot == "blue" else "blue"
            new = self.start_app(version, f"{self.prefix}-{self.slot}")
            self.probe(f"{self.prefix}-{self.slot}", version)
            # Health state belongs to the slot's address, not the container: a passive failure of the slot's
            # previous tenant stays for fail_duration. Don't stop the old one before the new slot is clear of it.
            clear = self.vacated.get(self.slot, 0) + FAIL_DURATION + ACTIVE_INTERVAL * 3
            time.sleep(max(ACTIVE_INTERVAL * 3, clear - time.monotonic()))
        self.stop(old)
        if method == "slots":
            self.vacated["green" if self.slot == "blue" else "blue"] = time.monotonic()
        return new


def run_method(bench: Bench, method: str, args: argparse.Namespace) -> dict:
    live = bench.first(method)
    version = "v1"
    stop = threading.Event()
    deadline = time.monotonic() + args.max_seconds
    tallies = [Tally("new") for _ in range(args.threads)] + [Tally("keepalive") for _ in range(args.keepalive)]
    threads = [threading.Thread(target=load, args=(bench.server.address, t.kind, t, stop, args.max_requests,
                                                   deadline), daemon=True) for t in tallies]
    for thread in threads:
        thread.start()
    switch_times: list[float] = []
    error = None
    try:
        time.sleep(0.5)
        while len(switch_times) < args.n and time.monotonic() < deadline and not stop.is_set():
            if all(not thread.is_alive() for thread in threads):
                break
            version = "v2" if version == "v1" else "v1"
            started = time.perf_counter()
            live = bench.switch(method, live, version)
            switch_times.append(time.perf_counter() - started)
            if args.verbose and len(switch_times) % 20 == 0:
                failed = sum(sum(t.failures.values()) for t in tallies)
                print(f"  {method}: {len(switch_times)} switches, {sum(t.requests for t in tallies)} requests, "
                      f"{failed} failed", flush=True)
        time.sleep(0.5)
    except (OSError, RuntimeError, paramiko.SSHException) as exc:
        error = str(exc)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        if error is None:
            bench.stop(live)
    latencies = sorted(x for t in tallies for x in t.latencies)
    failures: Counter = Counter()
    for t in tallies:
        failures.update({f"{t.kind}: {k}": v for k, v in t.failures.items()})
    return {
        "method": method, "switches": len(switch_times), "requests": sum(t.requests for t in tallies),
        "failed": sum(failures.values()), "failures": dict(failures), "error": error,
        "by_kind": {k: sum(t.requests for t in tallies if t.kind == k) for k in ("new", "keepalive")},
        "flips": sum(t.flips for t in tallies if t.kind == "new") // max(args.threads, 1),
        "versions": dict(sum((t.versions for t in tallies), Counter())),
        "switch_s": {"median": statistics.median(switch_times) if switch_times else None,
                     "max": max(switch_times, default=None)},
        "latency_ms": {"p50": latencies[len(latencies) // 2] * 1000 if latencies else None,
                       "p99": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
                       "max": latencies[-1] * 1000 if latencies else None},
    }


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(result: dict) -> None:
    s, lat = result["switch_s"], result["latency_ms"]
    print(f"{result['method']:6} switches {result['switches']:4}  requests {result['requests']:6} "
          f"(new-conn {result['by_kind']['new']}, keep-alive {result['by_kind']['keepalive']})  "
          f"failed {result['failed']}  switch s median {fmt(s['median'])} max {fmt(s['max'])}  "
          f"latency ms p50 {fmt(lat['p50'])} p99 {fmt(lat['p99'])} max {fmt(lat['max'])}  "
          f"version flips/new-conn thread {result['flips']}")
    if result["failures"]:
        print(f"       failures: {result['failures']}")
    if result["error"]:
        print(f"       aborted: {result['error']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="switches per method (default 200)")
    parser.add_argument("--methods", default="load,alias,slots")
    parser.add_argument("--server", help="sandbox server address (default: the last one)")
    parser.add_argument("--prefix", default=f"cswb{os.getpid()}", help="name prefix of everything started")
    parser.add_argument("--threads", type=int, default=2, help="load threads, a new connection per request")
    parser.add_argument("--keepalive", type=int, default=1, help="load threads on one keep-alive connection")
    parser.add_argument("--max-requests", type=int, default=500_000, help="per load thread and method")
    parser.add_argument("--max-seconds", type=float, default=1200, help="per method")
    parser.add_argument("--app-drain", type=float, default=0.0,
                        help="run the app so that SIGTERM closes its listener and exits this many seconds later")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    state = json.loads(STATE.read_text())
    address = args.server or state["servers"][-1]["address"]
    server = Server(state, address)
    bench = Bench(server, state, args.prefix)
    bench.app_drain = args.app_drain
    results = []
    print(f"caddy switch benchmark on {address} ({state['images']['caddy']}), prefix {args.prefix}, N={args.n}, "
          f"app drain {args.app_drain} s")
    try:
        bench.setup()
        for method in args.methods.split(","):
            result = run_method(bench, method, args)
            report(result)
            results.append(result)
            # Leave no app container of this method behind for the next one.
            names = bench.docker(f"ps -aq --filter name=^{args.prefix}-app", check=False).split()
            if names:
                bench.docker("rm -f " + " ".join(names), check=False)
    finally:
        bench.cleanup()
        server.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    best = min(results, key=lambda r: (r["error"] is not None, r["failed"], -r["switches"]))
    print(f"best: {best['method']} ({best['failed']} failed in {best['requests']} requests, "
          f"{best['switches']} switches)")
    return 1 if best["failed"] or best["error"] or best["switches"] < args.n else 0


if __name__ == "__main__":
    sys.exit(main())
