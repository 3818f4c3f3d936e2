"""Audit lines appended to ``.kamal/<service>[-<destination>]-audit.log`` on each host touched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from kamalpy.commands.base import Command, append, combine, file_join, make_directory
from kamalpy.commands.tags import VERSION_TAGS, tags, tags_to_s
from kamalpy.config.args import escape_shell_value

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

REVEAL_LINES = 50


def audit_log_file(config: Configuration) -> str:
    name = "-".join(p for p in (config.service, config.destination, "audit.log") if p is not None)
    return file_join(config.run_directory, name)


def audit_line(config: Configuration, line: str, *, performer: str, recorded_at: str | None = None,
               details: Mapping[str, object] | None = None) -> str:
    """``[<time>] [<performer>] [<destination>]? [<detail>]... <line>`` (version and service left out)."""
    found = tags(config, performer=performer, recorded_at=recorded_at, details=details, without=VERSION_TAGS)
    return f"{tags_to_s(found)} {line}"


def record(config: Configuration, line: str, *, performer: str, recorded_at: str | None = None,
           details: Mapping[str, object] | None = None) -> Command:
    """Append an audit line (``details`` such as ``{"role": "web"}`` become tags after the destination).

    ``performer`` is ``git config user.email`` or else ``whoami``, worked out once by the caller.
    """
    text = audit_line(config, line, performer=performer, recorded_at=recorded_at, details=details)
    return combine(make_directory(config.run_directory),
                   append(["echo", escape_shell_value(text)], audit_log_file(config)))


def reveal(config: Configuration) -> Command:
    """The last lines of the audit log (``kamal audit``)."""
    return ["tail", "-n", str(REVEAL_LINES), audit_log_file(config)]
