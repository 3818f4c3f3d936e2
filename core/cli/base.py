"""Command classes that carry the global options and fire the lifecycle hooks, and the run state."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from kamalpy.cli.options import GlobalOptions, global_params, record_global_options
from kamalpy.errors import CommandRefused

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.config.model import Configuration
    from kamalpy.hooks import Hooks

CONTEXT_SETTINGS = {"help_option_names": ["--help"]}


class Run:
    """State of one kamalpy invocation: global options, plugins and configuration, each made on demand."""

    def __init__(self, disabled_plugins: set[str] | None = None, load_entry_points: bool = True,
                 hooks: Hooks | None = None) -> None:
        self.options = GlobalOptions()
        self.disabled_plugins = set(disabled_plugins or ())
        self.load_entry_points = load_entry_points
        self._hooks: Hooks | None = hooks  # given: share the plugins of the run that started this one
        self._config: Configuration | None = None
        self._commander: Commander | None = None
        self.command_path: tuple[str, ...] = ()

    @property
    def hooks(self) -> Hooks:
        if self._hooks is None:
            from kamalpy.hooks import Hooks
            from kamalpy.plugins import build_plugin_manager

            pm = build_plugin_manager(self.disabled_plugins, load_entry_points=self.load_entry_points)
            self._hooks = Hooks(pm)
        return self._hooks

    @property
    def config(self) -> Configuration:
        if self._config is None:
            from kamalpy.config.loader import load_configuration

            self._config = load_configuration(self.options, self.hooks)
        return self._config


    @property
    def commander(self) -> Commander:
        """Hosts, output and connections for commands that talk to servers."""
        if self._commander is None:
            from kamalpy.commander import Commander

            self._commander = Commander(self)
        return self._commander

    def end_output(self) -> None:
        """The command is over: its output sums up (a live view ends before the CLI prints an error line)."""
        if self._commander is not None:
            self._commander.output.close()

    def close(self) -> None:
        """Close every connection this run opened."""
        if self._commander is not None:
            self._commander.close()


def current_run() -> Run:
    return click.get_current_context().find_root().obj


class GlobalOptionsMixin:
    """Every global option on this command or group, recorded in the run once its arguments are parsed."""

    params: list[click.Parameter]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        super().__init__(*args, **kwargs)
        self.params.extend(global_params())

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)  # type: ignore[misc]
        record_global_options(ctx)
        return rest


class KamalpyCommand(GlobalOptionsMixin, click.Command):
    """A command with every global option that fires ``kamalpy_before/after_command``."""

    def __init__(self, *args: Any, lifecycle: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lifecycle = lifecycle

    def invoke(self, ctx: click.Context) -> Any:
        if not self.lifecycle:
            return super().invoke(ctx)
        from kamalpy.plugin import CommandContext

        run: Run = ctx.find_root().obj
        path = tuple(ctx.command_path.split()[1:])
        run.command_path = path
        command = CommandContext(path=path, options=run.options, params=dict(ctx.params),
                                 _config_loader=lambda: run.config)
        refusal = run.hooks.before_command(command)
        if refusal:
            raise CommandRefused(str(refusal))
        try:
            result = super().invoke(ctx)
        except BaseException as error:
            run.hooks.after_command(command, error)
            raise
        run.hooks.after_command(command, None)
        return result


class KamalpyGroup(GlobalOptionsMixin, click.Group):
    """A command group whose subcommands default to :class:`KamalpyCommand`."""

    command_class = KamalpyCommand

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from kamalpy.cli.help import add_help_commands

        add_help_commands(self)  # Kamal's `help [COMMAND]` and `tree` in every group


KamalpyGroup.group_class = KamalpyGroup


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], KamalpyCommand]:
    kwargs.setdefault("cls", KamalpyCommand)
    return click.command(*args, **kwargs)  # type: ignore[return-value]


def group(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], KamalpyGroup]:
    kwargs.setdefault("cls", KamalpyGroup)
    return click.group(*args, **kwargs)  # type: ignore[return-value]
