"""What the user sees while commands run: Kamal's (SSHKit's) lines, ``-q`` quieter, ``-v`` fuller.

Normal:  ``  INFO [1a2b3c4d] Running docker -v on 10.0.0.1`` / ``  INFO [1a2b3c4d] Finished in 0.123 seconds
with exit status 0 (successful).``; verbose adds remote output lines prefixed by host; quiet shows
errors only. Dry run: ``HOST<TAB>COMMAND`` per command on stdout, nothing else.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections.abc import Iterable
from typing import TextIO


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
            self._write(f"  WARN {message}")

    def error(self, message: str) -> None:
        self._write(message)

    def say(self, message: str) -> None:
        """A step heading (Kamal's magenta ``say`` lines)."""
        if not self.quiet:
            self._write(message)

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
            where = "locally" if host == "local" else f"on {host}"
            self._write(f"{'DEBUG' if debug else '  INFO'} [{tag}] Running {_flat(command)} {where}")
        return tag

    def _shows(self, debug: bool) -> bool:
        return self.verbose if debug else not self.quiet

    def remote_output(self, host: str, tag: str, text: str) -> None:
        for line in text.splitlines():
            self._write(f" DEBUG [{tag}] {host}\t{line}")

    def finish(self, host: str, tag: str, seconds: float, exit_status: int, debug: bool = False) -> None:
        if self._shows(debug):
            state = "successful" if exit_status == 0 else "failed"
            level = "DEBUG" if debug else "  INFO"
            self._write(f"{level} [{tag}] Finished in {seconds:.3f} seconds with exit status {exit_status} ({state}).")

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
