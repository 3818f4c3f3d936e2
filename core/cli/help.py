"""``help [COMMAND]`` and ``tree`` in every command group, as Kamal (Thor) has them.

``kamalpy help deploy`` is ``kamalpy deploy --help``; ``kamalpy app help logs`` is ``kamalpy app logs --help``;
``tree`` prints the commands under the group (hidden ones, ``help`` and ``tree`` left out) in Kamal's
layout: a ``kamalpy:cli:<group>`` heading, then ``├─ name (description)`` lines, groups after their list.
"""

from __future__ import annotations

import click

HELP = "help"
TREE = "tree"


def _group_context(ctx: click.Context) -> click.Context:
    assert ctx.parent is not None  # these commands only exist inside a group
    return ctx.parent


def _help(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Help of the group, or of the command the words name (``help app logs`` also works)."""
    target_ctx = _group_context(ctx)
    for name in command:
        group = target_ctx.command
        sub = group.get_command(target_ctx, name) if isinstance(group, click.Group) else None
        if sub is None:
            raise click.UsageError(f'Could not find command "{name}".')
        target_ctx = click.Context(sub, info_name=name, parent=target_ctx)
    click.echo(target_ctx.command.get_help(target_ctx))


def _description(command: click.Command) -> str:
    return command.get_short_help_str(limit=10_000)


def tree_lines(group: click.Group, ctx: click.Context, name: str, indent: int = 0) -> list[str]:
    """Kamal's ``tree`` text for ``group`` (named ``name`` in the heading)."""
    pad = " " * indent
    lines = [f"{pad}kamalpy:cli:{name}"]
    shown = [(n, c) for n in group.list_commands(ctx) if (c := group.get_command(ctx, n)) is not None
             and not c.hidden and n not in (HELP, TREE)]
    for index, (sub_name, sub) in enumerate(shown):
        branch = "└─" if index == len(shown) - 1 else "├─"
        lines.append(f"{pad}  {branch} {sub_name} ({_description(sub)})")
    for sub_name, sub in shown:
        if isinstance(sub, click.Group):
            with click.Context(sub, info_name=sub_name, parent=ctx) as sub_ctx:
                lines += tree_lines(sub, sub_ctx, sub_name, indent + 2)
    return lines


def _tree(ctx: click.Context) -> None:
    group_ctx = _group_context(ctx)
    group = group_ctx.command
    assert isinstance(group, click.Group)
    name = "main" if group_ctx.parent is None else group.name or ""
    click.echo("\n".join(tree_lines(group, group_ctx, name)))


def add_help_commands(group: click.Group) -> None:
    """Give ``group`` its own ``help [COMMAND]`` and ``tree`` commands."""
    from kamalpy.cli.base import KamalpyCommand

    group.add_command(KamalpyCommand(
        HELP, lifecycle=False, params=[click.Argument(["command"], nargs=-1, metavar="[COMMAND]")],
        callback=click.pass_context(_help), help="Describe available commands or one specific command."))
    group.add_command(KamalpyCommand(
        TREE, lifecycle=False, callback=click.pass_context(_tree), help="Print a tree of all available commands."))
