"""``app logs -f`` and ``proxy logs -f``: Kamal's ``ssh -t`` lines in a dry run, streamed output and a
quiet end on Ctrl-C when run for real (against a fake ``ssh`` on PATH that prints lines until interrupted).

The expected lines are Kamal's (reference 7.2 #21 and 7.3 #29), with this project's hosts and port.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import KAMALPY, assert_no_connection, dry_run_environment, write_project

H1, H2 = "127.0.0.2", "127.0.0.3"
DEPLOY_YML = f"""\
service: app
image: dhh/app
servers:
  web:
    - {H1}
  workers:
    hosts:
      - {H2}
    cmd: bin/jobs
ssh:
  port: {{port}}
registry:
  username: dhh
  password: secret
builder:
  arch: amd64
"""
# Kamal 7.2 #21, verbatim (host app-1, port 22, --lines 123, --grep Completed).
KAMAL_21 = (
    "ssh -t root@app-1 -p 22 'sh -c '\\''docker ps --latest --quiet --filter label=service=app -"
    '-filter label=destination= --filter label=role=web --filter status=running --filter status'
    '=restarting --filter ancestor=$(docker image ls --filter reference=dhh/app:latest --format'
    " '\\''\\'\\'''\\''{{.ID}}'\\''\\'\\'''\\'') ; docker ps --latest --quiet --filter label=service=ap"
    'p --filter label=destination= --filter label=role=web --filter status=running --filter sta'
    "tus=restarting'\\'' | head -1 | xargs docker logs --timestamps --tail 123 --follow 2>&1 | g"
    'rep "Completed"\''
)


@pytest.fixture
def project(tmp_path, monkeypatch, listeners):
    write_project(tmp_path, DEPLOY_YML.format(port=listeners[0]))
    dry_run_environment(monkeypatch, tmp_path, version="999", name="Dee", email="dee@example.com")
    return tmp_path


def follow_line(kamalpy, listeners, *args: str) -> str:
    result = kamalpy("--dry-run", *args)
    assert result.code == 0, result.err
    assert_no_connection(listeners[1])
    [line] = [line for line in result.out.splitlines() if line.startswith("local\t")]
    return line.split("\t", 1)[1]


def kamals_app_follow(role: str, host: str, port: int, tail: str = " --tail 10", grep: str = "") -> str:
    """KAMAL_21 for this project's host, port, role and options."""
    return (KAMAL_21.replace("root@app-1 -p 22", f"root@{host} -p {port}").replace("role=web", f"role={role}")
            .replace(" --tail 123", tail).replace(' | grep "Completed"', grep))


def test_app_logs_follow_dry_run(kamalpy, project, listeners):
    port = listeners[0]
    assert follow_line(kamalpy, listeners, "app", "logs", "-f") == kamals_app_follow("web", H1, port)
    assert follow_line(kamalpy, listeners, "app", "logs", "--follow", "-n", "123", "-g", "Completed") == (
        kamals_app_follow("web", H1, port, " --tail 123", ' | grep "Completed"'))
    # --grep alone: no --tail (Kamal's default of 10 lines is only without --since/--grep).
    assert follow_line(kamalpy, listeners, "app", "logs", "-f", "-g", "x") == (
        kamals_app_follow("web", H1, port, "", ' | grep "x"'))
    assert follow_line(kamalpy, listeners, "app", "logs", "-f", "--container-id", "ID321") == (
        f"ssh -t root@{H1} -p {port} 'echo ID321 | xargs docker logs --timestamps --tail 10 --follow 2>&1'")
    # --hosts picks the host followed, and the role running there.
    assert follow_line(kamalpy, listeners, "app", "logs", "-f", "-h", H2, "-T") == (
        kamals_app_follow("workers", H2, port).replace(" --timestamps", ""))


def test_proxy_logs_follow_dry_run(kamalpy, project, listeners):
    port = listeners[0]
    assert follow_line(kamalpy, listeners, "proxy", "logs", "-f") == (
        f"ssh -t root@{H1} -p {port} 'docker logs kamal-proxy --timestamps --tail 10 --follow 2>&1'")
    assert follow_line(kamalpy, listeners, "proxy", "logs", "-f", "-g", "hello!", "-T") == (
        f"""ssh -t root@{H1} -p {port} 'docker logs kamal-proxy --tail 10 --follow 2>&1 | grep "hello!"'""")


FAKE_SSH = """#!/bin/sh
# Stands for `ssh -t HOST 'docker logs ... --follow'`: prints its arguments, then a line every 50 ms.
trap 'echo "fake ssh: interrupted"; exit 130' INT
echo "fake ssh: $*"
n=0
while true; do n=$((n+1)); echo "log line $n"; sleep 0.05; done
"""


@pytest.mark.parametrize("command", [("app", "logs", "-f"), ("proxy", "logs", "-f")])
@pytest.mark.parametrize("to_group", [False, True], ids=["sigint-to-kamalpy", "sigint-to-process-group"])
def test_follow_streams_and_ends_cleanly_on_ctrl_c(project, listeners, tmp_path: Path, command, to_group):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([KAMALPY, *command], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen = []
        while not any(line.startswith("log line 3") for line in seen):  # streamed: lines arrive as printed
            line = proc.stdout.readline()
            assert line, f"kamalpy ended early: {seen} {proc.stderr.read()}"
            seen.append(line)
        if to_group:  # what a shell's Ctrl-C does without a terminal: every process of the group
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert "fake ssh: interrupted" in out
    assert f"fake ssh: -t root@{H1} -p {listeners[0]} " in "".join(seen)
    assert "Traceback" not in err and "ERROR" not in err, err
    assert_no_connection(listeners[1])


def test_follow_passes_the_exit_status_on(project, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text("#!/bin/sh\nexit 255\n")
    (bin_dir / "ssh").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([KAMALPY, "app", "logs", "-f"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 255
    assert "Traceback" not in proc.stderr


