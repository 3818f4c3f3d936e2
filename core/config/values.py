"""Load-time checks of values Kamal only uses later: wrong types, and values unsafe in a remote shell.

Kamal accepts some values when the configuration loads and fails on them midway through a deploy
(``ssh.port: x``, ``boot.limit: x``, ``cmd: false``, a ``files:`` entry without ``:``); kamalpy refuses
them here, before any lock or server is touched, naming the key.

Kamal also puts some values into the remote shell command line unquoted (host names, image, registry
server, volumes, label and env keys, accessory paths, version, destination, ...). Each kind of value has
a conservative character class that covers what Docker, SSH and the file system accept for it; a value
outside it is refused here, naming the key, so every value that passes keeps Kamal's exact string and
can never run a command. ``cmd`` is a shell command by design (the user's own) and stays free-form.
docs/moving-from-kamal.md lists the classes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamalpy.errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration


@dataclass(frozen=True)
class Kind:
    """What can pass safely for one kind of value: a pattern over the whole value, and a length bound."""

    description: str
    pattern: re.Pattern[str]
    max_length: int = 255

    def allows(self, value: str) -> bool:
        return len(value) <= self.max_length and self.pattern.fullmatch(value) is not None


# Nothing in these classes is special to sh: no space, quote, `;&|<>()`, backquote, `\`, glob or newline,
# and no leading `-` (which a command would read as an option).
DESTINATION = Kind("letters, digits and . _ - (at most 100, not starting with . or -)",
                   re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"), 100)
VERSION = Kind("a Docker tag: letters, digits and . _ - (at most 128, not starting with . or -)",
               re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"), 128)


def refuse(key: str, value: Any, kind: Kind) -> ConfigurationError:
    shown = str(value)
    shown = shown if len(shown) <= 60 else shown[:60] + "..."
    return ConfigurationError(f"{key}: {shown!r} cannot be passed safely to a remote shell; "
                              f"use {kind.description}")


def check(key: str, value: Any, kind: Kind) -> None:
    """Refuse ``value`` (as Ruby's ``to_s`` shows it) unless ``kind`` allows it; nothing to check for nil."""
    if value is None:
        return
    text = "true" if value is True else "false" if value is False else str(value)
    if not kind.allows(text):
        raise refuse(key, text, kind)


def check_destination(destination: str | None) -> None:
    """``-d``/``--destination``: also a file name (``deploy.DEST.yml``) and part of container names."""
    if destination is not None and not DESTINATION.allows(destination):
        raise refuse("-d/--destination", destination, DESTINATION)


def check_version(version: str | None, key: str = "--version") -> None:
    """``--version`` or ``VERSION``: a Docker tag (and part of container names)."""
    if version is not None and not VERSION.allows(version):
        raise refuse(key, version, VERSION)


# ----- the whole configuration -----

def check_configuration(config: Configuration) -> None:
    """Every check of this module, in the order of the configuration's keys."""
    _check_types(config)
    for accessory in config.accessories:
        for key in ("files", "directories"):
            _check_mounted_paths(f"{accessory.context}/{key}", accessory.raw.get(key), files=key == "files")
    if config.destination is not None:
        check_destination(config.destination)
    config.secrets.check_readable()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _check_mounted_paths(key: str, entries: Any, *, files: bool) -> None:
    """``files:``/``directories:``: ``local:remote[:options]`` or a hash with both."""
    for index, entry in enumerate(entries or []):
        where = f"{key}/{index}"
        if isinstance(entry, Mapping):
            local, remote = entry.get("local"), entry.get("remote")
        else:
            parts = str(entry).split(":", 2)
            local, remote = parts[0], (parts[1] if len(parts) > 1 else None)
        if local is None or remote is None or str(local) == "" or str(remote) == "":
            raise ConfigurationError(f"{where}: should be local:remote[:options] or a hash with local and remote")
        if files:
            _check_local_file(where, str(local))


def _check_local_file(key: str, local: str) -> None:
    if Path(local).is_dir():
        raise ConfigurationError(f"{key}: {local} is a directory, not a file (use directories: for directories)")


# ----- types Kamal's schema lets through and fails on later -----

_PORT = re.compile(r"\s*\d{1,5}\s*")
_LIMIT = re.compile(r"\s*\d+\s*%?\s*")


def _check_types(config: Configuration) -> None:
    raw = config.raw
    port = _mapping(raw.get("ssh")).get("port")
    if port is not None and (isinstance(port, bool) or not _PORT.fullmatch(str(port)) or not 0 < int(port) < 65536):
        raise ConfigurationError(f"ssh/port: should be a port number (1-65535), not {port!r}")
    limit = _mapping(raw.get("boot")).get("limit")
    if limit is not None and (isinstance(limit, (bool, float)) or not _LIMIT.fullmatch(str(limit))
                              or int(str(limit).strip().rstrip("%")) < 1):
        raise ConfigurationError(f"boot/limit: should be a number of hosts or a percentage like 25%, not {limit!r}")
    for role in config.roles:
        _check_command(f"servers/{role.name}/cmd", role.settings.get("cmd"))
    for accessory in config.accessories:
        _check_command(f"{accessory.context}/cmd", accessory.raw.get("cmd"))


def _check_command(key: str, value: Any) -> None:
    # A shell command by design (the user's own); only its type is checked.
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
        raise ConfigurationError(f"{key}: should be a string")
