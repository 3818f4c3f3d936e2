"""A Kamal command array and how SSHKit turns it into the string a shell runs.

Kamal builds every command as an array of parts (``[:docker, :run, "--detach", ...]``) and combines
sub-commands with ``&&``, ``;``, ``|``, ... as plain parts. Two forms of the same array matter:

* :func:`join` -- ``array.join(" ")``, the form Kamal's unit tests compare;
* :func:`render` -- what SSHKit actually sends: the first part goes through SSHKit's command map
  (``docker`` stays ``docker``, anything else gets ``/usr/bin/env``), only the first part of a
  combined command is mapped, and an ``env`` mapping wraps the whole line in ``( export ... ; ... )``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

Command = list[str]
# A part of a command under construction: a token, a whole sub-command, or nothing (dropped, like Ruby's compact).
Piece = str | Sequence["Piece"] | None

# Kamal sets `command_map[:docker] = "docker"`; SSHKit prefixes every other mapped command with this.
COMMAND_MAP = {"docker": "docker"}
ENV_PREFIX = "/usr/bin/env "
REDACTED = "[REDACTED]"

_WHITESPACE = re.compile(r"\s")


class Sensitive(str):
    """A part that logs show as ``[REDACTED]`` (Kamal's ``sensitive(...)``); the command itself keeps it."""


def flatten(*pieces: Piece) -> Command:
    """The parts of ``pieces`` in order, nested sub-commands flattened and ``None`` dropped."""
    out: Command = []
    for piece in pieces:
        if piece is None:
            continue
        if isinstance(piece, str):
            out.append(piece)
        else:
            out += flatten(*piece)
    return out


def _shown(part: str, redact: bool) -> str:
    return REDACTED if redact and isinstance(part, Sensitive) else part


def join(cmd: Sequence[str], *, redact: bool = False) -> str:
    """Kamal's ``array.join(" ")``; with ``redact`` sensitive parts read ``[REDACTED]``."""
    return " ".join(_shown(part, redact) for part in cmd)


def _sanitize_first(part: str) -> str:
    """SSHKit strips the command name and turns a multi-line one into ``line; line``."""
    first = part.strip()
    if "\n" in first:
        first = "; ".join(line.strip() for line in first.splitlines())
    return first


def environment_string(env: Mapping[str, object]) -> str:
    """``KEY="value" KEY2="value2"`` as SSHKit writes it (only ``"`` is escaped)."""
    return " ".join(f'{key}="{_escape_double_quotes(str(value))}"' for key, value in env.items())


def _escape_double_quotes(text: str) -> str:
    return text.replace('"', '\\"')


def render(cmd: Sequence[str], env: Mapping[str, object] | None = None, *, redact: bool = False) -> str:
    """The command line as SSHKit sends it.

    A first part containing whitespace is sent without mapping. (SSHKit would also drop the other
    parts and the env of such a command; Kamal never builds one, so we keep them rather than lose them.)
    """
    if not cmd:
        raise ValueError("empty command")
    first = _sanitize_first(cmd[0])
    rest = [_shown(part, redact) for part in cmd[1:]]
    if not _WHITESPACE.search(first):
        first = COMMAND_MAP.get(first, ENV_PREFIX + first)
    line = " ".join([first, *rest])
    if env:
        line = f"( export {environment_string(env)} ; {line} )"
    return line


def combine(*commands: Piece, by: str = "&&") -> Command:
    """Sub-commands joined by ``by`` (``None`` sub-commands are skipped), as Kamal's ``combine``."""
    out: Command = []
    for command in commands:
        if command is None:
            continue
        if out:
            out.append(by)
        out += flatten(command)
    return out


def chain(*commands: Piece) -> Command:
    return combine(*commands, by=";")


def pipe(*commands: Piece) -> Command:
    return combine(*commands, by="|")


def any_of(*commands: Piece) -> Command:
    return combine(*commands, by="||")


def append(*commands: Piece) -> Command:
    return combine(*commands, by=">>")


def write(*commands: Piece) -> Command:
    return combine(*commands, by=">")


def shell_quote_single(text: str) -> str:
    """``'text'`` for sh, each ``'`` written as ``'\\''``."""
    return "'" + text.replace("'", "'\\''") + "'"


def shell(command: Piece) -> Command:
    """``sh -c '<command>'`` (Kamal's ``shell``)."""
    return ["sh", "-c", shell_quote_single(join(flatten(command)))]


def docker(*args: Piece) -> Command:
    return flatten("docker", *args)


def make_directory(path: str) -> Command:
    return ["mkdir", "-p", path]


def remove_directory(path: str) -> Command:
    return ["rm", "-r", path]


def interactive_args(interactive: bool, tty: bool) -> str | None:
    """Kamal's ``docker_interactive_args`` when ``interactive``: ``-it`` on a terminal, else ``-i`` (piped input)."""
    if not interactive:
        return None
    return "-it" if tty else "-i"


def remove_file(path: str) -> Command:
    return ["rm", path]


def file_join(*parts: str) -> str:
    """Ruby's ``File.join``: one ``/`` between parts however many they end or start with."""
    out = ""
    for part in parts:
        if not out:
            out = part
        else:
            out = out.rstrip("/") + "/" + part.lstrip("/")
    return out


def iso8601(now: datetime | None = None) -> str:
    """Ruby's ``Time.now.utc.iso8601``: ``2026-06-18T12:00:00Z`` (whole seconds). Naive times count as UTC."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


DEFAULT_LOG_LINES = 100  # Kamal's default when neither --since nor --grep is given


def log_lines(lines: int | None, since: str | None, grep: str | None) -> int | None:
    """How many log lines to ask for: as given, else Kamal's default unless ``--since``/``--grep`` narrow it."""
    if lines:
        return lines
    return None if since or grep else DEFAULT_LOG_LINES
