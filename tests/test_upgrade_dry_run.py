"""``upgrade`` (Kamal 1 to 2) and the hidden ``proxy upgrade``/``proxy remove_*``: Kamal's steps in a dry run.

Kamal's ``upgrade`` holds the lock and invokes ``proxy upgrade`` (Traefik and the old proxy removed, then
``proxy boot``, ``app boot`` and ``prune all`` on those hosts) and ``accessory upgrade all``; ``--rolling``
goes host by host. The strings of the single commands are checked elsewhere (test_dry_run.py,
test_accessory_dry_run.py); here: the steps, their hosts and order, and one lock for all.
"""

from __future__ import annotations

import io
import sys

import pytest
from helpers import assert_no_connection, dry_run_environment, write_project

H1, H2 = "127.0.0.2", "127.0.0.3"
DEPLOY_YML = f"""\
service: app
image: dhh/app
servers: [{H1}, {H2}]
ssh:
  port: {{port}}
registry: {{{{username: dhh, password: secret}}}}
builder: {{{{arch: amd64}}}}
accessories:
  redis:
    image: redis:7
    host: {H2}
"""
TRAEFIK = ("docker container stop traefik ; docker container prune --force --filter "
           "label=org.opencontainers.image.title=Traefik && docker image prune --all --force --filter "
           "label=org.opencontainers.image.title=Traefik")
LOCK = "/usr/bin/env mkdir .kamal/lock-app"
UNLOCK = "/usr/bin/env rm .kamal/lock-app/details && rm -r .kamal/lock-app"
STOP_PROXY = "docker container stop kamal-proxy"
PROXY_RUN = "docker container start kamal-proxy || echo"
APP_RUN = "docker run --detach --restart unless-stopped --name app-web-latest"
PRUNE = "docker image prune --force --filter label=service=app"
REDIS_RUN = "docker run --name app-redis"


@pytest.fixture
def project(tmp_path, monkeypatch, listeners):
    write_project(tmp_path, DEPLOY_YML.format(port=listeners[0]))
    dry_run_environment(monkeypatch, tmp_path, version="5", name="Dee", email="dee@example.com")
    return tmp_path


@pytest.fixture
def dry(kamalpy, project, listeners):
    """``[(host, command)]`` of stdout; the step headings (stderr in a dry run) in ``run.said``."""
    def run(*args: str) -> list[tuple[str, str]]:
        result = kamalpy("--dry-run", *args)
        assert result.code == 0, result.err
        assert_no_connection(listeners[1])
        run.said = result.err.splitlines()
        return [(line.split("\t")[0], line.split("\t")[-1]) for line in result.out.splitlines()]

    run.said = []
    return run


def where(lines: list[tuple[str, str]], start: str, host: str | None = None) -> list[int]:
    return [i for i, (h, text) in enumerate(lines) if text.startswith(start) and host in (None, h)]


def test_upgrade_all_hosts(dry):
    lines = dry("upgrade", "-y")
    assert len(where(lines, LOCK)) == 1
    assert len(where(lines, UNLOCK)) == 1 and where(lines, UNLOCK)[0] == len(lines) - 1
    order = [TRAEFIK, STOP_PROXY, PROXY_RUN, APP_RUN, PRUNE, REDIS_RUN]
    positions = [where(lines, text)[0] for text in order]
    assert positions == sorted(positions)
    for step in (TRAEFIK, STOP_PROXY, PROXY_RUN, APP_RUN, PRUNE):
        assert sorted(h for h, _ in (lines[i] for i in where(lines, step))) == [H1, H2], step
    assert [h for h, _ in (lines[i] for i in where(lines, REDIS_RUN))] == [H2]
    said = [line for line in dry.said if "pgrad" in line]
    assert said == ["Upgrading all hosts...", f"Upgrading proxy on {H1},{H2}...", f"Upgraded proxy on {H1},{H2}",
                    f"Upgrading all accessories on {H2}...", f"Upgraded all accessories on {H2}...",
                    "Upgraded all hosts"]


def test_upgrade_rolling_goes_host_by_host(dry):
    lines = dry("upgrade", "-y", "--rolling")
    assert len(where(lines, LOCK)) == 1 and len(where(lines, UNLOCK)) == 1
    for step in (TRAEFIK, STOP_PROXY, PROXY_RUN, APP_RUN, PRUNE):
        assert [lines[i][0] for i in where(lines, step)] == [H1, H2], step
    last_of_h1 = max(i for i, (host, _) in enumerate(lines) if host == H1 and i < where(lines, UNLOCK)[0])
    first_of_h2 = min(i for i, (host, _) in enumerate(lines) if host == H2 and i > where(lines, LOCK)[0])
    assert last_of_h1 < first_of_h2  # H1 is done before H2 starts
    assert [lines[i][0] for i in where(lines, REDIS_RUN)] == [H2]  # accessories only on their host
    said = [line for line in dry.said if "pgrad" in line]
    assert said == [f"Upgrading {H1}...", f"Upgrading proxy on {H1}...", f"Upgraded proxy on {H1}",
                    f"Upgraded {H1}", f"Upgrading {H2}...", f"Upgrading proxy on {H2}...",
                    f"Upgraded proxy on {H2}", f"Upgrading all accessories on {H2}...",
                    f"Upgraded all accessories on {H2}...", f"Upgraded {H2}"]


def test_proxy_upgrade_locks_each_invoked_step_as_kamal(dry):
    lines = dry("proxy", "upgrade", "-y")
    # Kamal's proxy upgrade holds no lock itself: boot, app boot and prune all each take and release it.
    assert where(lines, TRAEFIK)[0] < where(lines, LOCK)[0]
    assert len(where(lines, LOCK)) == 3 and len(where(lines, UNLOCK)) == 3
    assert dry.said[0] == f"Upgrading proxy on {H1},{H2}..."


def test_unconfirmed_upgrade_does_nothing(kamalpy, project, listeners, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    for args in (["upgrade"], ["proxy", "upgrade"]):
        result = kamalpy("--dry-run", *args)
        assert (result.code, result.out) == (0, "")
        assert result.err.startswith(("This will replace Traefik with kamal-proxy and restart all accessories [y, N]",
                                      "This will cause a brief outage on each host. Are you sure? [y, N]"))


@pytest.mark.parametrize("name, command", [
    ("remove_container", "docker container prune --force --filter label=org.opencontainers.image.title=kamal-proxy"),
    ("remove_image", "docker image prune --all --force --filter label=org.opencontainers.image.title=kamal-proxy"),
    ("remove_proxy_directory", "rm -r .kamal/proxy"),
])
def test_hidden_proxy_removals(dry, name, command):
    lines = dry("proxy", name)
    assert sorted(h for h, text in lines if text.endswith(command)) == [H1, H2]
