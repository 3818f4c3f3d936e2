"""Kamal's global options, accepted on every command (before or after the command name)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import click

from kamalpy.cli.completion import complete_destinations, complete_roles


@dataclass
class GlobalOptions:
    verbose: bool = False
    quiet: bool = False
    version: str | None = None
    primary: bool = False
    hosts: str | None = None
    roles: str | None = None
    config_file: str = "config/deploy.yml"
    destination: str | None = None
    skip_hooks: bool = False
    lock_wait: bool = False
    lock_wait_timeout: float = 900
    lock_wait_interval: float = 15
    disable_plugin: tuple[str, ...] = field(default_factory=tuple)
    dry_run: bool = False


OPTION_NAMES = tuple(f.name for f in fields(GlobalOptions))


def record_global_options(ctx: click.Context) -> None:
    """Move the global options click parsed for ``ctx`` out of its params and into the run's GlobalOptions.

    Options may be given on the root group and on each command; the innermost value given wins
    (``--disable-plugin`` adds up). "Given" is read from the value itself, never from click's parameter
    source or callback order, which differ between click releases (8.4.0 records the source only after
    the callbacks ran, so a callback saw every option as a default and ``--dry-run`` was lost). A value
    option's default is None and a flag's is False, so any other value was typed by the user.
    """
    options: GlobalOptions = ctx.find_root().obj.options
    for name in OPTION_NAMES:
        value = ctx.params.pop(name, None)
        if name == "disable_plugin":
            given = tuple(v for v in (value or ()) if isinstance(v, str))
            if given:
                options.disable_plugin = tuple(options.disable_plugin) + given
        elif value is True or (isinstance(value, (str, int, float)) and not isinstance(value, bool)):
            setattr(options, name, value)


def global_params() -> list[click.Option]:
    """Fresh Option objects (click options cannot be shared between commands)."""

    def opt(*decls: str, **kwargs: object) -> click.Option:
        # No default and no callback: record_global_options takes the values once parsing is done.
        return click.Option(list(decls), **kwargs)  # type: ignore[arg-type]

    return [
        opt("-v", "--verbose", is_flag=True, help="Detailed logging."),
        opt("-q", "--quiet", is_flag=True, help="Minimal logging."),
        opt("--version", metavar="VERSION", help="Run commands against a specific app version."),
        opt("-p", "--primary", is_flag=True, help="Run commands only on the primary host instead of all."),
        opt("-h", "--hosts", metavar="HOSTS",
            help="Run commands on these hosts instead of all (comma-separated, wildcards allowed)."),
        opt("-r", "--roles", metavar="ROLES", shell_complete=complete_roles,
            help="Run commands on these roles instead of all (comma-separated, wildcards allowed)."),
        opt("-c", "--config-file", "config_file", metavar="PATH",
            help="Path to config file.  [default: config/deploy.yml]"),
        opt("-d", "--destination", metavar="DEST", shell_complete=complete_destinations,
            help="Specify destination to be used for config file (staging -> deploy.staging.yml)."),
        opt("-H", "--skip-hooks", is_flag=True, help="Don't run hooks."),
        opt("--lock-wait", is_flag=True, help="Wait for the deploy lock instead of failing."),
        opt("--lock-wait-timeout", type=float, metavar="SECONDS",
            help="Seconds to wait for the deploy lock.  [default: 900]"),
        opt("--lock-wait-interval", type=float, metavar="SECONDS",
            help="Seconds between checks for the deploy lock.  [default: 15]"),
        opt("--dry-run", is_flag=True,
            help="Print each command as HOST<TAB>COMMAND instead of running it; connect to nothing."),
        opt("--disable-plugin", multiple=True, metavar="NAME",
            help="Do not load this plugin (repeatable or comma-separated; also KAMALPY_DISABLE_PLUGINS)."),
    ]


def log_filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-s/--since``, ``-n/--lines``, ``-g/--grep`` of the ``logs`` commands (app, proxy, accessory)."""
    func = click.option("-g", "--grep", help="Only lines matching this pattern.")(func)
    func = click.option("-n", "--lines", type=int,
                        help="Number of lines from each server (100 without --since/--grep).")(func)
    return click.option("-s", "--since",
                        help="Lines since a timestamp (2013-01-02T13:23:37Z) or a duration (42m).")(func)
