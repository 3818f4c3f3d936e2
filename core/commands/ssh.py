"""The system ``ssh`` command line Kamal hands interactive commands to (``-i``, ``logs -f``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kamalpy.commands.base import shell_quote_single

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration


def run_over_ssh(config: Configuration, command: str, host: str) -> str:
    """``ssh [-F f].. [-J jump | -o ProxyCommand='..'] [-i key].. [-o IdentitiesOnly=yes] -t USER@HOST -p PORT 'CMD'``.

    The argument order is Kamal's (reference section 7.2, item 23).
    """
    ssh = config.ssh
    parts = ["ssh"]
    files = ssh.config
    if files is False:
        parts += ["-F", "/dev/null"]
    elif isinstance(files, str):
        parts += ["-F", files]
    elif isinstance(files, list):
        for name in files:
            parts += ["-F", str(name)]
    if ssh.proxy_jump:
        parts += ["-J", ssh.proxy_jump]
    elif ssh.proxy_command:
        parts += ["-o", f"ProxyCommand='{ssh.proxy_command}'"]
    for key in ssh.keys or ():
        parts += ["-i", key]
    if ssh.keys_only:
        parts += ["-o", "IdentitiesOnly=yes"]
    parts += ["-t", f"{ssh.user}@{host}", "-p", str(ssh.port), shell_quote_single(command)]
    return " ".join(parts)
