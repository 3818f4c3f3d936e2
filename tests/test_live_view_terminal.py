"""A real kamalpy command under a pseudo-terminal shows the live view; through pipes the line log is unchanged.

The hosts are directories on this machine (the ``loopback`` test transport), one of them made slow.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from fake_terminal import FakeTerminal
from plugins import loopback_transport

KAMALPY = [sys.executable, "-m", "kamalpy"]
HOSTS = [f"10.0.0.{n}" for n in range(1, 7)]
SLOW = "10.0.0.4"
COMMAND = ["server", "exec", "echo hi"]
WIDTH, HEIGHT = 120, 40


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    servers = "".join(f"  - {host}\n" for host in HOSTS)
    (tmp_path / "config" / "deploy.yml").write_text(
        f"service: app\nimage: app\nservers:\n{servers}registry:\n  server: localhost:5555\nbuilder:\n  arch: amd64\n")
    return tmp_path


def _env(project: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("NO_COLOR", "KAMALPY_DISABLE_PLUGINS")}
    env.update({"KAMALPY_PLUGINS": "loopback_transport", "KAMALPY_TRANSPORT": "loopback", "TERM": "xterm",
                "PYTHONPATH": str(Path(loopback_transport.__file__).parent),
                loopback_transport.ROOT_ENV: str(project / "hosts"), loopback_transport.DELAYS_ENV: f"{SLOW}=1.5"})
    return env


def run_in_terminal(project: Path, args: list[str], **env: str) -> tuple[int, str]:
    """Run kamalpy with stdout and stderr on a pty of WIDTH x HEIGHT (``env`` on top); its exit status and
    all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # keep "\n" as written, so that the bytes compare with a pipe's
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = subprocess.Popen([*KAMALPY, *args], cwd=project, env={**_env(project), **env}, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), b"".join(chunks).decode()


def run_in_pipes(project: Path, args: list[str]) -> tuple[int, str, str]:
    proc = subprocess.run([*KAMALPY, *args], cwd=project, env=_env(project), capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_live_view_on_a_terminal_names_the_slowest_host(project: Path) -> None:
    status, written = run_in_terminal(project, COMMAND)
    assert status == 0, written
    assert "\x1b[" in written and re.search(r"\x1b\[\d+F\x1b\[J", written)  # redrawn in place
    assert re.search(r"Running 'echo hi' on [0-9., …]+: \d/6 hosts done, \d running", written)  # the live summary
    assert f"\x1b[33m> {SLOW} " in written  # the slow host's line while it runs, in colour
    assert " INFO [" not in written  # no per-command log
    terminal = FakeTerminal(WIDTH, HEIGHT)
    terminal.feed(written)
    final = terminal.text().splitlines()
    # Two round trips a host (the audit line, the command), 1.5 s each on the slow one, 0.2 s on the others.
    assert re.fullmatch(rf"Slowest hosts: {SLOW} \d+\.\ds, 10\.0\.0\.\d \d+\.\ds, 10\.0\.0\.\d \d+\.\ds", final[-1])
    assert any(re.fullmatch(rf"  6/6 hosts done in \d+\.\ds, slowest: {SLOW} \d+\.\ds, .*", line) for line in final)
    assert sum(line == "hi" for line in final) == 6  # every host's output, none overwritten by the region
    assert not any(line.startswith(("> ", "! ")) for line in final)  # the region is gone at the end


def _normalised(text: str) -> str:
    """Command tags and timings vary from run to run; everything else must be the same."""
    text = re.sub(r"\[[0-9a-f]{8}\]", "[tag]", text)
    text = re.sub(r"Finished in \d+\.\d+ seconds", "Finished in N seconds", text)
    return re.sub(r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\]", "[time]", text)


def test_through_pipes_the_line_log_is_the_one_without_the_live_view(project: Path) -> None:
    status, out, err = run_in_pipes(project, COMMAND)
    assert status == 0
    _, out_without, err_without = run_in_pipes(project, ["--disable-plugin", "live_view", *COMMAND])
    assert "\x1b" not in out + err
    assert err.startswith("Running 'echo hi' on ")
    assert len(re.findall(r"^  INFO \[[0-9a-f]{8}\] Running echo hi on 10\.0\.0\.\d$", err, re.M)) == 6
    assert sorted(_normalised(out).split("\n\n")) == sorted(_normalised(out_without).split("\n\n"))
    assert sorted(_normalised(err).splitlines()) == sorted(_normalised(err_without).splitlines())
    assert "Slowest hosts" not in err


def test_a_dry_run_on_a_terminal_is_byte_identical_to_the_pipe(project: Path) -> None:
    args = ["server", "exec", "--dry-run", "echo hi"]
    status, written = run_in_terminal(project, args, NO_COLOR="1")  # the same lines; colours: test_output_colour
    _, out, err = run_in_pipes(project, args)
    assert status == 0
    assert "\x1b" not in written
    # stdout and stderr share the terminal: the same lines, in an order that may interleave.
    assert sorted(_normalised(written).splitlines()) == sorted(_normalised(out + err).splitlines())
    assert len(out.splitlines()) == 12


def test_v_on_a_terminal_keeps_the_full_per_command_log(project: Path) -> None:
    status, written = run_in_terminal(project, ["-v", *COMMAND], NO_COLOR="1")
    assert status == 0
    assert len(re.findall(r"^  INFO \[[0-9a-f]{8}\] Running echo hi on 10\.0\.0\.\d$", written, re.M)) == 6
    assert not re.search(r"\x1b\[\d+F", written)
