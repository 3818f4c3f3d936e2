"""The hooks: declare ``deploy_window:``, validate it, refuse deploying commands outside the window."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kamalpy.errors import KamalpyError
from kamalpy.plugin import CommandContext, ConfigKey, hookimpl
from kamalpy_deploy_window import window as w

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration


@hookimpl
def kamalpy_config_keys() -> list[ConfigKey]:
    # No default: without the key there is no window and every command is allowed.
    return [ConfigKey(name=w.KEY, schema=w.SCHEMA, default=None, description=w.DESCRIPTION)]


@hookimpl
def kamalpy_validate_config(config: Configuration) -> None:
    settings = config.extension(w.KEY)
    if settings is not None:
        w.parse_window(settings)  # raises ConfigurationError naming deploy_window/<field>


@hookimpl
def kamalpy_before_command(command: CommandContext) -> str | None:
    if command.name in w.READ_ONLY_COMMANDS:
        return None  # never even load the configuration for these
    try:
        config = command.config
    except KamalpyError:
        if command.name in w.DEFAULT_COMMANDS:
            raise  # these need the configuration anyway: fail now, before anything else
        return None  # e.g. `init` or `secrets fetch` without a usable config: no window to enforce
    settings = config.extension(w.KEY)
    if settings is None:
        return None
    window = w.parse_window(settings)
    if command.name not in window.commands:
        return None
    moment = w.now()
    if window.contains(moment):
        return None
    reason = w.override_reason()
    if reason:
        # An env var, not a flag: a plugin cannot add options to commands other plugins own.
        click.echo(f"WARNING: '{command.name}' outside the deploy window ({window.describe()}; it is "
                   f"{window.local_now(moment)} there), allowed by {w.OVERRIDE_ENV}: {reason}", err=True)
        return None
    return window.refusal(moment)
