"""pytest plugin: the ``sandbox`` marker and session fixtures giving tests real SSH + Docker servers.

Load it from conftest.py with ``pytest_plugins = ["sandbox_fixtures"]``. Tests marked ``sandbox`` are
skipped, with the reason, when the machine cannot run the sandbox (not Linux, not root, tools missing:
run scripts/sandbox-deps).

- ``sandbox``: one sandbox for the whole session (``KAMALPY_SANDBOX_SERVERS`` servers, default 3),
  a :class:`kamalpy.builtin_plugins.sandbox.handle.Sandbox`. A healthy sandbox that is already up
  (``kamalpy sandbox up`` by hand) is reused and left up; otherwise the fixture brings one up and
  takes it down at the end, unless ``KAMALPY_SANDBOX_KEEP=1``.
- ``sandbox_spec``: the naming of that sandbox (prefix, dir, subnet), from the environment.

Two sessions on one machine take turns: the ``sandbox`` fixture holds a lock (``<dir>.lock``) for
the whole session, so a second session waits instead of tearing the first one's servers down.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time

import pytest

SERVERS_ENV = "KAMALPY_SANDBOX_SERVERS"
KEEP_ENV = "KAMALPY_SANDBOX_KEEP"
LOCK_WAIT = 1800  # seconds another session may hold the sandbox before this one gives up


def sandbox_skip_reason() -> str | None:
    """Why this machine cannot run the sandbox, or None."""
    if not sys.platform.startswith("linux"):
        return "the sandbox needs Linux"
    if os.geteuid() != 0:
        return "the sandbox needs root"
    from kamalpy.builtin_plugins.sandbox.system import missing_tools

    missing = missing_tools()
    if missing:
        return f"the sandbox needs {', '.join(missing)} (run scripts/sandbox-deps)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sandbox: needs the sandbox servers (Linux, root, scripts/sandbox-deps); skipped otherwise")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("sandbox")]
    if not marked:
        return
    reason = sandbox_skip_reason()
    if reason:
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def sandbox_spec():
    from kamalpy.builtin_plugins.sandbox.state import Spec

    return Spec.from_env()


@pytest.fixture(scope="session")
def sandbox(sandbox_spec):
    """Servers reachable over SSH, each with its own dockerd, plus a registry and base images."""
    reason = sandbox_skip_reason()
    if reason:
        pytest.skip(reason)
    count = int(os.environ.get(SERVERS_ENV) or 3)
    with _session_lock(sandbox_spec):
        yield from _sandbox(sandbox_spec, count)


def _sandbox(sandbox_spec, count):
    from kamalpy.builtin_plugins.sandbox import lifecycle
    from kamalpy.builtin_plugins.sandbox.handle import Sandbox

    current = lifecycle.status(sandbox_spec)
    # A sandbox made by an older kamalpy lacks newer images (app v4): make it again.
    if current and current["ok"] and len(current["servers"]) >= count and "app_v4" in (current.get("images") or {}):
        yield Sandbox.load(sandbox_spec)  # brought up by hand: reuse, and leave it up
        return
    if current is not None:
        lifecycle.down(sandbox_spec)  # unhealthy or too small
    lifecycle.up(sandbox_spec, count)
    try:
        yield Sandbox.load(sandbox_spec)
    finally:
        if os.environ.get(KEEP_ENV) != "1":
            lifecycle.down(sandbox_spec)


@contextlib.contextmanager
def _session_lock(spec):
    """One pytest session at a time per sandbox: a second one waits instead of tearing the first's down."""
    with open(f"{spec.dir}.lock", "w") as lock:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session has held the sandbox ({spec.dir}.lock) for {LOCK_WAIT} s")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
