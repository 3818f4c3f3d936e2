"""At most ``x-kamalpy.pull_limit`` hosts pull an image at once, in every command that pulls on many hosts.

Kamal pulls on every host at once. One registry answering 100 hosts at once timed a pull out (docs/deploy.md,
"Pulls on many hosts"), so the round trip that pulls takes a slot first; the other hosts wait for one. The slots
are shared by the whole run. Once a pull has failed, the hosts still waiting do not pull: the command stops
with the failed host named, as it would after the pulls in flight end. kamalpy bounds pulls; it does not
retry them (a retried pull that timed out would time out again while the registry is overloaded).

A deploy to at most ``pull_limit`` hosts waits for nothing and sends the same round trips as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class PullSlots:
    """The run's pull slots; each command that pulls on several hosts takes them through one :meth:`batch`."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._slots = threading.BoundedSemaphore(self.limit)
        self._lock = threading.Lock()
        self.busy = 0  # pulls in flight now
        self.most = 0  # the most pulls in flight at once in this run (tests read it)

    def batch(self) -> PullBatch:
        """The pulls of one step on its hosts: a failure there stops that step's waiting hosts only."""
        return PullBatch(self)

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        with self._slots:
            with self._lock:
                self.busy += 1
                self.most = max(self.most, self.busy)
            try:
                yield
            finally:
                with self._lock:
                    self.busy -= 1


class PullBatch:
    def __init__(self, slots: PullSlots) -> None:
        self._slots = slots
        self._failed = threading.Event()
        self.limit = slots.limit

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    @contextlib.contextmanager
    def slot(self) -> Iterator[bool]:
        """Hold a slot while the block pulls. Yields False when a pull of this batch failed before this
        host's turn came: the block then pulls nothing. An exception out of the block fails the batch."""
        with self._slots._held():
            if self._failed.is_set():
                yield False
                return
            try:
                yield True
            except BaseException:
                self._failed.set()
                raise
