"""Pulls on many hosts (kamalpy.pulls, ``x-kamalpy.pull_limit``) and a deploy that stops on one host among many.

The hosts are directories on this machine (the ``loopback`` test transport); a fake ``docker`` first on PATH
answers the deploy's commands, logs when each pull starts and ends, and fails where the test says.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from plugins import loopback_transport

from kamalpy.config.kamalpy import DEFAULT_PULL_LIMIT
from kamalpy.pulls import PullSlots

KAMALPY = [sys.executable, "-m", "kamalpy"]
PULL_SECONDS = 0.3

# Enough of Docker for `deploy -P`, `build pull` and `accessory boot`: state (containers run) in the host's
# directory. An accessory's `docker run` (which pulls a missing image) is logged and timed as a pull.
FAKE_DOCKER = r"""#!/bin/sh
host=$(basename "$PWD")
fails() { case ",$1," in *",$host,"*) return 0;; esac; return 1; }
case "$1" in
  login) cat > /dev/null; echo "Login Succeeded";;
  info) ;;
  pull)
    echo "$host start $(date +%s.%N)" >> "$FAKE_DOCKER_LOG"
    sleep "$FAKE_PULL_SECONDS"
    echo "$host end $(date +%s.%N)" >> "$FAKE_DOCKER_LOG"
    if fails "$FAKE_PULL_FAIL"; then echo "Error response from daemon: context deadline exceeded" >&2; exit 1; fi;;
  inspect)
    case "$2" in kamal-proxy) echo "basecamp/kamal-proxy:v0.9.2";; *) echo "app";; esac;;
  run)
    case "$*" in *"--name app-redis"*)
      echo "$host start $(date +%s.%N)" >> "$FAKE_DOCKER_LOG"; sleep "$FAKE_PULL_SECONDS"
      echo "$host end $(date +%s.%N)" >> "$FAKE_DOCKER_LOG";;
    esac
    for last; do :; done
    shift; while [ "$1" != "--name" ]; do shift; done
    mkdir -p containers && echo "$last" > "containers/$2" && echo "cid-$2";;
  container)
    case "$2" in
      ls) name=$(echo "$*" | sed -n 's/.*name=^\([^$]*\)\$.*/\1/p'); [ -f "containers/$name" ] && echo "cid-$name";;
    esac;;
  exec)
    if [ "$4" = deploy ] && fails "$FAKE_DEPLOY_FAIL"; then
      echo "Error: target failed to become healthy within configured timeout (30s)" >&2; exit 1
    fi;;
esac
exit 0
"""


def hosts(count: int) -> list[str]:
    return [f"10.0.0.{n}" for n in range(1, count + 1)]


class Project:
    def __init__(self, root: Path, count: int, extra: str = "") -> None:
        self.root, self.hosts = root, hosts(count)
        (root / "config").mkdir(parents=True)
        servers = "".join(f"  - {host}\n" for host in self.hosts)
        (root / "config" / "deploy.yml").write_text(
            f"service: app\nimage: acme/app\nservers:\n{servers}"
            "registry:\n  server: registry.example.com\n  username: u\n  password: p\n"
            f"builder:\n  arch: amd64\nproxy:\n  host: app.example.com\n{extra}")
        bin_dir = root / "bin"
        bin_dir.mkdir()
        (bin_dir / "docker").write_text(FAKE_DOCKER)
        (bin_dir / "docker").chmod(0o755)
        self.pull_log, self.trips = root / "pulls.log", root / "trips.log"

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        base = {key: value for key, value in os.environ.items() if not key.startswith(("KAMALPY_", "KAMAL_"))}
        base.update({
            "KAMALPY_PLUGINS": "loopback_transport", "KAMALPY_TRANSPORT": "loopback",
            "PYTHONPATH": str(Path(loopback_transport.__file__).parent),
            "PATH": f"{self.root / 'bin'}:{os.environ['PATH']}",
            loopback_transport.ROOT_ENV: str(self.root / "hosts"), loopback_transport.DELAY_ENV: "0.01",
            loopback_transport.LOG_ENV: str(self.trips), "FAKE_DOCKER_LOG": str(self.pull_log),
            "FAKE_PULL_SECONDS": str(PULL_SECONDS), "VERSION": "v2", **env})
        result = subprocess.run([*KAMALPY, *args], cwd=self.root, env=base, capture_output=True, text=True,
                                timeout=120)
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        return result

    def pulls(self) -> dict[str, tuple[float, float]]:
        """(start, end) of each host's pull."""
        found: dict[str, dict[str, float]] = {}
        for line in self.pull_log.read_text().splitlines() if self.pull_log.exists() else []:
            host, what, when = line.split()
            found.setdefault(host, {})[what] = float(when)
        return {host: (times["start"], times["end"]) for host, times in found.items()}

    def most_at_once(self) -> int:
        events = sorted((t, +1 if i == 0 else -1) for start_end in self.pulls().values()
                        for i, t in enumerate(start_end))
        busy = most = 0
        for _, change in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same time
            busy += change
            most = max(most, busy)
        return most

    def round_trips(self, host: str) -> list[str]:
        return [line.split("\t", 1)[1] for line in self.trips.read_text().splitlines() if line.split("\t")[0] == host]

    def lock_held(self) -> bool:
        return (self.root / "hosts" / self.hosts[0] / ".kamal" / "lock-app").exists()

    def last_line(self, result: subprocess.CompletedProcess) -> str:
        return result.stderr.strip().splitlines()[-1]


# ----- the slots themselves -----

def test_never_more_than_the_limit_at_once_and_a_failure_stops_the_waiting_hosts() -> None:
    slots = PullSlots(3)
    batch = slots.batch()
    pulled: list[int] = []
    gate = threading.Barrier(3, timeout=5)  # the first three hold their slots together

    def pull(index: int) -> None:
        with batch.slot() as turn:
            if turn:
                if index < 3:
                    gate.wait()
                time.sleep(0.01)
                pulled.append(index)

    threads = [threading.Thread(target=pull, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert slots.most == 3 and slots.busy == 0 and sorted(pulled) == list(range(20))

    failing = slots.batch()
    with pytest.raises(RuntimeError), failing.slot() as turn:
        assert turn
        raise RuntimeError("pull failed")
    with failing.slot() as turn:
        assert turn is False  # this batch stopped: the next host pulls nothing
    with slots.batch().slot() as turn:
        assert turn  # another step's batch is not stopped by it


# ----- the setting -----

@pytest.mark.parametrize(("value", "message"), [
    ("0", "ERROR: x-kamalpy/pull_limit: 0 is less than the minimum of 1"),
    ("ten", "ERROR: x-kamalpy/pull_limit: should be an integer"),
    ("2.5", "ERROR: x-kamalpy/pull_limit: should be an integer"),
])
def test_a_bad_pull_limit_is_one_error_line_naming_the_key(tmp_path: Path, value: str, message: str) -> None:
    project = Project(tmp_path, 2, f"x-kamalpy:\n  pull_limit: {value}\n")
    result = project.run("config")
    assert result.returncode == 1 and result.stderr.strip() == message


def test_x_kamalpy_takes_only_known_keys_and_kamal_errors_come_first(tmp_path: Path) -> None:
    project = Project(tmp_path, 2, "x-kamalpy:\n  pull_limt: 3\n")
    result = project.run("config")
    assert result.returncode == 1 and result.stderr.strip() == "ERROR: x-kamalpy: unknown key: pull_limt"
    config = tmp_path / "config" / "deploy.yml"
    config.write_text(config.read_text().replace("x-kamalpy:\n  pull_limt: 3\n", "x-kamalpy: 3\n"))
    assert project.run("config").stderr.strip() == "ERROR: x-kamalpy: should be a hash"
    config.write_text(config.read_text() + "servce: typo\n")
    assert project.run("config").stderr.strip() == "ERROR: unknown key: servce"  # Kamal's message first


# ----- build pull and deploy -----

def test_build_pull_on_12_hosts_pulls_at_most_pull_limit_at_once(tmp_path: Path) -> None:
    project = Project(tmp_path, 12, "x-kamalpy:\n  pull_limit: 4\n")
    result = project.run("build", "pull")
    assert result.returncode == 0, result.stderr
    assert sorted(project.pulls()) == sorted(project.hosts)
    assert project.most_at_once() == 4  # never more, and the slots are used
    assert "Pulling on at most 4 of the 12 hosts at once (x-kamalpy.pull_limit)" in result.stdout + result.stderr


def test_the_default_limit_leaves_a_deploy_of_up_to_10_hosts_alone(tmp_path: Path) -> None:
    assert DEFAULT_PULL_LIMIT >= 10
    project = Project(tmp_path, 3)
    result = project.run("deploy", "-P")
    assert result.returncode == 0, result.stderr
    assert project.most_at_once() == 3  # all at once, as Kamal
    assert "at once" not in result.stdout + result.stderr
    # The lock check rides in the first round trip to the primary host; each host pulls in one round trip.
    trips = project.round_trips(project.hosts[0])
    assert "test ! -d .kamal/lock-app" in trips[0] and "docker info" in trips[0], trips[0]
    assert [i for i, trip in enumerate(trips) if "docker pull" in trip] == [1]


def test_a_bound_adds_no_round_trip(tmp_path: Path) -> None:
    counts = []
    for limit in (10, 1):
        project = Project(tmp_path / str(limit), 3, f"x-kamalpy:\n  pull_limit: {limit}\n")
        assert project.run("deploy", "-P").returncode == 0
        counts.append({host: len(project.round_trips(host)) for host in project.hosts})
        assert project.most_at_once() == min(limit, 3)
    assert counts[0] == counts[1]


def test_a_failed_pull_stops_the_hosts_still_waiting(tmp_path: Path) -> None:
    project = Project(tmp_path, 8, "x-kamalpy:\n  pull_limit: 2\n")
    failing = project.hosts[1]
    result = project.run("deploy", "-P", FAKE_PULL_FAIL=failing)
    assert result.returncode == 1
    line = project.last_line(result)
    assert line.startswith(f"ERROR: {failing}: docker pull registry.example.com/acme/app:v2") and \
        "context deadline exceeded" in line, line
    assert line.endswith("; hosts switched to v2 before the failure: none"), line
    assert len(project.pulls()) <= 3  # the two in flight, at most one more that took a freed slot first
    assert not project.lock_held()
    assert not any((tmp_path / "hosts" / h / "containers").exists() for h in project.hosts)


def test_accessory_boot_on_many_hosts_runs_at_most_pull_limit_at_once(tmp_path: Path) -> None:
    project = Project(tmp_path, 6, "x-kamalpy:\n  pull_limit: 2\n"
                      "accessories:\n  redis:\n    image: redis:7\n    roles: [web]\n")
    result = project.run("accessory", "boot", "redis")
    assert result.returncode == 0, result.stderr
    assert sorted(project.pulls()) == sorted(project.hosts)
    assert project.most_at_once() == 2


# ----- a host that refuses connections; a host that fails in a later boot group -----

def test_a_host_refusing_connections_among_many_stops_the_deploy_before_any_switch(tmp_path: Path) -> None:
    project = Project(tmp_path, 30)
    refusing = project.hosts[17]
    result = project.run("deploy", "-P", LOOPBACK_REFUSE=refusing)
    assert result.returncode == 1
    assert result.stderr.count("ERROR:") == 1, result.stderr
    line = project.last_line(result)
    assert line == (f"ERROR: {refusing}: could not connect to port 22 (Connection refused); "
                    "hosts switched to v2 before the failure: none"), line
    assert not project.lock_held()
    assert not any((tmp_path / "hosts" / h / "containers").exists() for h in project.hosts)  # nothing booted


def test_a_host_failing_in_a_later_boot_group_names_the_hosts_already_switched(tmp_path: Path) -> None:
    project = Project(tmp_path, 6, "boot:\n  limit: 2\n")
    failing = project.hosts[4]
    result = project.run("deploy", "-P", FAKE_DEPLOY_FAIL=failing)
    assert result.returncode == 1
    line = project.last_line(result)
    assert line.startswith(f"ERROR: {failing}: Failed to boot web: "), line
    switched = project.hosts[:4] + [project.hosts[5]]  # its group's other host finished its switch too
    assert line.endswith(f"; hosts switched to v2 before the failure: {', '.join(switched)}"), line
    assert not project.lock_held()
    # Kamal's semantics: no group after the failed one boots.
    project2 = Project(tmp_path / "b", 6, "boot:\n  limit: 2\n")
    result = project2.run("deploy", "-P", FAKE_DEPLOY_FAIL=project2.hosts[2])
    line = project2.last_line(result)
    switched = [*project2.hosts[:2], project2.hosts[3]]
    assert line.endswith(f"; hosts switched to v2 before the failure: {', '.join(switched)}"), line
    assert not (tmp_path / "b" / "hosts" / project2.hosts[4] / "containers").exists()


def test_a_failure_in_the_first_group_lists_none(tmp_path: Path) -> None:
    project = Project(tmp_path, 3, "boot:\n  limit: 1\n")
    result = project.run("deploy", "-P", FAKE_DEPLOY_FAIL=project.hosts[0])
    assert result.returncode == 1
    assert project.last_line(result).endswith("; hosts switched to v2 before the failure: none")
    assert not project.lock_held()
