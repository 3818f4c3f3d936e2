"""The ``kamalpy`` entry point.

``kamalpy version`` is answered without loading any plugin (start-up time); every other command
comes from a plugin through the ``kamalpy_register_commands`` hook, or is an ``aliases:`` entry.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from kamalpy import __version__
from kamalpy.cli.base import CONTEXT_SETTINGS, KamalpyCommand, KamalpyGroup, Run
from kamalpy.errors import KamalpyError, Terminated

MAX_ALIAS_DEPTH = 10


@click.command("version", cls=KamalpyCommand, lifecycle=False)
def version_command() -> None:
    """Show the kamalpy version."""
    click.echo(__version__)


class RootGroup(KamalpyGroup):
    """The ``kamalpy`` group: plugin commands registered on first need, aliases resolved from config."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        super().__init__(*args, **kwargs)
        self.add_command(version_command)
        self._registered = False

    def _ensure_registered(self, ctx: click.Context) -> None:
        if not self._registered:
            self._registered = True
            ctx.find_root().obj.hooks.register_commands(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name != "version":
            self._ensure_registered(ctx)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._ensure_registered(ctx)
        return super().list_commands(ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if self.get_command(ctx, name) is None and not name.startswith("-"):
            alias = _alias_command(ctx, name, args[1:])
            if alias is not None:
                return name, alias, args[1:]
            raise click.UsageError(f"Could not find command \"{name}\".")
        return super().resolve_command(ctx, args)


def _alias_command(ctx: click.Context, name: str, rest: list[str]) -> click.Command | None:
    """Kamal's alias semantics: the alias's words, then the extra arguments, run as a new command line."""
    from kamalpy.config.loader import read_raw_config

    run: Run = ctx.find_root().obj
    config_file, destination = _prescan_config_options(rest, run)
    try:
        raw = read_raw_config(config_file, destination)
    except (KamalpyError, OSError):
        return None
    aliases = raw.get("aliases") if isinstance(raw, dict) else None
    if not isinstance(aliases, dict) or not isinstance(aliases.get(name), str):
        return None
    from kamalpy.cli.aliases import expand

    aliases = {str(k): str(v) for k, v in aliases.items()}
    words = expand(name, aliases, ctx.command, ctx)  # type: ignore[arg-type]  # names the alias if it cannot run

    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                           "help_option_names": []}, add_help_option=False)
    @click.pass_context
    def run_alias(alias_ctx: click.Context) -> None:
        depth = int(os.environ.get("KAMALPY_ALIAS_DEPTH", "0"))
        if depth >= MAX_ALIAS_DEPTH:  # a loop through other config files (-c/-d inside aliases)
            raise KamalpyError(f"aliases/{name}: alias loop (more than {MAX_ALIAS_DEPTH} aliases deep)")
        os.environ["KAMALPY_ALIAS_DEPTH"] = str(depth + 1)
        try:
            # Global options given before the alias name (--dry-run, -d, ...) apply to its command line too.
            code = main(_given_options(run) + words + list(alias_ctx.args), standalone=False)
        finally:
            os.environ["KAMALPY_ALIAS_DEPTH"] = str(depth)
        alias_ctx.exit(code)

    run_alias.help = f"Alias for: {aliases[name]}"
    return run_alias


def _given_options(run: Run) -> list[str]:
    """The global options of ``run`` that differ from their defaults, as command-line words."""
    from dataclasses import fields

    from kamalpy.cli.options import GlobalOptions

    words: list[str] = []
    defaults = GlobalOptions()
    for field in fields(GlobalOptions):
        value, flag = getattr(run.options, field.name), "--" + field.name.replace("_", "-")
        if value == getattr(defaults, field.name):
            continue
        if isinstance(value, bool):
            words.append(flag)
        elif isinstance(value, tuple):
            words += [word for item in value for word in (flag, str(item))]
        else:
            words += [flag, str(value)]
    return words


def _option_values(args: Sequence[str], long_: str, short: str | None = None) -> list[str]:
    """Values of an option among arguments click has not parsed yet (``--opt V``, ``--opt=V``, ``-oV``)."""
    values = []
    for i, arg in enumerate(args):
        if arg in (short, long_) and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(long_ + "="):
            values.append(arg.split("=", 1)[1])
        elif short and arg.startswith(short) and len(arg) > 2 and not arg.startswith("--"):
            values.append(arg[2:])
    return values


def _prescan_config_options(args: Sequence[str], run: Run) -> tuple[str, str | None]:
    """-c/-d among not yet parsed arguments (needed to find the aliases before parsing them)."""
    config_files = _option_values(args, "--config-file", "-c")
    destinations = _option_values(args, "--destination", "-d")
    return (config_files[-1] if config_files else run.options.config_file,
            destinations[-1] if destinations else run.options.destination)


def _prescan_disabled(args: Sequence[str]) -> set[str]:
    """Plugins to leave out: needed before parsing, since plugins add the commands being parsed."""
    from kamalpy.plugins import disabled_from_env, split_names

    return disabled_from_env() | split_names(_option_values(args, "--disable-plugin"))


def make_cli() -> RootGroup:
    @click.group("kamalpy", cls=RootGroup)
    def cli() -> None:
        """Deploy web apps in containers to servers over SSH, the Kamal 2 way."""

    return cli  # type: ignore[return-value]


def main(args: Sequence[str] | None = None, standalone: bool = True) -> int:
    """Run kamalpy. Every error ends as one line on stderr and exit code 1 (no traceback)."""
    args = list(sys.argv[1:] if args is None else args)
    run = Run(_prescan_disabled(args))
    verbose = "-v" in args or "--verbose" in args
    code = 0
    try:
        result = make_cli().main(args, prog_name="kamalpy", standalone_mode=False, obj=run)
        code = result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort as exc:
        cause = exc.__context__  # click turns KeyboardInterrupt into Abort; SIGTERM/SIGHUP keep their name
        if isinstance(cause, Terminated):
            click.echo(f"ERROR: {cause}", err=True)
            code = cause.exit_code
        else:
            click.echo("Aborted!", err=True)
            code = 1
    except click.ClickException as exc:
        _error(f"ERROR: {_one_line(exc.format_message())}")
        code = 1
    except KamalpyError as exc:
        _error(f"ERROR: {_one_line(str(exc))}")
        code = exc.exit_code
    except KeyboardInterrupt as exc:  # also SIGTERM/SIGHUP under the deploy lock (kamalpy.errors.Terminated)
        click.echo(f"ERROR: {exc or 'Interrupted'}", err=True)
        code = exc.exit_code if isinstance(exc, Terminated) else 130
    except Exception as exc:  # the promise is "no traceback": show one with -v only
        if verbose:
            import traceback

            traceback.print_exc()
        _error(f"ERROR: {_one_line(internal_error_message(exc))}")
        code = 1
    finally:
        run.close()
    if standalone:
        sys.exit(code)
    return code


def _error(line: str) -> None:
    """The one error line, in red on a terminal as Kamal prints its errors."""
    from kamalpy.output import colour_enabled, paint

    click.echo(paint(line, "red", colour_enabled(sys.stderr)), err=True)


INTERNAL_ERROR = "internal error"


def internal_error_message(exc: Exception) -> str:
    """What an exception no check foresaw can say: the file of an OS error, else its type and text.

    Every failure a user can cause has its own message; this one marks a kamalpy bug (the fuzz tests
    look for it) and says how to get the traceback for a report.
    """
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    detail = str(exc) or type(exc).__name__
    return f"{detail} ({INTERNAL_ERROR}: {type(exc).__name__}; -v shows the traceback)"


def _one_line(message: str) -> str:
    return " ".join(message.split("\n")).strip()
