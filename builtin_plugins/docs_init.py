"""Built-in plugin: ``kamalpy docs [SECTION]`` and ``kamalpy init``.

The section texts live in ``kamalpy/config/sections/*.md`` (``docs/configuration`` links there, so
each section has one text); the files ``init`` writes live in ``templates/`` next to this module.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kamalpy.cli.base import command, current_run
from kamalpy.cli.completion import matching
from kamalpy.errors import KamalpyError
from kamalpy.plugin import ConfigKey, hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from importlib.resources.abc import Traversable

DEFAULT_SECTION = "configuration"
EXTENSIONS_SECTION = "kamalpy-extensions"
# Root keys whose section file has the singular name Kamal uses (`kamal docs accessory`).
SECTION_ALIASES = {"accessories": "accessory", "aliases": "alias"}

# Kamal writes these paths relative to the working directory and ignores -c/-d here.
DEPLOY_FILE = Path("config/deploy.yml")
SECRETS_FILE = Path(".kamal/secrets")
HOOKS_DIR = Path(".kamal/hooks")
EXECUTABLE = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH  # 0755


class DocumentationNotFound(KamalpyError):
    """``kamalpy docs NAME`` for a name that is neither a section nor a plugin key."""


def _sections_dir() -> Traversable:
    return resources.files("kamalpy.config").joinpath("sections")


def section_names() -> list[str]:
    """Every documented section (file names without ``.md``)."""
    return sorted(entry.name[:-3] for entry in _sections_dir().iterdir() if entry.name.endswith(".md"))


def section_text(name: str) -> str | None:
    """The text of a section, or None. Only names from the package listing are read (no paths)."""
    name = SECTION_ALIASES.get(name, name)
    if name not in section_names():
        return None
    return _sections_dir().joinpath(f"{name}.md").read_text(encoding="utf-8")


def config_key_text(key: ConfigKey) -> str:
    """How ``kamalpy docs KEY`` shows a plugin-owned root key."""
    lines = [f"# {key.name} (a plugin's root key)", ""]
    if key.description:
        lines += [key.description.strip(), ""]
    lines += ["Default: " + json.dumps(key.default), "", "Schema:", ""]
    lines.append(json.dumps(key.schema, indent=2, sort_keys=True))
    return "\n".join(lines) + "\n"


def plugin_keys_text(keys: dict[str, ConfigKey]) -> str:
    """The list of plugin keys appended to the extensions page."""
    if not keys:
        return "\n## Keys declared by the loaded plugins\n\nNone.\n"
    lines = ["", "## Keys declared by the loaded plugins", ""]
    for name in sorted(keys):
        summary = keys[name].description.strip().splitlines()[0] if keys[name].description.strip() else ""
        lines.append(f"- `{name}`" + (f": {summary}" if summary else "") + f" (see `kamalpy docs {name}`)")
    return "\n".join(lines) + "\n"


def complete_sections(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """``kamalpy docs <TAB>``: the sections, their root-key aliases and the loaded plugins' keys."""
    names = [*section_names(), *SECTION_ALIASES]
    try:
        names += list(ctx.find_root().obj.hooks.config_keys())
    except Exception:  # a plugin that fails to load must not break the shell's completion
        pass
    return matching(names, incomplete)


@command("docs", short_help="Show the configuration documentation.")
@click.argument("section", required=False, shell_complete=complete_sections)
def docs_command(section: str | None) -> None:
    """Show the documentation of a config section (default: configuration), or of a plugin's key."""
    name = section or DEFAULT_SECTION
    text = section_text(name)
    if text is not None:
        if SECTION_ALIASES.get(name, name) == EXTENSIONS_SECTION:
            text = text.rstrip("\n") + "\n" + plugin_keys_text(current_run().hooks.config_keys())
        click.echo(text, nl=not text.endswith("\n"))
        return
    keys = current_run().hooks.config_keys()
    if name in keys:
        click.echo(config_key_text(keys[name]), nl=False)
        return
    raise DocumentationNotFound(f"No documentation found for {name}")


def _templates() -> Traversable:
    return resources.files("kamalpy.builtin_plugins").joinpath("templates")


def _copy(source: Traversable, target: Path, mode: int | None = None) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        if mode is not None:
            target.chmod(mode)  # package data does not keep the executable bit
    except OSError as error:
        raise KamalpyError(f"Could not create {target}: {error.strerror or error}") from None


def init_files(root: Path) -> Iterator[str]:
    """Write the starter files below ``root`` as Kamal does, yielding a message after each part.

    Each of the three parts is skipped when its target exists (the hooks as a whole when the
    hooks directory exists), so re-running never overwrites anything.
    """
    deploy_file = root / DEPLOY_FILE
    if deploy_file.exists():
        yield f"Config file already exists in {DEPLOY_FILE} (remove first to create a new one)"
    else:
        _copy(_templates().joinpath("deploy.yml"), deploy_file)
        yield f"Created configuration file in {DEPLOY_FILE}"

    secrets_file = root / SECRETS_FILE
    if not secrets_file.exists():
        _copy(_templates().joinpath("secrets"), secrets_file)
        yield f"Created {SECRETS_FILE} file"

    hooks_dir = root / HOOKS_DIR
    if not hooks_dir.exists():
        for sample in sorted(_templates().joinpath("hooks").iterdir(), key=lambda entry: entry.name):
            if sample.name.endswith(".sample"):
                _copy(sample, hooks_dir / sample.name, EXECUTABLE)
        yield f"Created sample hooks in {HOOKS_DIR}"


BUNDLE_REFUSED = ("--bundle adds the kamal gem to the Gemfile (bundle add kamal) for Ruby's Kamal; "
                  "kamalpy is a Python package: add kamalpy to your Python dependencies instead")


@command("init", short_help="Create config, secrets and sample hook stubs.")
@click.option("--bundle", is_flag=True, help="Kamal's option to add the kamal gem to the Gemfile: refused (see docs).")
def init_command(bundle: bool) -> None:
    """Create config stub in config/deploy.yml, secrets stub in .kamal/secrets and sample hooks."""
    if bundle:  # refused before anything is written
        raise KamalpyError(BUNDLE_REFUSED)
    for message in init_files(Path.cwd()):
        click.echo(message)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(docs_command)
    cli.add_command(init_command)
