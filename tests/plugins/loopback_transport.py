"""A test plugin: the ``loopback`` transport, whose "hosts" are directories on this machine.

Each command runs through ``/bin/sh`` in ``$LOOPBACK_ROOT/<host>`` after a delay: ``LOOPBACK_DELAYS`` is
``host=seconds,...`` (0.2 s for a host not named), so a test can make one host the slowest.
Use it in a subprocess run of kamalpy with ``KAMALPY_PLUGINS=loopback_transport``,
``KAMALPY_TRANSPORT=loopback`` and this directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kamalpy.plugin import hookimpl
from kamalpy.transport import CommandResult

ROOT_ENV, DELAYS_ENV = "LOOPBACK_ROOT", "LOOPBACK_DELAYS"
DEFAULT_DELAY = 0.2


def _delay(host: str) -> float:
    pairs = (item.split("=", 1) for item in os.environ.get(DELAYS_ENV, "").split(",") if "=" in item)
    return {name: float(seconds) for name, seconds in pairs}.get(host, DEFAULT_DELAY)


class LoopbackConnection:
    def __init__(self, host: str) -> None:
        self.host = host
        self.home = Path(os.environ[ROOT_ENV]) / host
        self.home.mkdir(parents=True, exist_ok=True)

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            on_output: Callable[[str, str], None] | None = None) -> CommandResult:
        time.sleep(_delay(self.host))
        proc = subprocess.run(["/bin/sh", "-c", command], cwd=self.home, input=stdin or b"", capture_output=True,
                              timeout=timeout)
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        if on_output:
            on_output("stdout", out)
            on_output("stderr", err)
        return CommandResult(self.host, command, proc.returncode, out, err)

    def upload(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        path = self.home / remote_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)

    def close(self) -> None:
        pass


class LoopbackTransport:
    def connect(self, host: str, settings: Any) -> LoopbackConnection:
        return LoopbackConnection(host)


@hookimpl
def kamalpy_transports() -> dict[str, Any]:
    return {"loopback": LoopbackTransport}
