"""Run another command of the click tree from inside a command (Kamal's Thor ``invoke``).

A flow built from other commands (``upgrade`` runs ``proxy upgrade``, which runs ``proxy boot``, ``app
boot`` and ``prune all``) names them by their words, so it works with whichever plugin provides them and
no built-in plugin imports another. The invoked command shares the run (options, lock, connections)
and does not fire the command lifecycle hooks again: it is a step of the command the user gave.
"""

from __future__ import annotations

from typing import Any

import click

from kamalpy.errors import KamalpyError


def invoke(*words: str) -> Any:
    """Run ``kamalpy WORDS...`` (command names, then that command's own arguments) within this run."""
    ctx = click.get_current_context()
    parent = ctx.find_root()
    command: click.Command = parent.command
    rest = list(words)
    name = parent.info_name or ""
    while isinstance(command, click.Group):
        if not rest:
            raise KamalpyError(f"kamalpy {' '.join(words)}: not a command")
        name = rest.pop(0)
        sub = command.get_command(parent, name)
        if sub is None:
            raise KamalpyError(f"kamalpy {' '.join(words)}: no loaded plugin provides this command")
        if isinstance(sub, click.Group):
            parent = click.Context(sub, info_name=name, parent=parent)
        command = sub
    with command.make_context(name, rest, parent=parent) as sub_ctx:
        if command.callback is None:  # pragma: no cover - every kamalpy command has one
            return None
        return sub_ctx.invoke(command.callback, **sub_ctx.params)
