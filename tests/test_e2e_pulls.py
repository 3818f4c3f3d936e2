"""End to end on the sandbox: pulls bounded by ``x-kamalpy.pull_limit``, and a server refusing connections.

The image has a layer of random bytes of its own, and the bridge sends to each server at a bounded rate
(a ``tbf`` queue on its veth), so that each server's pull takes a second at the registry. The registry's
log says when each server asked for the image (every request's completion time and its duration), so the
pulls of the servers can be seen one after another. A server whose sshd port answers with a reset (an
iptables rule in its network namespace) stops the deploy before anything changes.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from e2e_fixtures import E2EProject

pytestmark = pytest.mark.sandbox

COMPLETED = re.compile(r'^time="([^"]+)" level=info msg="response completed" .*'
                       r'http\.request\.remoteaddr="([\d.]+):\d+" http\.request\.uri="([^"]+)".*'
                       r'http\.response\.duration=([\d.]+)(ns|µs|us|ms|s) ')
UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


class Project(E2EProject):
    PREFIX = "pl"


def registry_requests(log: Path, since: float, repository: str) -> dict[str, tuple[float, float]]:
    """Per server address, (first request's start, last request's end) for ``repository`` since ``since``."""
    found: dict[str, tuple[float, float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = COMPLETED.match(line)
        if not match or not match.group(3).startswith(f"/v2/{repository}/"):
            continue
        stamp, address = match.group(1), match.group(2)
        end = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()  # to microseconds
        start = end - float(match.group(4)) * UNITS[match.group(5)]
        if end < since:
            continue
        first, last = found.get(address, (start, end))
        found[address] = (min(first, start), max(last, end))
    return found


LAYER_BYTES = 256 * 1024  # random, so no server has it and gzip can't shrink it
RATE = "2mbit"  # to each server: about a second per pull


def unique_image(sandbox, service: str, root: Path) -> str:
    """``<registry>/<service>:v1``: one layer of random bytes, labelled for ``service``; made on server 1 (which
    trusts the registry), pushed, and removed there again."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = LAYER_BYTES
        tar.addfile(info, io.BytesIO(os.urandom(LAYER_BYTES)))
    (root / "layer.tar").write_bytes(layer.getvalue())
    tag = f"{sandbox.registry}/{service}:v1"
    sandbox.docker(1, "import", "--change", f"LABEL service={service}", str(root / "layer.tar"), tag)
    sandbox.docker(1, "push", tag)
    sandbox.docker(1, "image", "rm", tag)
    return service


@contextmanager
def slow_links(sandbox, hosts: list[str]) -> Iterator[None]:
    """The bridge sends to ``hosts`` at RATE for the block."""
    veths = [sandbox.server(host)["veth"] for host in hosts]
    try:
        for veth in veths:
            subprocess.run(["tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", RATE, "burst", "32kb",
                            "latency", "2s"], check=True)
        yield
    finally:
        for veth in veths:
            subprocess.run(["tc", "qdisc", "del", "dev", veth, "root"], check=False, capture_output=True)


def test_pull_limit_1_pulls_on_one_server_at_a_time(project):
    sandbox = project.sandbox
    repository = unique_image(sandbox, project.service, project.root)
    project.config = project.sandbox_config(servers=project.hosts, **{"x-kamalpy": {"pull_limit": 1}})
    project.write()
    since = time.time()
    with slow_links(sandbox, project.hosts):
        result = project.ok("build", "pull", "--version", "v1")
    assert "Pulling on at most 1 of the 3 hosts at once (x-kamalpy.pull_limit)" in result.out + result.err
    pulls = registry_requests(Path(sandbox.state["registry"]["log"]), since, repository)
    assert sorted(pulls) == sorted(project.hosts), pulls
    spans = sorted(pulls.values())
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start, spans  # the next server's first request comes after the last one's last answer


def test_a_server_refusing_connections_stops_the_deploy_naming_it(project):
    sandbox = project.sandbox
    refusing = project.hosts[2]
    project.config = project.sandbox_config(servers=project.hosts)
    project.write()
    rule = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "REJECT", "--reject-with", "tcp-reset"]
    netns = ["ip", "netns", "exec", sandbox.server(refusing)["netns"], "iptables"]
    subprocess.run([*netns, "-I", *rule], check=True)
    try:
        result = project.run("deploy", "-P", "--version", "v1")
    finally:
        subprocess.run([*netns, "-D", *rule], check=True)
    assert result.code == 1
    assert result.err.count("ERROR:") == 1, result.err
    assert result.err.strip().splitlines()[-1] == (
        f"ERROR: {refusing}: could not connect to port 22 (Connection refused); "
        "hosts switched to v1 before the failure: none")
    assert f"lock-{project.service}" not in project.ssh(project.hosts[0], "ls .kamal")  # never taken
    assert all(not project.containers(host) for host in project.hosts)
