"""The ``engine_api`` plugin: the Docker steps of kamalpy's flows through the Docker Engine API.

Per host, ONE exec channel on the run's SSH connection runs ``docker system dial-stdio``; the steps that
:mod:`kamalpy_engine_api.translate` understands become HTTP requests over it, the others run through the
shell in order (:meth:`Session.run_in_shell`, consecutive ones in one round trip). Turn it off with
``--disable-plugin engine_api``.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from kamalpy.plugin import CommandResult, Session, Step, TransportError, WriteFile, hookimpl, render, shell_quote_single
from kamalpy_engine_api.http import HttpClient, ProtocolError
from kamalpy_engine_api.translate import Fallback, Outcome, Plan, Reply, translate

DIAL = "docker system dial-stdio"
_engines: weakref.WeakKeyDictionary[Any, dict[str, Engine | None]] = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


class Engine:
    """The Docker Engine API of one host, over its dial-stdio channel (one request at a time)."""

    def __init__(self, session: Session) -> None:
        self.host = session.host
        self.busy = threading.Lock()
        self.stream: Any = session.open_stream(DIAL)
        if self.stream is None:
            raise Fallback  # the transport has no long-lived channels
        self.stream.settimeout(session.executor.command_timeout)
        self.http = HttpClient(self.stream)
        try:
            ping = self.http.request("GET", "/_ping")
        except (OSError, EOFError, ProtocolError):
            self.close()
            raise Fallback from None  # no dial-stdio there (an old docker CLI), no daemon: the shell it is
        if ping.status != 200:
            self.close()
            raise Fallback

    def close(self) -> None:
        try:
            self.stream.close()
        except Exception:  # closing is best effort
            pass


def engine_for(session: Session) -> Engine | None:
    """The host's engine, opened on first use; None where it cannot be (then the shell runs everything)."""
    with _engines_lock:
        hosts = _engines.setdefault(session.executor, {})
        if session.host in hosts:
            return hosts[session.host]
        hosts[session.host] = None  # a second thread meanwhile uses the shell
    try:
        engine: Engine | None = Engine(session)
    except Fallback:
        engine = None
    with _engines_lock:
        hosts[session.host] = engine
    return engine


class HostApi:
    """What a :data:`Plan` uses: requests over the engine, files read through the host's shell."""

    def __init__(self, engine: Engine, session: Session) -> None:
        self.engine = engine
        self.session = session

    def call(self, method: str, path: str, query: Any = None, body: Any = None, headers: Any = None) -> Reply:
        try:
            return self.engine.http.request(method, path, query, body, headers)
        except (OSError, EOFError, ProtocolError) as exc:
            # Whether dockerd did it is unknown: the step fails, and the host's engine is not used again.
            with _engines_lock:
                _engines.get(self.session.executor, {})[self.session.host] = None
            self.engine.close()
            raise TransportError(self.session.host, f"Docker Engine API stream lost ({exc or type(exc).__name__}) "
                                                    f"during {method} {path}") from None

    def read_file(self, path: str) -> bytes | None:
        target = '"${DOCKER_CONFIG:-$HOME/.docker}/config.json"' if path == ".docker/config.json" \
            else shell_quote_single(path)
        result = self.session.run_in_shell([Step(f"cat {target}", check=False)])[0]
        if not result.ok or "\ufffd" in result.stdout:
            return None
        return result.stdout.encode()


def _checked(step: Step | WriteFile) -> bool:
    return isinstance(step, WriteFile) or step.check


def _plan(step: Step | WriteFile, files: dict[str, bytes]) -> Plan | None:
    if isinstance(step, WriteFile):
        return None
    if step.env or step.stdin is not None or isinstance(step.command, str):
        return None
    try:
        line = render(step.command)
    except ValueError:
        return None
    return translate(line, files)


@hookimpl
def kamalpy_run_steps(session: Session, steps: list[Step | WriteFile]) -> list[CommandResult] | None:
    files: dict[str, bytes] = {}
    plans: list[Plan | None] = []
    for step in steps:
        plans.append(_plan(step, files))
        if isinstance(step, WriteFile):
            files[step.path] = step.data
    if not any(plans):
        return None  # nothing for the API: the shell runs the script exactly as without the plugin
    engine = engine_for(session)
    if engine is None or not engine.busy.acquire(blocking=False):
        return None  # no engine on this host, or another role's boot is using it: the shell
    try:
        return _run(session, engine, steps, plans)
    finally:
        engine.busy.release()


def _run(session: Session, engine: Engine, steps: list[Step | WriteFile],
         plans: list[Plan | None]) -> list[CommandResult]:
    api = HostApi(engine, session)
    results: list[CommandResult] = []
    i = 0
    while i < len(steps):
        if plans[i] is None:
            j = i
            while j < len(steps) and plans[j] is None:
                j += 1
            batch = session.run_in_shell(steps[i:j])
            results += batch
            if len(batch) < j - i or (batch and not batch[-1].ok and _checked(steps[i + len(batch) - 1])):
                return results
            i = j
            continue
        try:
            outcome: Outcome | None = plans[i](api)  # type: ignore[misc]
        except Fallback:
            outcome = None
        if outcome is None:
            result = session.run_in_shell([steps[i]])[0]
        else:
            shown = render(steps[i].command, redact=True)  # type: ignore[union-attr]
            result = CommandResult(session.host, shown, outcome.status, outcome.stdout, outcome.stderr)
        results.append(result)
        if not result.ok and _checked(steps[i]):
            return results
        i += 1
    return results
