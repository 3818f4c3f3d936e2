"""Built-in plugin: the ``paramiko`` transport (implementation in ``ssh_paramiko``).

paramiko takes about 120 ms to import, so it is imported only when a connection is first needed.
"""

from __future__ import annotations

from typing import Any

from kamalpy.plugin import hookimpl


def paramiko_transport() -> Any:
    from kamalpy.builtin_plugins.ssh_paramiko import ParamikoTransport

    return ParamikoTransport()


@hookimpl
def kamalpy_transports() -> dict[str, Any]:
    return {"paramiko": paramiko_transport}
