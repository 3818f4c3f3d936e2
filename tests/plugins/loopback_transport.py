"""A test plugin: the ``loopback`` transport, whose "hosts" are directories on this machine.

Each command runs through ``/bin/sh`` in ``$LOOPBACK_ROOT/<host>`` after a delay: ``LOOPBACK_DELAYS`` is
``host=seconds,...`` (``LOOPBACK_DELAY`` seconds, default 0.2, for a host not named), so a test can make one
host the slowest. A host named in ``LOOPBACK_REFUSE`` (comma-separated) refuses the connection, as a server
whose sshd is down does. With ``LOOPBACK_LOG`` set, each round trip appends ``host<TAB>command`` (newlines as
spaces) to that file.
Use it in a subprocess run of kamalpy with ``KAMALPY_PLUGINS=loopback_transport``,
``KAMALPY_TRANSPORT=loopback`` and this directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kamalpy.plugin import hookimpl
from kamalpy.transport import CommandResult, TransportError

ROOT_ENV, DELAYS_ENV, DELAY_ENV = "LOOPBACK_ROOT", "LOOPBACK_DELAYS", "LOOPBACK_DELAY"
REFUSE_ENV, LOG_ENV = "LOOPBACK_REFUSE", "LOOPBACK_LOG"
DEFAULT_DELAY = 0.2
_log_lock = threading.Lock()  # hosts run in threads


def _delay(host: str) -> float:
    pairs = (item.split("=", 1) for item in os.environ.get(DELAYS_ENV, "").split(",") if "=" in item)
    default = float(os.environ.get(DELAY_ENV, DEFAULT_DELAY))
    return {name: float(seconds) for name, seconds in pairs}.get(host, default)


class LoopbackConnection:
    def __init__(self, host: str) -> None:
        self.host = host
        self.home = Path(os.environ[ROOT_ENV]) / host
        self.home.mkdir(parents=True, exist_ok=True)

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            on_output: Callable[[str, str], None] | None = None) -> CommandResult:
        if os.environ.get(LOG_ENV):
            with _log_lock, open(os.environ[LOG_ENV], "a") as log:
                log.write(f"{self.host}\t{command.replace(chr(10), ' ')}\n")
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
        if host in os.environ.get(REFUSE_ENV, "").split(","):
            # The words of the paramiko transport for a refused connection.
            raise TransportError(host, "could not connect to port 22 (Connection refused)")
        return LoopbackConnection(host)


@hookimpl
def kamalpy_transports() -> dict[str, Any]:
    return {"loopback": LoopbackTransport}
