"""What the user sees while commands run: Kamal's (SSHKit's) lines, ``-q`` quieter, ``-v`` fuller.

Normal:  ``  INFO [1a2b3c4d] Running docker -v on 10.0.0.1`` / ``  INFO [1a2b3c4d] Finished in 0.123 seconds
with exit status 0 (successful).``; verbose adds remote output lines prefixed by host; quiet shows
errors only. Dry run: ``HOST<TAB>COMMAND`` per command on stdout, nothing else.

On a terminal the lines are coloured as Kamal's are: SSHKit's Pretty formatter (level names, the
command tag in green, the command in bold yellow, the host in blue, successful/failed), ``say`` step
headings in magenta (Thor), errors in red. Never in a pipe or a file, nor with ``NO_COLOR`` set.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from collections.abc import Iterable
from typing import TextIO

# SSHKit::Color's codes (a subset) and SSHKit::Formatter::Pretty's level colours.
COLOURS = {"black": 30, "red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35}
LEVEL_COLOURS = {"DEBUG": "black", "INFO": "blue", "WARN": "yellow", "ERROR": "red"}


def colour_enabled(stream: TextIO) -> bool:
    """Colours only on a terminal (Thor's and SSHKit's rule); a non-empty ``NO_COLOR`` or ``TERM=dumb`` turns
    them off (no-color.org, as Thor honours it)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def paint(text: str, colour: str, on: bool, bold: bool = False) -> str:
    """``text`` in ``colour`` when ``on``, the way SSHKit's ``colorize`` writes it."""
    if not on:
        return text
    return f"\x1b[{'1;' if bold else ''}{COLOURS[colour]}m{text}\x1b[0m"


class Output:
    def __init__(self, *, verbose: bool = False, quiet: bool = False, stream: TextIO | None = None,
                 dry_run_stream: TextIO | None = None, dry_run: bool = False) -> None:
        self.verbose = verbose
        self.quiet = quiet
        self.dry_run_only = dry_run  # stdout carries nothing but the dry-run lines
        self._stream = stream
        self._dry_stream = dry_run_stream
        self._lock = threading.Lock()

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def _colour(self) -> bool:
        return colour_enabled(self.stream)

    def _level(self, label: str, on: bool) -> str:
        return paint(label, LEVEL_COLOURS[label.strip()], on)

    def _write(self, line: str, stream: TextIO | None = None) -> None:
        with self._lock:
            target = stream or self.stream
            target.write(line + "\n")
            target.flush()

    def info(self, message: str) -> None:
        if not self.quiet:
            self._write(message)

    def warn(self, message: str) -> None:
        if not self.quiet:
            self._write(f"{self._level('  WARN', self._colour())} {message}")

    def error(self, message: str) -> None:
        self._write(paint(message, "red", self._colour()))

    def say(self, message: str, colour: str | None = "magenta") -> None:
        """A line of Kamal's ``say``: step headings in magenta, some in yellow, results (``colour=None``) plain."""
        if not self.quiet:
            self._write(paint(message, colour, self._colour()) if colour else message)

    def by_host(self, host: str, text: str, kind: str = "App") -> None:
        """Captured output of one host, on stdout (Kamal's ``puts_by_host``); nothing in a dry run."""
        if self.dry_run_only:
            return
        with self._lock:
            sys.stdout.write(f"{kind} Host: {host}\n{text}\n\n")
            sys.stdout.flush()

    def start(self, host: str, command: str, debug: bool = False) -> str:
        tag = secrets.token_hex(4)
        if self._shows(debug):
            on = self._colour()
            where = "locally" if host == "local" else f"on {paint(host, 'blue', on)}"
            self._write(f"{self._prefix('DEBUG' if debug else '  INFO', tag, on)} "
                        f"Running {paint(_flat(command), 'yellow', on, bold=True)} {where}")
        return tag

    def _prefix(self, label: str, tag: str, on: bool) -> str:
        """``  INFO [1a2b3c4d]``: SSHKit's level name and command tag."""
        return f"{self._level(label, on)} [{paint(tag, 'green', on)}]"

    def _shows(self, debug: bool) -> bool:
        return self.verbose if debug else not self.quiet

    def remote_output(self, host: str, tag: str, text: str) -> None:
        on = self._colour()
        for line in text.splitlines():
            shown = f"{host}\t{line}"
            self._write(f"{self._prefix(' DEBUG', tag, on)} {paint(shown, 'green', on)}")

    def finish(self, host: str, tag: str, seconds: float, exit_status: int, debug: bool = False) -> None:
        if self._shows(debug):
            on = self._colour()
            state = paint("successful", "green", on, bold=True) if exit_status == 0 else \
                paint("failed", "red", on, bold=True)
            self._write(f"{self._prefix('DEBUG' if debug else '  INFO', tag, on)} Finished in {seconds:.3f} seconds "
                        f"with exit status {exit_status} ({state}).")

    def abandon(self, host: str, tags: Iterable[str]) -> None:
        """Commands that started and will not finish (steps after a failed one, a broken connection)."""

    def host_failed(self, host: str, error: BaseException) -> None:
        """A host's work ended with ``error`` (the run reports it at the end)."""

    def close(self) -> None:
        """The command is over (a view on a terminal sums up); the line log has nothing to add."""

    def dry_run(self, host: str, command: str, kind: str = "") -> None:
        prefix = f"{kind}\t" if kind else ""
        self._write(f"{host}\t{prefix}{_flat(command)}", self._dry_stream or sys.stdout)


def _flat(command: str) -> str:
    """Newlines shown as ``\\n`` so that each command stays on one line (decisions.md)."""
    return command.replace("\n", "\\n")
