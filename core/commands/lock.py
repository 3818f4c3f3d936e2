"""The deploy lock: a directory on the primary host holding base64-encoded details.

``mkdir`` is atomic, so creating ``.kamal/lock-<service>[-<destination>]`` is the lock; a failure
mentioning ``cannot create directory`` means someone holds it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kamalpy.commands.base import Command, any_of, combine, file_join, iso8601, join, pipe, write
from kamalpy.commands.server import ensure_run_directory

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

__all__ = ["AUTOMATIC_MESSAGE", "LockDetails", "acquire", "check", "decode_details", "encode64", "ensure_run_directory",
           "lock_details", "lock_details_file", "lock_dir", "parse_details", "release", "status"]

AUTOMATIC_MESSAGE = "Automatic deploy lock"
UNKNOWN_LOCKER = "Unknown"  # when git is not installed
HELD_MARKER = "cannot create directory"  # in the error of an acquire that found the lock
MISSING_MARKER = "No such file or directory"  # in the error of a status/release without a lock

_RUBY_WHITESPACE = " \t\n\v\f\r\0"  # what Ruby's String#strip removes
_BASE64_LINE = 60  # Ruby's Base64.encode64 (pack "m") writes 45 bytes, i.e. 60 characters, a line
_DETAILS = re.compile(r"Locked by: (?P<by>[^\n]*) at (?P<at>\S*)\n"
                      r"Version: (?P<version>[^\n]*)\nMessage: (?P<message>.*)", re.DOTALL)


def lock_dir(config: Configuration) -> str:
    name = "-".join(p for p in ("lock", config.service, config.destination) if p is not None)
    return file_join(config.run_directory, name)


def lock_details_file(config: Configuration) -> str:
    return file_join(lock_dir(config), "details")


def status(config: Configuration) -> Command:
    """Fails when there is no lock; prints the decoded details when there is."""
    return combine(write(["stat", lock_dir(config)], "/dev/null"),
                   pipe(["cat", lock_details_file(config)], ["base64", "-d"]))


def check(config: Configuration) -> Command:
    """Read-only: succeeds when there is no lock; when there is, prints the decoded details and fails."""
    return any_of(["test", "!", "-d", lock_dir(config)],
                  f"({join(pipe(['cat', lock_details_file(config)], ['base64', '-d']))}; false)")


def acquire(config: Configuration, message: str, version: str, *, locked_by: str,
            locked_at: str | None = None) -> Command:
    """Create the lock directory and write the details (``locked_by`` = ``git config user.name`` or ``Unknown``)."""
    details = lock_details(locked_by, locked_at or iso8601(), version, message)
    # Base64 has no shell metacharacters, so the message needs no escaping; the line breaks are kept.
    return combine(["mkdir", lock_dir(config)],
                   write(["echo", f'"{encode64(details)}"'], lock_details_file(config)))


def release(config: Configuration) -> Command:
    return combine(["rm", lock_details_file(config)], ["rm", "-r", lock_dir(config)])


def lock_details(locked_by: str, locked_at: str, version: str, message: str) -> str:
    text = f"Locked by: {locked_by} at {locked_at}\nVersion: {version}\nMessage: {message}"
    return text.strip(_RUBY_WHITESPACE)  # Kamal strips the heredoc


def encode64(data: str | bytes) -> str:
    """Ruby's ``Base64.encode64``: a newline after every 60 characters and at the end ("" for no data)."""
    raw = data.encode() if isinstance(data, str) else data
    encoded = base64.b64encode(raw).decode("ascii")
    return "".join(encoded[i:i + _BASE64_LINE] + "\n" for i in range(0, len(encoded), _BASE64_LINE))


def decode_details(encoded: str | bytes) -> str:
    """The text of a ``details`` file as stored (base64); undecodable input comes back as it was."""
    text = encoded.decode(errors="replace") if isinstance(encoded, bytes) else encoded
    try:
        return base64.b64decode("".join(text.split()), validate=True).decode(errors="replace")
    except (binascii.Error, ValueError):
        return text


@dataclass(frozen=True)
class LockDetails:
    locked_by: str
    locked_at: str
    version: str
    message: str

    @property
    def automatic(self) -> bool:
        """Taken by a deploy (worth waiting for), not by ``lock acquire``."""
        return self.message == AUTOMATIC_MESSAGE


def parse_details(text: str) -> LockDetails | None:
    """The fields of ``lock status`` output (decoded details), or None if it is not in Kamal's format."""
    match = _DETAILS.fullmatch(text.strip(_RUBY_WHITESPACE))
    if match is None:
        return None
    return LockDetails(match["by"], match["at"], match["version"], match["message"])
