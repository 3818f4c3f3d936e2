"""Built-in plugin: the ``live`` view of a run on a terminal (:mod:`kamalpy.live_view`).

It also ends the view's region when a command is over, before the CLI prints a final ``ERROR:`` line.
"""

from __future__ import annotations

from typing import Any

from kamalpy.live_view import LIVE, LiveView
from kamalpy.plugin import hookimpl


@hookimpl
def kamalpy_output_views() -> dict[str, Any]:
    return {LIVE: LiveView}


@hookimpl(trylast=True)
def kamalpy_after_command(command: Any, error: BaseException | None) -> None:
    from kamalpy.cli.base import current_run

    current_run().end_output()
