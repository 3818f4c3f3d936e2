"""Commands about kamal's directory on a server (``Kamal::Commands::Server``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kamalpy.commands.base import Command, make_directory, pipe, remove_directory
from kamalpy.config.model import RUN_DIRECTORY

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration


def ensure_run_directory() -> Command:
    return make_directory(RUN_DIRECTORY)


def remove_app_directory(config: Configuration) -> Command:
    return remove_directory(config.app_directory)


def app_directory_count(config: Configuration) -> Command:
    """How many apps live on the host (``kamal proxy remove`` refuses while others remain)."""
    return pipe(["ls", config.apps_directory], ["wc", "-l"])
