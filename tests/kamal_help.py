"""Kamal 2.11's commands and options, read from the captured help texts (tests/fixtures/kamal-2.11-help,
made by scripts/capture_kamal_help.py), and kamalpy's, read from its click tree; and the table of both
that docs/cli.md shows."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import click

from kamalpy.cli.base import Run
from kamalpy.cli.main import make_cli
from kamalpy.cli.options import GlobalOptions

CAPTURE = Path(__file__).parent / "fixtures/kamal-2.11-help"
KAMALPY_GLOBALS = {f.name for f in fields(GlobalOptions)}
TABLE_START, TABLE_END = "<!-- kamal-commands:start -->", "<!-- kamal-commands:end -->"


@dataclass
class Spec:
    """One command: its words, options (long name -> short alias or ""), positional arguments, hidden."""

    path: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict)
    arguments: int = 0
    hidden: bool = False


def _options(text: str) -> dict[str, str]:
    block = text.split("Options:\n", 1)[1] if "Options:\n" in text else ""
    found = {}
    for line in block.splitlines():
        if not line.strip():
            break
        names = re.findall(r"--([\w-]+)", line.split("  #")[0])
        if not names:
            continue  # a "# Default: ..." continuation line
        short = re.match(r"\s*(-\w),", line)
        found[names[0]] = short.group(1) if short else ""
    return found


def kamal_globals() -> dict[str, str]:
    return _options((CAPTURE / "help.txt").read_text())


def kamal_commands() -> list[Spec]:
    """Every Kamal command (groups left out), with its own options (not the global ones)."""
    lists = "".join(text for p in CAPTURE.glob("help*.txt") if (text := p.read_text()).startswith("Commands:"))
    listed = {tuple(m.split()) for m in re.findall(r"^  kamal ([\w ]+?)(?:\s+[\[<-]|\s+#)", lists, re.M)}
    globals_ = kamal_globals()
    specs = []
    for path in sorted(CAPTURE.glob("help-*.txt")):
        text = path.read_text()
        if text.startswith("Commands:"):
            continue  # a group: its commands have files of their own
        words = tuple(path.stem.split("-")[1:])
        usage = text.splitlines()[1].split()[1 + len(words):]
        arguments = len([w for w in usage if w.startswith(("[", "<")) and not w.startswith("[--")])
        options = {k: v for k, v in _options(text).items() if k not in globals_}
        specs.append(Spec(words, options, arguments, hidden=words not in listed))
    groups = [p.stem.split("-")[1] for p in CAPTURE.glob("help-*.txt") if p.read_text().startswith("Commands:")]
    for group in groups:  # Thor's own `help [COMMAND]` and `tree` in every group
        specs += [Spec((group, "help"), arguments=1), Spec((group, "tree"))]
    return sorted(specs, key=lambda s: s.path)


def kamalpy_tree() -> tuple[click.Group, click.Context]:
    cli = make_cli()
    return cli, click.Context(cli, info_name="kamalpy", obj=Run())


def kamalpy_command(path: tuple[str, ...]) -> click.Command | None:
    command, ctx = kamalpy_tree()
    for word in path:
        if not isinstance(command, click.Group):
            return None
        found = command.get_command(ctx, word)
        if found is None:
            return None
        ctx = click.Context(found, info_name=word, parent=ctx)
        command = found
    return command


def kamalpy_commands() -> list[Spec]:
    """Every kamalpy command (groups left out), with its own options."""
    specs: list[Spec] = []

    def walk(group: click.Group, ctx: click.Context, path: tuple[str, ...]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            if isinstance(command, click.Group):
                walk(command, click.Context(command, info_name=name, parent=ctx), (*path, name))
                continue
            specs.append(Spec((*path, name), options_of(command),
                              len([p for p in command.params if isinstance(p, click.Argument)]), command.hidden))

    walk(*kamalpy_tree(), ())
    return sorted(specs, key=lambda s: s.path)


def options_of(command: click.Command, *, globals_: bool = False) -> dict[str, str]:
    found = {}
    for param in command.params:
        if isinstance(param, click.Option) and (param.name in KAMALPY_GLOBALS) == globals_:
            longs = [o[2:] for o in param.opts if o.startswith("--")]
            shorts = [o for o in param.opts if not o.startswith("--")]
            found[longs[0]] = shorts[0] if shorts else ""
    return found


def _render(options: dict[str, str]) -> str:
    return ", ".join(f"`{short}/--{long}`" if short else f"`--{long}`" for long, short in options.items()) or "—"


def table() -> str:
    """The docs/cli.md table: each Kamal 2.11 command, its options, and what kamalpy adds; then kamalpy's own."""
    ours = {spec.path: spec for spec in kamalpy_commands()}
    kamal = kamal_commands()
    rows = ["| Command | Kamal 2.11 options (all in kamalpy) | kamalpy adds |", "|---|---|---|"]
    root = make_cli()
    kamalpy_globals = options_of(root, globals_=True)
    kamal_global = kamal_globals()
    rows.append(f"| (every command) | {_render(kamal_global)} | "
                f"{_render({k: v for k, v in kamalpy_globals.items() if k not in kamal_global})} |")
    for spec in kamal:
        mine = ours.get(spec.path)
        extra = {k: v for k, v in (mine.options if mine else {}).items() if k not in spec.options}
        hidden = " (hidden)" if spec.hidden else ""
        rows.append(f"| `{' '.join(spec.path)}`{hidden} | {_render(spec.options)} | {_render(extra)} |")
    known = {spec.path for spec in kamal}
    for path, spec in ours.items():
        if path not in known:
            rows.append(f"| `{' '.join(path)}` (kamalpy only) | — | {_render(spec.options)} |")
    return "\n".join(rows)
