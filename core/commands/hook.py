"""Local hook scripts (``<hooks_path>/<name>``) and the environment they run with."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kamalpy.commands.base import Command, file_join
from kamalpy.commands.tags import tags, tags_env

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration


def hook_file(config: Configuration, hook: str) -> str:
    return file_join(config.hooks_path, hook)


def run(config: Configuration, hook: str) -> Command:
    """The hook as a command: rendered ``/usr/bin/env <path>`` so the script's shebang picks the interpreter."""
    return [hook_file(config, hook)]


def hook_exists(config: Configuration, hook: str, root: Path | str | None = None) -> bool:
    """Whether the hook file exists (relative paths from ``root``, default the working directory)."""
    path = Path(hook_file(config, hook))
    return (Path(root) / path if root is not None else path).exists()


def ruby_round(value: float) -> int:
    """Ruby's ``Float#round``: halves away from zero (Python rounds them to even)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def hook_env(config: Configuration, *, performer: str, hosts: Sequence[str], lock: bool, command: str,
             subcommand: str | None = None, roles: Sequence[str] | None = None, runtime: float | None = None,
             recorded_at: str | None = None, secrets: Mapping[str, str] | None = None,
             details: Mapping[str, object] | None = None) -> dict[str, str]:
    """The ``KAMAL_*`` variables added to the hook's environment, in Kamal's order.

    ``hosts``: the hosts of the run (for app-boot/proxy-reboot hooks, the current group); ``roles``: only
    when ``--roles`` was given; ``lock``: whether this process holds the deploy lock; ``runtime``: post-deploy
    only, seconds; ``secrets``: every secret, for the hooks that get them (pre-connect, pre/post-deploy).
    """
    found: dict[str, object] = {"hosts": ",".join(hosts),
                                "roles": None if roles is None else ",".join(roles),
                                "lock": "true" if lock else "false",
                                "command": command,
                                "subcommand": subcommand}
    if runtime is not None:
        found["runtime"] = str(ruby_round(runtime))
    found.update(details or {})
    env = tags_env(tags(config, performer=performer, recorded_at=recorded_at, details=found))
    env.update(secrets or {})
    return env
