"""Checking ``aliases:`` against the command tree: each alias must parse and name a command that accepts
its options, and no alias may lead back to itself. Errors name the alias (``aliases/NAME: ...``).

An alias is run as its words followed by the extra arguments of the command line (Kamal's semantics), so
a missing argument is fine here (``exec: app exec`` gets its command at run time); an unknown command,
an unknown option or a bad option value is not.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

import click

from kamalpy.errors import KamalpyError


def alias_words(name: str, aliases: Mapping[str, str]) -> list[str]:
    """The words of alias ``name`` (shell-like quoting, as Kamal's ``Shellwords.split``)."""
    try:
        words = shlex.split(aliases[name])
    except ValueError as exc:
        raise KamalpyError(f"aliases/{name}: cannot parse {aliases[name]!r}: {exc}") from None
    if not words:
        raise KamalpyError(f"aliases/{name}: is empty")
    return words


def expand(name: str, aliases: Mapping[str, str], root: click.Group, ctx: click.Context) -> list[str]:
    """The words alias ``name`` stands for, aliases it starts with expanded; a loop is an error."""
    chain = [name]
    words = alias_words(name, aliases)
    while words[0] in aliases and root.get_command(ctx, words[0]) is None:
        if words[0] in chain:
            raise KamalpyError(f"aliases/{name}: alias loop: {' -> '.join([*chain, words[0]])}")
        chain.append(words[0])
        words = alias_words(words[0], aliases) + words[1:]
    return words


def _takes_value(group: click.Group, word: str) -> bool:
    """Whether option ``word`` of ``group`` (``-d``, ``--destination``) takes the next word as its value."""
    if "=" in word or (not word.startswith("--") and len(word) > 2):
        return False  # --opt=value, -dvalue
    for param in group.params:
        if isinstance(param, click.Option) and word in (*param.opts, *param.secondary_opts):
            return not param.is_flag and not param.count
    return False  # unknown: the command's own parse reports it


def check_alias(name: str, aliases: Mapping[str, str], root: click.Group, ctx: click.Context) -> None:
    """Raise a :class:`KamalpyError` naming alias ``name`` unless its command line parses."""
    words = expand(name, aliases, root, ctx)
    command: click.Command = root
    parent = ctx
    options: list[str] = []  # options given before the subcommand name: every command accepts the global ones
    rest = list(words)
    while isinstance(command, click.Group):
        while rest and rest[0].startswith("-"):
            word = rest.pop(0)
            options.append(word)
            if _takes_value(command, word) and rest:
                options.append(rest.pop(0))
        if not rest:
            raise KamalpyError(f"aliases/{name}: {aliases[name]!r} names no command")
        sub_name = rest.pop(0)
        sub = command.get_command(parent, sub_name)
        if sub is None:
            raise KamalpyError(f'aliases/{name}: {aliases[name]!r}: Could not find command "{sub_name}".')
        parent = click.Context(sub, info_name=sub_name, parent=parent)
        command = sub
    try:
        command.make_context(parent.info_name, [*options, *rest], parent=parent.parent)
    except click.MissingParameter:
        pass  # the extra arguments of the command line come after the alias's words
    except click.NoSuchOption as exc:  # worded by us: click's wording of it changed between releases
        raise KamalpyError(f"aliases/{name}: {aliases[name]!r}: No such option '{exc.option_name}'.") from None
    except click.UsageError as exc:
        raise KamalpyError(f"aliases/{name}: {aliases[name]!r}: {exc.format_message()}") from None


def check_aliases(aliases: Mapping[str, str]) -> None:
    """Check every alias against the command tree of the current run (options parsed into a scratch run)."""
    from kamalpy.cli.base import Run

    current = click.get_current_context().find_root()
    root = current.command
    assert isinstance(root, click.Group)
    scratch = Run(hooks=current.obj.hooks)  # an alias's own -d/-c/... must not change this run's options
    with click.Context(root, info_name="kamalpy", obj=scratch) as ctx:
        for name in aliases:
            check_alias(name, aliases, root, ctx)
