"""Kamal's deploy lock: a directory on the primary host, taken around every modifying command.

Nested uses share one lock, and a process started with ``KAMAL_LOCK=true`` (a kamal or kamalpy run
from a hook of a run that holds the lock) treats it as held. ``--lock-wait`` polls for it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kamalpy.commands import lock as lock_commands
from kamalpy.commands import server as server_commands
from kamalpy.errors import HostErrors, KamalpyError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander

LOCK_ENV = "KAMAL_LOCK"


class LockError(KamalpyError):
    pass


class DeployLock:
    def __init__(self, commander: Commander) -> None:
        self.commander = commander
        self.holding = os.environ.get(LOCK_ENV) == "true"

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Take the lock for the block unless this process already holds it; always try to release."""
        if self.holding:
            yield
            return
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

    def ensure_run_directory(self) -> None:
        self.commander.on(self.commander.hosts, lambda s: s.execute(server_commands.ensure_run_directory()))

    def acquire(self, message: str, say: str | None = None, *, wait: bool = True) -> None:
        """Take the lock; with ``--lock-wait`` (and ``wait``) poll while an automatic lock holds it.

        ``lock acquire`` passes ``wait=False``: like Kamal's, it never waits.
        """
        commander = self.commander
        self.ensure_run_directory()
        if wait and commander.run.options.lock_wait:
            self._acquire_waiting(message)
        else:
            if say:
                commander.output.say(say)
            if not self._try_acquire(message):
                commander.output.error("Deploy lock already in place!")
                commander.output.error(self.status_text())
                raise LockError("Deploy lock found. Run 'kamalpy lock help' for more information")
        self.holding = True

    def _try_acquire(self, message: str) -> bool:
        """One attempt on the primary host: False when someone holds the lock."""
        commander = self.commander
        config = commander.config
        command = lock_commands.acquire(config, message, config.version, locked_by=commander.locked_by)
        try:
            commander.on_primary(lambda s: s.execute(command, quiet=True))
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
