"""A compact live view of many hosts on a terminal, in place of the per-command line log.

Each ``say`` heading starts a phase. While commands run, a region under the printed lines shows one line per
host (its time in the phase and the command it runs, shortened) under a summary line
(``Pull app image: 98/100 hosts done, 2 running, slowest: 10.0.0.7 4.2s``), redrawn in place with ANSI
cursor moves and bounded to the terminal's height (failed and running hosts first, then ``+N done``).
When no command runs the region is erased, so anything else printed meanwhile lands on clean lines.
A phase ends with one line naming its slowest hosts; the run ends with the slowest hosts overall.
Headings, info lines, warnings and errors still print as lines (through :class:`Output`).

Chosen by the commander when :func:`wanted` holds; the built-in ``live_view`` plugin offers it as the
``live`` view of ``kamalpy_output_views``, so a plugin can replace it (or ``--disable-plugin live_view``).
The rendering (:func:`render`, :func:`phase_summary`, :func:`run_summary`) is pure, for tests.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from kamalpy.output import Output, _flat, colour_enabled

LIVE = "live"  # the name of this view in kamalpy_output_views
LOCAL = "local"
REFRESH = 0.2  # seconds between redraws of running hosts' times
SLOWEST = 3  # hosts named at the end of a phase or run
FAILED_NAMED = 5  # failed hosts named (with why) at the end of a phase
CURSOR_UP_AND_CLEAR = "\x1b[{n}F\x1b[J"  # to the first column n lines up, then clear to the end of the screen


def wanted(*, verbose: bool, quiet: bool, dry_run: bool,
           streams: Iterable[TextIO] | None = None, environ: dict[str, str] | None = None) -> bool:
    """On a terminal (stdout and stderr both), without ``-v``, ``-q`` or ``--dry-run``, and TERM is not dumb."""
    if verbose or quiet or dry_run:
        return False
    if (environ if environ is not None else os.environ).get("TERM") == "dumb":
        return False
    for stream in streams if streams is not None else (sys.stdout, sys.stderr):
        try:
            if not stream.isatty():
                return False
        except (AttributeError, ValueError, OSError):
            return False
    return True


@dataclass
class HostState:
    """One host's commands in one phase."""

    host: str
    started: float
    ended: float = 0.0
    running: dict[str, str] = field(default_factory=dict)  # tag -> command, in start order
    done: int = 0
    failure: str | None = None

    def elapsed(self, now: float) -> float:
        return (now if self.running else self.ended) - self.started

    @property
    def state(self) -> str:
        return "failed" if self.failure is not None else "running" if self.running else "done"


@dataclass
class Phase:
    title: str
    started: float
    hosts: dict[str, HostState] = field(default_factory=dict)

    def start(self, host: str, tag: str, command: str, now: float) -> None:
        state = self.hosts.get(host)
        if state is None:
            state = self.hosts[host] = HostState(host, now)
        state.running[tag] = command

    def finish(self, host: str, tag: str, now: float) -> None:
        state = self.hosts.get(host)
        if state is not None and state.running.pop(tag, None) is not None:
            state.done += 1
            state.ended = now

    def abandon(self, host: str, tags: Iterable[str], now: float) -> None:
        state = self.hosts.get(host)
        if state is not None:
            for tag in tags:
                if state.running.pop(tag, None) is not None:
                    state.ended = now

    def fail(self, host: str, reason: str, now: float) -> None:
        state = self.hosts.get(host)
        if state is None:
            state = self.hosts[host] = HostState(host, now)
        state.failure = reason
        if state.running:
            state.running.clear()
        state.ended = now

    @property
    def running(self) -> bool:
        return any(state.running for state in self.hosts.values())

    def slowest(self, now: float, count: int = SLOWEST, servers_only: bool = False) -> list[HostState]:
        states = [s for s in self.hosts.values() if not (servers_only and s.host == LOCAL)]
        return sorted(states, key=lambda s: (-s.elapsed(now), not s.running))[:count]  # a tie: running is slower


def _seconds(value: float) -> str:
    return f"{value:.1f}s"


def _cut(text: str, width: int) -> str:
    """``text`` within ``width`` columns, an ellipsis marking the cut."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def _step(command: str) -> str:
    """A command on one line, runs of spaces squeezed, SSHKit's ``/usr/bin/env`` left out (cut to the width later)."""
    text = " ".join(_flat(command).split())
    return text.removeprefix("/usr/bin/env ")


def _named(states: Iterable[HostState], now: float) -> str:
    return ", ".join(f"{s.host} {_seconds(s.elapsed(now))}" for s in states)


def _counts(phase: Phase) -> tuple[int, int, int, int]:
    states = [s.state for s in phase.hosts.values()]
    return len(states), states.count("done"), states.count("running"), states.count("failed")


def live_summary(phase: Phase, now: float, width: int = 1000) -> str:
    """``Pull app image: 98/100 hosts done, 2 running, 1 failed, slowest: 10.0.0.7 4.2s``.

    A long title (``Running 'CMD' on HOST, HOST, ...``) is cut first, so that the counts stay in view.
    """
    total, done, running, failed = _counts(phase)
    parts = [f"{done}/{total} hosts done"]
    if running:
        parts.append(f"{running} running")
    if failed:
        parts.append(f"{failed} failed")
    counts = ", ".join(parts) + f", slowest: {_named(phase.slowest(now, 1), now)}"
    title = _cut(phase.title or "Running", max(12, width - len(counts) - 2))
    return f"{title}: {counts}"


def _host_line(state: HostState, now: float, host_width: int, width: int) -> str:
    if state.failure is not None:
        what = f"failed: {state.failure}"
    elif state.running:
        what = _step(next(iter(state.running.values())))
    else:
        what = f"done ({state.done} command{'s' if state.done != 1 else ''})"
    mark = {"failed": "!", "running": ">", "done": " "}[state.state]
    return _cut(f"{mark} {state.host:<{host_width}} {_seconds(state.elapsed(now)):>7}  {what}", width)


# SGR codes of the region's lines (decisions.md: colour applies to the live view too): the summary in bold,
# hosts by their mark. Applied after the cut, so that the codes take no columns.
_COLOURS = {"summary": "1", "!": "31", ">": "33", " ": "32"}


def _painted(lines: list[str]) -> list[str]:
    first, hosts = lines[0], lines[1:]
    painted = [f"\x1b[{_COLOURS['summary']}m{first}\x1b[0m"]
    for line in hosts:
        code = _COLOURS.get(line[:1]) if line[1:2] == " " else None
        painted.append(f"\x1b[{code}m{line}\x1b[0m" if code else line)
    return painted


def render(phase: Phase, now: float, width: int, height: int, colour: bool = False) -> list[str]:
    """The live region: the summary line, then one line per host, within ``width`` x ``height - 1``.

    One row stays free for the cursor, so the region never scrolls the screen (which would leave the cursor
    moves short). When the hosts do not fit, failed and running hosts come first, in host order, and the
    rest is counted on a last ``+N done`` line.
    """
    lines = _render(phase, now, width, height)
    return _painted(lines) if colour else lines


def _render(phase: Phase, now: float, width: int, height: int) -> list[str]:
    width = max(1, width - 1)  # the last column would wrap on some terminals
    rows = max(1, height - 1)
    lines = [_cut(live_summary(phase, now, width), width)]
    states = list(phase.hosts.values())
    if not states or rows == 1:
        return lines
    host_width = min(max(len(s.host) for s in states), 32)
    if len(states) > rows - 1:
        order = {"failed": 0, "running": 1, "done": 2}
        states = sorted(states, key=lambda s: order[s.state])  # sorted() is stable: host order within a kind
        shown, rest = states[:rows - 2], states[rows - 2:]
        hidden = _counts(Phase("", 0.0, {s.host: s for s in rest}))
        more = f"+{hidden[0]} more ({hidden[2]} running)" if hidden[2] or hidden[3] else f"+{hidden[0]} done"
        return lines + [_host_line(s, now, host_width, width) for s in shown] + [_cut(more, width)]
    return lines + [_host_line(s, now, host_width, width) for s in states]


def phase_summary(phase: Phase) -> str | None:
    """The line a finished phase leaves: how many hosts, how long, the slowest and failed ones; None if no commands."""
    if not phase.hosts:
        return None
    total, done, _, failed = _counts(phase)
    end = max(s.ended for s in phase.hosts.values())
    took = _seconds(end - phase.started)
    if list(phase.hosts) == [LOCAL]:
        line = f"  done locally in {took}"
    else:
        line = f"  {done}/{total} hosts done in {took}, slowest: {_named(phase.slowest(end), end)}"
    if failed:
        failures = [s for s in phase.hosts.values() if s.failure is not None]
        line += "; failed: " + ", ".join(f"{s.host} ({_cut(s.failure or '', 80)})" for s in failures[:FAILED_NAMED])
        if failed > FAILED_NAMED:
            line += f" and {failed - FAILED_NAMED} more"  # the final error line names them all
    return line


def run_summary(phases: Iterable[Phase]) -> str | None:
    """``Slowest hosts: ...``: time in commands per server over the run; None for fewer than two servers."""
    totals: dict[str, float] = {}
    for phase in phases:
        for state in phase.hosts.values():
            if state.host != LOCAL:
                totals[state.host] = totals.get(state.host, 0.0) + state.elapsed(state.ended)
    if len(totals) < 2:
        return None
    slowest = sorted(totals.items(), key=lambda item: -item[1])[:SLOWEST]
    return "Slowest hosts: " + ", ".join(f"{host} {_seconds(seconds)}" for host, seconds in slowest)


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
        return size.columns, size.lines
    except (AttributeError, ValueError, OSError):
        return 80, 24


class LiveView(Output):
    """An :class:`Output` that draws the live region instead of the ``Running``/``Finished`` lines."""

    def __init__(self, *, size: Callable[[], tuple[int, int]] | None = None,
                 clock: Callable[[], float] = time.monotonic, refresh: float = REFRESH, ticker: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._size = size or (lambda: _terminal_size(self.stream))
        self._clock = clock
        self._refresh = refresh
        self._view = threading.RLock()  # the region's state and what is on screen; taken before Output's lock
        self._phase = Phase("", clock())
        self._phases: list[Phase] = [self._phase]
        self._drawn = 0  # lines of the region on screen, the cursor just below them
        self._last_draw = 0.0
        self._ticker: threading.Thread | None = None
        self._ticks = ticker  # tests draw on events only
        self._colour_on = colour_enabled(self.stream)

    # -- what the executor reports -----------------------------------------------------------------
    def start(self, host: str, command: str, debug: bool = False) -> str:
        tag = secrets.token_hex(4)
        with self._view:
            self._phase.start(host, tag, command, self._clock())
            self._draw(throttled=True)
            self._tick()
        return tag

    def finish(self, host: str, tag: str, seconds: float, exit_status: int, debug: bool = False) -> None:
        with self._view:
            self._phase.finish(host, tag, self._clock())
            self._draw(throttled=self._phase.running)

    def abandon(self, host: str, tags: Iterable[str]) -> None:
        with self._view:
            self._phase.abandon(host, tags, self._clock())
            self._draw(throttled=self._phase.running)

    def host_failed(self, host: str, error: BaseException) -> None:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].removeprefix(f"{host}: ")
        with self._view:
            self._phase.fail(host, reason, self._clock())
            self._draw(throttled=self._phase.running)

    def remote_output(self, host: str, tag: str, text: str) -> None:
        """Only ``-v`` shows remote output, and ``-v`` uses the line log."""

    # -- lines -------------------------------------------------------------------------------------
    def say(self, message: str, *args: Any, **kwargs: Any) -> None:
        with self._view:
            self._end_phase()
            super().say(message, *args, **kwargs)
            self._phase.title = message.strip().splitlines()[0].rstrip(". ") if message.strip() else ""

    def _write(self, line: str, stream: TextIO | None = None) -> None:
        with self._view:
            self._erase()
            super()._write(line, stream)
            self._draw()

    def by_host(self, host: str, text: str, kind: str = "App") -> None:
        with self._view:
            self._erase()
            super().by_host(host, text, kind)
            self._draw()

    def close(self) -> None:
        """End the phase and name the slowest hosts of the run; a later command starts a new region."""
        with self._view:
            self._end_phase()
            summary = run_summary(self._phases)
            self._phases = [self._phase]
            if summary and not self.quiet:
                super()._write(summary)

    # -- the region --------------------------------------------------------------------------------
    def _end_phase(self) -> None:
        phase = self._phase
        for state in phase.hosts.values():
            if state.running:  # nobody will finish these any more
                state.running.clear()
                state.ended = self._clock()
        self._erase()
        summary = phase_summary(phase)
        self._phase = Phase("", self._clock())
        self._phases.append(self._phase)
        if summary:
            super()._write(summary)

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write(CURSOR_UP_AND_CLEAR.format(n=self._drawn))
            self.stream.flush()
            self._drawn = 0

    def _draw(self, throttled: bool = False) -> None:
        now = self._clock()
        if throttled and self._drawn and now - self._last_draw < self._refresh:
            return
        if not self._phase.running:
            self._erase()  # nothing runs: leave clean lines for whatever is printed next
            return
        width, height = self._size()
        lines = render(self._phase, now, width, height, self._colour_on)
        up = CURSOR_UP_AND_CLEAR.format(n=self._drawn) if self._drawn else ""
        self.stream.write(up + "".join(f"{line}\n" for line in lines))
        self.stream.flush()
        self._drawn = len(lines)
        self._last_draw = now

    def _tick(self) -> None:
        """Redraw while commands run, so that the running hosts' times go on (one thread, gone when idle)."""
        if not self._ticks or (self._ticker is not None and self._ticker.is_alive()):
            return

        def loop() -> None:
            while True:
                time.sleep(self._refresh)
                with self._view:
                    if not self._phase.running:
                        self._ticker = None
                        return
                    self._draw()

        self._ticker = threading.Thread(target=loop, name="kamalpy-live-view", daemon=True)
        self._ticker.start()
