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
from kamalpy.errors import KamalpyError
from kamalpy.execution import HostErrors

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

    def acquire(self, message: str, say: str | None = None) -> None:
        commander = self.commander
        config = commander.config
        self.ensure_run_directory()
        options = commander.run.options
        deadline = time.monotonic() + options.lock_wait_timeout
        announced = False
        while True:
            if say:
                commander.output.say(say)
            command = lock_commands.acquire(config, message, config.version, locked_by=commander.locked_by)
            try:
                commander.on_primary(lambda s, c=command: s.execute(c, quiet=True))
                self.holding = True
                return
            except HostErrors as exc:
                if lock_commands.HELD_MARKER not in str(exc):
                    raise
            details = self.status_text()
            if not options.lock_wait:
                commander.output.error("Deploy lock already in place!")
                commander.output.error(details)
                raise LockError("Deploy lock found. Run 'kamalpy lock help' for more information")
            held = lock_commands.parse_details(details)
            if held is not None and not held.automatic:
                commander.output.error(details)
                raise LockError("Deploy lock held manually, not waiting")
            if time.monotonic() >= deadline:
                raise LockError("Timed out waiting for deploy lock")
            if not announced:
                commander.output.say(f"Waiting for the deploy lock...\n{details}")
                announced = True
            say = None
            time.sleep(options.lock_wait_interval)

    def release(self) -> None:
        self.commander.output.say("Releasing the deploy lock...")
        self.commander.on_primary(lambda s: s.execute(lock_commands.release(self.commander.config), quiet=True))
        self.holding = False

    def status_text(self) -> str:
        """The lock details, decoded; raises HostErrors (with ``No such file``) when there is no lock."""
        return self.commander.on_primary(lambda s: s.capture(lock_commands.status(self.commander.config),
                                                             quiet=True))
