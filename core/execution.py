"""Running commands on many hosts: one pooled connection per host, hosts in parallel, errors gathered.

Kamal's model (SSHKit's parallel runner): a thread per host, connections kept for the run,
at most ``sshkit.max_concurrent_starts`` handshakes at once, DNS failures retried with back-off.
Failures of several hosts are reported together, each naming its host.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from kamalpy.errors import HostErrors, KamalpyError
from kamalpy.output import Output
from kamalpy.transport import CommandFailed, CommandResult, Connection, SshSettings, Stream, Transport, TransportError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.hooks import Hooks

T = TypeVar("T")

# `random`, `secrets`, `subprocess` and `concurrent.futures` are imported where they are used: every built-in
# plugin imports this module for Step, and they cost ~15 ms of each command's start-up (docs/development.md).

_DNS_ERRORS = ("getaddrinfo", "Temporary failure in name resolution", "Name or service not known",
               "nodename nor servname provided", "No address associated", "failed to look up", "resolve")


Cmd = str | Sequence[str]


def _rendered(command: Cmd, env: Mapping[str, object] | None) -> tuple[str, str]:
    """(what runs, what logs show): a Kamal command array is rendered as SSHKit does, secrets redacted."""
    if isinstance(command, str):
        return command, command
    from kamalpy.commands.base import render

    return render(command, env), render(command, env, redact=True)


@dataclass
class Step:
    """One command of a :meth:`Session.script`.

    ``check``: a non-zero exit ends the script and raises; otherwise the script goes on (the step's
    status is in its result). ``quiet``: shown at debug verbosity only (Kamal's audit lines).
    """

    command: Cmd
    check: bool = True
    quiet: bool = False
    env: Mapping[str, object] | None = None
    stdin: bytes | None = None  # what the command reads (a password); at most one step of a script reads stdin


@dataclass
class WriteFile:
    """A file written by a script from the channel's standard input: its content is on no command line.

    Created with umask 077 before ``chmod``, so a secret file is never readable by others, not even briefly.
    """

    data: bytes
    path: str
    mode: int = 0o600


def _quote(text: str) -> str:
    from kamalpy.commands.base import shell_quote_single

    return shell_quote_single(text)


_STEP_END = re.compile(r"\n(@@kamalpy-[0-9a-f]+):(\d+):(\d+)\n")


class Session:
    """Commands on one host, through its pooled connection (or printed, in a dry run)."""

    def __init__(self, executor: Executor, host: str) -> None:
        self.executor = executor
        self.host = host

    def execute(self, command: Cmd, *, env: Mapping[str, object] | None = None, stdin: bytes | None = None,
                raise_on_non_zero: bool = True, timeout: float | None = None, quiet: bool = False,
                dry_run_output: str = "") -> CommandResult:
        """Run ``command`` (a string, or a Kamal command array rendered the SSHKit way).

        ``quiet`` keeps the command out of normal output (Kamal's ``verbosity: :debug``).
        """
        ex = self.executor
        original = command
        command, display = _rendered(command, env)
        if ex.dry_run:
            ex.output.dry_run(self.host, display)
            return CommandResult(self.host, command, 0, dry_run_output, "")
        tag = ex.output.start(self.host, display, debug=quiet)
        started = time.monotonic()
        def show(stream: str, text: str) -> None:
            ex.output.remote_output(self.host, tag, text)

        try:
            result = self._hooked_one(original, env, stdin, timeout) if not isinstance(original, str) else None
            if result is None:
                ex.count(self.host)
                result = self._run(command, stdin, timeout or ex.command_timeout,
                                   show if ex.output.verbose else None, step=display)
            elif ex.output.verbose and (result.stdout or result.stderr):
                show("stdout", result.stdout + result.stderr)
        except BaseException:
            ex.output.abandon(self.host, [tag])
            raise
        ex.output.finish(self.host, tag, time.monotonic() - started, result.exit_status, debug=quiet)
        if raise_on_non_zero and not result.ok:
            raise CommandFailed(result, shown_command=display)
        return result

    def _hooked_one(self, command: Cmd, env: Mapping[str, object] | None, stdin: bytes | None,
                    timeout: float | None) -> CommandResult | None:
        """The result of one command run by a ``kamalpy_run_steps`` plugin, or None to run it through the shell."""
        if timeout is not None:  # a command with its own time limit stays with the shell
            return None
        results = self._hooked([Step(command, check=False, env=env, stdin=stdin)])
        return None if results is None else (results[0] if results else None)

    def _hooked(self, items: list[Step | WriteFile]) -> list[CommandResult] | None:
        """What a ``kamalpy_run_steps`` plugin answered for ``items`` (results of the steps run), or None."""
        hooks = self.executor.hooks
        return None if hooks is None else hooks.run_steps(self, items)

    def _run(self, command: str, stdin: bytes | None, timeout: float | None,
             on_output: Callable[[str, str], None] | None, step: str | Callable[[], str] = "") -> CommandResult:
        connection = self.executor.connection(self.host)  # a failure to connect is reported as it is
        try:
            return connection.run(command, stdin=stdin, timeout=timeout, on_output=on_output)
        except TransportError as exc:  # lost while the command ran: name it (``step``, as logged)
            named = step() if callable(step) else step
            raise exc.during(named) if named else exc from None

    def capture(self, command: Cmd, **kwargs: object) -> str:
        """Stdout of ``command`` without its trailing newline (Kamal's ``capture_with_info``)."""
        return self.execute(command, **kwargs).stdout.rstrip("\n")  # type: ignore[arg-type]

    def test(self, command: Cmd, **kwargs: object) -> bool:
        return self.execute(command, raise_on_non_zero=False, **kwargs).ok  # type: ignore[arg-type]

    def script(self, steps: Sequence[Step | WriteFile | Cmd]) -> list[CommandResult]:
        """Run ``steps`` one after another in ONE round trip (one exec channel); results of the steps run.

        Each step is shown (and printed in a dry run) as if it ran alone, so the output reads like Kamal's
        command sequence; only the number of round trips differs. The first failing checked step raises
        :class:`CommandFailed` for that step (its ``step``), and the steps after it do not run.
        """
        ex = self.executor
        items = [s if isinstance(s, (Step, WriteFile)) else Step(s) for s in steps]
        if sum(isinstance(s, WriteFile) or s.stdin is not None for s in items) > 1:
            raise ValueError("at most one step of a script reads its standard input")
        shown = [self._shown(item) for item in items]
        if ex.dry_run:
            for item, display in zip(items, shown, strict=True):
                ex.output.dry_run(self.host, display, kind="upload" if isinstance(item, WriteFile) else "")
            return [CommandResult(self.host, display, 0) for display in shown]
        tags = [ex.output.start(self.host, display, debug=getattr(item, "quiet", False))
                for item, display in zip(items, shown, strict=True)]
        started = time.monotonic()
        died: CommandResult | None = None
        try:
            results = self._hooked(items)
            if results is None:
                results, died = self._shell_script(items, shown)
        except BaseException:
            ex.output.abandon(self.host, tags)
            raise
        seconds = time.monotonic() - started
        for index, (item, display, tag) in enumerate(zip(items, shown, tags, strict=True)):
            if index >= len(results):
                # No failing checked step came before (it would have raised): the shell itself died.
                ex.output.abandon(self.host, tags[index:])
                raw = died or CommandResult(self.host, display, 1)
                raise CommandFailed(CommandResult(self.host, display, raw.exit_status or 1, raw.stdout, raw.stderr),
                                    shown_command=display, step=item)
            result = results[index]
            quiet = getattr(item, "quiet", False)
            if ex.output.verbose and (result.stdout or result.stderr):
                ex.output.remote_output(self.host, tag, result.stdout + result.stderr)
            ex.output.finish(self.host, tag, seconds, result.exit_status, debug=quiet)
            if result.exit_status != 0 and (isinstance(item, WriteFile) or item.check):
                ex.output.abandon(self.host, tags[index + 1:])  # the steps after it never ran
                raise CommandFailed(result, shown_command=display, step=item)
        return results

    def run_in_shell(self, steps: Sequence[Step | WriteFile]) -> list[CommandResult]:
        """Run ``steps`` through the server's shell in ONE round trip, showing nothing: for a
        ``kamalpy_run_steps`` plugin that hands the steps it does not understand back to the shell.

        Returns the results of the steps run: the steps after the first failing checked step do not run.
        Raises :class:`CommandFailed` when the shell itself died, :class:`TransportError` when the host is lost.
        """
        items = list(steps)
        shown = [self._shown(item) for item in items]
        results, died = self._shell_script(items, shown)
        if died is not None:
            display = shown[len(results)]
            raise CommandFailed(CommandResult(self.host, display, died.exit_status or 1, died.stdout, died.stderr),
                                shown_command=display, step=items[len(results)])
        return results

    def _shell_script(self, items: list[Step | WriteFile],
                      shown: list[str]) -> tuple[list[CommandResult], CommandResult | None]:
        """(results of the steps run, the raw result when the shell died before a step that should have run)."""
        import secrets

        ex = self.executor
        marker = f"@@kamalpy-{secrets.token_hex(6)}"
        lines, stdin = [], None
        for index, item in enumerate(items):
            if isinstance(item, WriteFile):
                stdin = item.data
                path = _quote(item.path)
                body = f"(umask 077 && cat > {path} && chmod {item.mode:04o} {path})"
                check = True
            else:
                body = "{ " + _rendered(item.command, item.env)[0] + " ; }"
                if item.stdin is None:
                    body += " </dev/null"
                else:
                    stdin = item.stdin
                check = item.check
            end = f"printf '\\n{marker}:{index}:%s\\n' $s"
            lines.append(f"{body}; s=$?; {end}; {end} >&2" + ("; [ $s = 0 ] || exit $s" if check else ""))
        ex.count(self.host)
        errors: list[str] = []  # the markers stream on stderr too: a lost host's error names the step it ran

        def seen(stream: str, text: str) -> None:
            if stream == "stderr":
                errors.append(text)

        def running() -> str:
            done = _split_steps("".join(errors), marker)
            return shown[next((index for index in range(len(shown)) if index not in done), len(shown) - 1)]

        raw = self._run("\n".join(lines), stdin, ex.command_timeout, seen, step=running)
        outs, errs = _split_steps(raw.stdout, marker), _split_steps(raw.stderr, marker)
        results: list[CommandResult] = []
        for index, (item, display) in enumerate(zip(items, shown, strict=True)):
            if index not in outs:
                return results, raw
            status, out = outs[index]
            results.append(CommandResult(self.host, display, status, out, errs.get(index, (0, ""))[1]))
            if status != 0 and (isinstance(item, WriteFile) or item.check):
                break
        return results, None

    def _shown(self, item: Step | WriteFile) -> str:
        if isinstance(item, WriteFile):
            return f"upload {item.path} mode {item.mode:04o} ({len(item.data)} bytes)"
        return _rendered(item.command, item.env)[1]

    def open_stream(self, command: str) -> Stream | None:
        """A long-lived exec channel running ``command`` on the host's pooled connection (raw bytes both ways),
        or None when the transport offers none. For ``kamalpy_run_steps`` plugins; counts as one round trip."""
        connection = self.executor.connection(self.host)
        opener = getattr(connection, "open_stream", None)
        if opener is None:
            return None
        self.executor.count(self.host)
        return opener(command)

    def upload(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        ex = self.executor
        if ex.dry_run:
            ex.output.dry_run(self.host, f"upload {remote_path} mode {mode:04o} ({len(data)} bytes)", kind="upload")
            return
        tag = ex.output.start(self.host, f"upload {remote_path} (mode {mode:04o})")
        started = time.monotonic()
        ex.count(self.host)
        connection = ex.connection(self.host)
        try:
            connection.upload(data, remote_path, mode)
        except TransportError as exc:
            ex.output.abandon(self.host, [tag])
            raise exc.during(f"upload {remote_path}") from None
        except BaseException:
            ex.output.abandon(self.host, [tag])
            raise
        ex.output.finish(self.host, tag, time.monotonic() - started, 0)


def _split_steps(text: str, marker: str) -> dict[int, tuple[int, str]]:
    """``{step: (status, output)}`` from a script's stream, cut at the markers each step printed."""
    found: dict[int, tuple[int, str]] = {}
    position = 0
    for match in _STEP_END.finditer(text):
        if match.group(1) == marker:
            found[int(match.group(2))] = (int(match.group(3)), text[position:match.start()])
            position = match.end()
    return found


LOCAL = "local"


class LocalSession(Session):
    """Commands on the deploying machine (hooks, builds, local registry login), through ``/bin/sh``."""

    def __init__(self, executor: Executor, env: Mapping[str, str] | None = None) -> None:
        super().__init__(executor, LOCAL)
        self.env = dict(env or {})

    def _run(self, command: str, stdin: bytes | None, timeout: float | None,
             on_output: Callable[[str, str], None] | None, step: str = "") -> CommandResult:
        import subprocess

        try:
            proc = subprocess.run(["/bin/sh", "-c", command], input=stdin or b"", capture_output=True,
                                  timeout=timeout, env={**os.environ, **self.env})
        except subprocess.TimeoutExpired as exc:
            raise KamalpyError(f"local: timed out after {timeout}s running: {command}") from exc
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        if on_output:
            on_output("stdout", out)
            on_output("stderr", err)
        return CommandResult(LOCAL, command, proc.returncode, out, err)

    def upload(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        raise KamalpyError("cannot upload to the local machine")

    def _hooked(self, items: list[Step | WriteFile]) -> list[CommandResult] | None:
        return None  # kamalpy_run_steps is about servers: the deploying machine's commands stay with /bin/sh


class Executor:
    """Owns the connection pool of one run."""

    def __init__(self, transport: Transport | None, settings: SshSettings, output: Output, *,
                 dry_run: bool = False, command_timeout: float | None = None, hooks: Hooks | None = None) -> None:
        self.transport = transport
        self.hooks = hooks  # asked to run server steps (kamalpy_run_steps); None: always the shell
        self.settings = settings if settings.warn is not None else replace(settings, warn=output.warn)
        self.output = output
        self.dry_run = dry_run
        self.command_timeout = command_timeout
        self._connections: dict[str, Connection] = {}
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._starts = threading.BoundedSemaphore(max(1, settings.max_concurrent_starts))
        self.round_trips: Counter[str] = Counter()  # commands sent per host (a script counts once)

    def count(self, host: str) -> None:
        with self._lock:
            self.round_trips[host] += 1

    def connection(self, host: str) -> Connection:
        with self._lock:
            host_lock = self._host_locks.setdefault(host, threading.Lock())
        with host_lock:
            if host not in self._connections:
                self._connections[host] = self._connect(host)
            return self._connections[host]

    def _connect(self, host: str) -> Connection:
        assert self.transport is not None, "no transport in a dry run"
        attempts = max(1, self.settings.dns_retries + 1)
        for attempt in range(1, attempts + 1):
            with self._starts:
                try:
                    return self.transport.connect(host, self.settings)
                except TransportError as exc:
                    if attempt == attempts or not any(marker in str(exc) for marker in _DNS_ERRORS):
                        raise
            import random

            delay = min(0.1 * 2 ** (attempt - 1), 2.0) + random.random() * 0.1
            self.output.warn(f"Retrying DNS for {host} (attempt {attempt}/{attempts - 1}) in {delay:.2f}s")
            time.sleep(delay)
        raise AssertionError("unreachable")

    def on(self, hosts: Sequence[str] | Iterable[str], work: Callable[[Session], T]) -> dict[str, T]:
        """Run ``work`` for each host in parallel; raise :class:`HostErrors` naming every failed host."""
        hosts = list(dict.fromkeys(hosts))
        if not hosts:
            return {}
        results: dict[str, T] = {}
        errors: dict[str, BaseException] = {}

        def attempt(session: Session) -> T:
            try:
                return work(session)
            except KamalpyError as exc:
                self.output.host_failed(session.host, exc)  # as it happens, not when the group is done
                raise

        if len(hosts) == 1 or self.dry_run:
            # Dry runs stay sequential so that their output order is stable.
            for host in hosts:
                try:
                    results[host] = attempt(Session(self, host))
                except KamalpyError as exc:
                    errors[host] = exc
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="kamalpy-host") as pool:
                futures = {host: pool.submit(attempt, Session(self, host)) for host in hosts}
                for host, future in futures.items():
                    try:
                        results[host] = future.result()
                    except KamalpyError as exc:
                        errors[host] = exc
        if errors:
            raise HostErrors(errors)
        return results

    def local(self, env: Mapping[str, str] | None = None) -> LocalSession:
        """A session on the deploying machine; ``env`` is added to the process environment."""
        return LocalSession(self, env)

    def on_each(self, hosts: Iterable[str], work: Callable[[Session], T]) -> dict[str, T]:
        """One host after another (for steps Kamal runs sequentially)."""
        return {host: self.on([host], work)[host] for host in hosts}

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            try:
                connection.close()
            except Exception:  # closing is best effort
                pass
