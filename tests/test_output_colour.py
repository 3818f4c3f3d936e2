"""Colours as Kamal prints them, on a terminal only, and never with NO_COLOR.

Kamal's lines come from SSHKit's Pretty formatter (``  INFO`` blue, the tag green, the command bold
yellow, the host blue, ``successful`` bold green / ``failed`` bold red), Thor's ``say`` (magenta step
headings) and bin/kamal (errors red). The end-to-end tests give kamalpy a real pseudo-terminal.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess

import pytest
from helpers import KAMALPY, MINIMAL, write_project

from kamalpy.output import Output

ESC = "\x1b["


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def colour_allowed(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def test_sshkit_lines_on_a_terminal():
    stream = Terminal()
    output = Output(stream=stream)
    tag = output.start("10.0.0.1", "docker -v")
    output.finish("10.0.0.1", tag, 0.1234, 0)
    output.finish("10.0.0.1", tag, 0.1, 1)
    output.warn("careful")
    assert stream.getvalue().splitlines() == [
        f"\x1b[34m  INFO\x1b[0m [\x1b[32m{tag}\x1b[0m] Running \x1b[1;33mdocker -v\x1b[0m on \x1b[34m10.0.0.1\x1b[0m",
        f"\x1b[34m  INFO\x1b[0m [\x1b[32m{tag}\x1b[0m] Finished in 0.123 seconds with exit status 0 "
        "(\x1b[1;32msuccessful\x1b[0m).",
        f"\x1b[34m  INFO\x1b[0m [\x1b[32m{tag}\x1b[0m] Finished in 0.100 seconds with exit status 1 "
        "(\x1b[1;31mfailed\x1b[0m).",
        "\x1b[33m  WARN\x1b[0m careful",
    ]


def test_say_is_magenta_and_errors_red():
    stream = Terminal()
    output = Output(stream=stream)
    output.say("Acquiring the deploy lock...")
    output.error("Deploy lock already in place!")
    output.info("plain")
    assert stream.getvalue() == ("\x1b[35mAcquiring the deploy lock...\x1b[0m\n"
                                 "\x1b[31mDeploy lock already in place!\x1b[0m\nplain\n")


def _all_lines(stream) -> str:
    output = Output(stream=stream, verbose=True)
    tag = output.start("h", "docker ps")
    output.remote_output("h", tag, "CONTAINER ID")
    output.finish("h", tag, 0.5, 0)
    output.say("Step...")
    output.warn("w")
    output.error("e")
    return stream.getvalue()


@pytest.mark.parametrize("setting", [("NO_COLOR", "1"), ("NO_COLOR", "yes"), ("TERM", "dumb")])
def test_no_colour_with_no_color_or_a_dumb_terminal(monkeypatch, setting):
    monkeypatch.setenv(*setting)
    text = _all_lines(Terminal())
    assert ESC not in text and "Running docker ps on h" in text


def test_no_colour_off_a_terminal():
    plain = _all_lines(io.StringIO())
    assert ESC not in plain
    coloured = _all_lines(Terminal())
    assert ESC in coloured and plain.splitlines()[0].split("]")[1] in coloured.replace("\x1b[1;33m", "").replace(
        "\x1b[0m", "").replace("\x1b[34m", "")


def _run_on_a_terminal(args: list[str], cwd, env: dict[str, str]) -> tuple[str, str]:
    """Run kamalpy with its stderr on a pseudo-terminal and its stdout on a pipe: (stdout, terminal text)."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen([KAMALPY, *args], cwd=cwd, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=terminal, text=True)
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        stdout = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        os.close(controller)
    return stdout, b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.fixture
def project(tmp_path):
    write_project(tmp_path, MINIMAL)
    return tmp_path


def test_a_terminal_gets_colours_and_the_pipe_none(project):
    env = {"NO_COLOR": "", "TERM": "xterm", "VERSION": "1"}
    stdout, terminal = _run_on_a_terminal(["--dry-run", "app", "boot"], project, env)
    assert "\x1b[35mAcquiring the deploy lock...\x1b[0m\n" in terminal
    assert "\x1b[35mStart container with version latest (or reboot if already running)...\x1b[0m\n" in terminal
    assert stdout.startswith("1.1.1.1\t") and ESC not in stdout
    _, terminal = _run_on_a_terminal(["--dry-run", "lock", "acquire", "-m", "x"], project, env)
    assert terminal == "Acquired the deploy lock\n"  # a result, not a step: plain, as in Kamal


def test_errors_are_red_on_a_terminal_and_no_color_wins(project):
    env = {"NO_COLOR": "", "TERM": "xterm"}
    _, terminal = _run_on_a_terminal(["-d", "nowhere", "config"], project, env)
    assert terminal.startswith("\x1b[31mERROR: ") and terminal.endswith("\x1b[0m\n")
    _, terminal = _run_on_a_terminal(["-d", "nowhere", "config"], project, {**env, "NO_COLOR": "1"})
    assert terminal.startswith("ERROR: ") and ESC not in terminal
