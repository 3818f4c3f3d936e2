"""Kamal's deploy lock: a directory on the primary host, taken around every modifying command.

Nested uses share one lock, and a process started with ``KAMAL_LOCK=true`` (a kamal or kamalpy run
from a hook of a run that holds the lock) treats it as held. ``--lock-wait`` polls for it.

A deploy checks the lock read-only before it pulls (:meth:`DeployLock.checked`), in the pull's first
round trip to the primary host, so that a deploy that finds the lock held changes no server. The
``mkdir -p .kamal`` that Kamal runs on every host before taking the lock rides in that same first
round trip of the pull to each app host (after the check), so taking the lock costs no round trip there. SIGTERM and
SIGHUP while the lock is held end the run as Ctrl-C does: the lock is released on the way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

from kamalpy.commands import lock as lock_commands
from kamalpy.commands import server as server_commands
from kamalpy.errors import HostErrors, KamalpyError, Terminated
from kamalpy.execution import Step
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander

LOCK_ENV = "KAMAL_LOCK"
FOUND = "Deploy lock found. Run 'kamalpy lock help' for more information"  # Kamal's text, then our hint
RELEASING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class LockError(KamalpyError):
    pass


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` (a KeyboardInterrupt) so that the lock is released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    # A signal ignored from the start stays ignored: `nohup kamalpy deploy` must survive the hangup.
    previous = {signum: signal.signal(signum, handler) for signum in RELEASING_SIGNALS
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


class DeployLock:
    def __init__(self, commander: Commander) -> None:
        self.commander = commander
        self.holding = os.environ.get(LOCK_ENV) == "true"
        self._pending: str | None = None  # the primary host, while a read-only check waits for its round trip
        self._directory_pending: set[str] = set()  # hosts whose `mkdir -p .kamal` waits for their first round trip
        self._directory_made: set[str] = set()  # hosts where this run made it already
        self._check_step: Step | None = None  # the check as sent with a first round trip: its failure is "found"

    @contextlib.contextmanager
    def hold(self, directory_later: Iterable[str] = ()) -> Iterator[None]:
        """Take the lock for the block unless this process already holds it; always try to release.

        ``directory_later``: hosts (not the primary) whose ``mkdir -p .kamal`` the block sends in its first
        round trip to them, through :meth:`first_steps` (rollback: with its version check).
        """
        if self.holding:
            yield
            return
        with _signals_interrupt():
            self._directory_pending.update(set(directory_later) - {self.commander.primary_host})
            self.acquire(lock_commands.AUTOMATIC_MESSAGE, say="Acquiring the deploy lock...")
            try:
                yield
            except BaseException:
                try:
                    self.release()
                except KamalpyError as exc:
                    self.commander.output.error(f"Error releasing the deploy lock: {exc}")
                raise
            self.release()

    @contextlib.contextmanager
    def checked(self) -> Iterator[None]:
        """Fail with "Deploy lock found" before the block changes anything if someone holds the lock.

        The check rides on the block's first round trip to the primary host (see :meth:`first_steps`);
        if the block never reaches the primary, it is a round trip of its own, made first.
        """
        commander = self.commander
        if self.holding:
            yield
            return
        self._directory_pending = set(commander.specifics.app_hosts)
        try:
            with self._checking():
                yield
        finally:
            self._directory_pending = set()

    @contextlib.contextmanager
    def _checking(self) -> Iterator[None]:
        commander = self.commander
        if commander.run.options.lock_wait:  # --lock-wait: wait at the lock, not stop here
            yield
            return
        primary = commander.primary_host
        if primary not in commander.specifics.app_hosts:
            self._check()
            yield
            return
        self._pending = primary
        try:
            yield
        except HostErrors as exc:
            failed = exc.errors.get(primary)
            if isinstance(failed, CommandFailed) and failed.step is not None and failed.step is self._check_step:
                self._found(failed.result.stdout.strip())
            raise
        finally:
            unsent, self._pending = self._pending, None
        if unsent:
            self._check()

    def first_steps(self, host: str) -> list[Step]:
        """What :meth:`checked` waits to send in the first round trip to ``host``: the read-only check (primary),
        then the run directory the lock needs (it goes after the check: a held lock writes nothing)."""
        steps = []
        if host == self._pending:
            self._pending = None
            self._check_step = Step(lock_commands.check(self.commander.config), quiet=True)
            steps.append(self._check_step)
        if host in self._directory_pending:
            self._directory_pending.discard(host)
            self._directory_made.add(host)  # a failure of this round trip ends the run: no lock is taken then
            steps.append(Step(server_commands.ensure_run_directory()))
        return steps

    def _check(self) -> None:
        try:
            self.commander.on_primary(lambda s: s.execute(lock_commands.check(self.commander.config), quiet=True))
        except HostErrors as exc:
            failed = next(iter(exc.errors.values()))
            if isinstance(failed, CommandFailed):  # the check fails only when the lock directory exists
                self._found(failed.result.stdout.strip())
            raise

    def _found(self, details: str) -> None:
        self.commander.output.error("Deploy lock already in place!")
        self.commander.output.error(details)
        raise LockError(self.found_message())

    def found_message(self) -> str:
        """Kamal's words first; then how to clear a lock that a killed deploy left behind."""
        destination = self.commander.config.destination
        release = "kamalpy lock release" + (f" -d {destination}" if destination else "")
        return (f"{FOUND} (no deploy running? A killed deploy leaves its lock: "
                f"check with 'kamalpy lock status', clear it with '{release}')")

    def ensure_run_directory(self, *, but: Iterable[str] = ()) -> None:
        """Kamal's ``mkdir -p .kamal`` on every host, except where this run made it or sends it later (and
        ``but``: the primary host, where it goes with the lock's acquire)."""
        skip = {*self._directory_made, *self._directory_pending, *but}
        hosts = [host for host in self.commander.hosts if host not in skip]
        self.commander.on(hosts, lambda s: s.execute(server_commands.ensure_run_directory()))

    def acquire(self, message: str, say: str | None = None, *, wait: bool = True) -> None:
        """Take the lock; with ``--lock-wait`` (and ``wait``) poll while an automatic lock holds it.

        ``lock acquire`` passes ``wait=False``: like Kamal's, it never waits.
        """
        commander = self.commander
        self.ensure_run_directory(but=[commander.primary_host])
        if wait and commander.run.options.lock_wait:
            self._acquire_waiting(message)
        else:
            if say:
                commander.output.say(say)
            if not self._try_acquire(message):
                self._found(self.status_text())
        self.holding = True

    def _try_acquire(self, message: str) -> bool:
        """One attempt on the primary host: False when someone holds the lock."""
        commander = self.commander
        config = commander.config
        command = lock_commands.acquire(config, message, config.version, locked_by=commander.locked_by)
        primary = commander.primary_host
        # The primary's `mkdir -p .kamal` (Kamal's, before the acquire) goes with it: one round trip.
        directory = [] if primary in self._directory_made else [Step(server_commands.ensure_run_directory())]
        self._directory_made.add(primary)
        try:
            commander.on_primary(lambda s: s.script([*directory, Step(command, quiet=True)]))
            return True
        except HostErrors as exc:
            if lock_commands.HELD_MARKER not in str(exc):
                raise
            return False

    def _acquire_waiting(self, message: str) -> None:
        """Kamal's ``acquire_lock_with_wait``: show the holder once, give up at once on a manual lock."""
        output = self.commander.output
        options = self.commander.run.options
        timeout, interval = options.lock_wait_timeout, options.lock_wait_interval
        deadline = time.monotonic() + timeout
        shown = False
        output.say(f"Acquiring the deploy lock (waiting up to {timeout:g}s)...")
        while not self._try_acquire(message):
            if not shown:
                details = self.status_text()
                output.say("Deploy lock is held by:")
                output.error(details)
                # Kamal's test: only a lock taken automatically by a running command is worth waiting for.
                if lock_commands.AUTOMATIC_MESSAGE not in details:
                    raise LockError("Deploy lock held manually, not waiting. "
                                    "Run 'kamalpy lock help' for more information")
                shown = True
            remaining = int(deadline - time.monotonic())
            if remaining <= 0:
                output.error(f"Timed out after {timeout:g}s waiting for the deploy lock")
                raise LockError("Timed out waiting for deploy lock")
            output.say(f"Retrying in {interval:g}s ({remaining}s remaining)...")
            time.sleep(min(interval, remaining))

    def release(self) -> None:
        self.commander.output.say("Releasing the deploy lock...")
        self.commander.on_primary(lambda s: s.execute(lock_commands.release(self.commander.config), quiet=True))
        self.holding = False

    def status_text(self) -> str:
        """The lock details, decoded; raises HostErrors (with ``No such file``) when there is no lock."""
        return self.commander.on_primary(lambda s: s.capture(lock_commands.status(self.commander.config),
                                                             quiet=True))
