"""A test plugin: the ``recording`` transport, paramiko's with every command it sends to a server written
to the file named by ``RECORDING_TRANSPORT_LOG`` (one command per record, records separated by NUL).

Use it in a subprocess run of kamalpy with ``KAMALPY_PLUGINS=recording_transport``,
``KAMALPY_TRANSPORT=recording`` and this directory on ``PYTHONPATH``; read the file with :func:`commands`.
Standard input (where a password belongs) and uploaded data are not recorded; upload paths are.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from kamalpy.builtin_plugins.transport_paramiko import paramiko_transport
from kamalpy.plugin import hookimpl

LOG_ENV = "RECORDING_TRANSPORT_LOG"
_lock = threading.Lock()  # hosts run in threads


def _record(text: str) -> None:
    with _lock, open(os.environ[LOG_ENV], "a") as log:
        log.write(text + "\0")


def commands(path: Path) -> list[str]:
    """The commands recorded in ``path`` (none when the file does not exist)."""
    return path.read_text().split("\0")[:-1] if path.exists() else []


class _Connection:
    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.host = inner.host

    def run(self, command: str, **kwargs: Any) -> Any:
        _record(command)
        return self._inner.run(command, **kwargs)

    def upload(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        _record(f"upload {remote_path}")
        self._inner.upload(data, remote_path, mode)

    def __getattr__(self, name: str) -> Any:  # forward_remote, close...
        return getattr(self._inner, name)


class RecordingTransport:
    def __init__(self) -> None:
        self._inner = paramiko_transport()

    def connect(self, host: str, settings: Any) -> _Connection:
        return _Connection(self._inner.connect(host, settings))


@hookimpl
def kamalpy_transports() -> dict[str, Any]:
    return {"recording": RecordingTransport}
