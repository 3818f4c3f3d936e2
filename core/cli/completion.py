"""Values for shell completion: destinations (``-d``), roles (``-r``), accessories and doc sections.

They are read from the configuration in the current directory (or ``-c``) at each TAB, so reading must be
quick, harmless and never fail: ERB tags are dropped instead of evaluated (an ERB tag may run a command,
such as a password manager's), and any file that does not read gives no values rather than an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

_ERB_TAG = re.compile(r"<%.*?%>", re.DOTALL)


def _options(ctx: click.Context) -> Any:
    """The run's global options parsed so far (``-c``/``-d`` typed before the TAB), or None."""
    run = ctx.find_root().obj
    return getattr(run, "options", None)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(_ERB_TAG.sub("", path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _config_file(ctx: click.Context) -> Path:
    options = _options(ctx)
    return Path(getattr(options, "config_file", None) or "config/deploy.yml")


def _raw_config(ctx: click.Context) -> dict[str, Any]:
    """The configuration file merged with the destination's (when ``-d`` was typed), unvalidated."""
    from kamalpy.config.loader import deep_merge, destination_file

    config_file = _config_file(ctx)
    raw = _read_yaml(config_file)
    destination = getattr(_options(ctx), "destination", None)
    if destination:
        try:
            raw = deep_merge(raw, _read_yaml(destination_file(config_file, destination)))
        except (TypeError, ValueError, AttributeError):
            pass
    return raw


def matching(names: list[str], incomplete: str) -> list[str]:
    """The names that start with what was typed, sorted, once each (click makes them completion items)."""
    return [name for name in sorted(dict.fromkeys(names)) if name.startswith(incomplete)]


def _list_items(names: list[str], incomplete: str) -> list[str]:
    """Completion of the last entry of a comma-separated list (``-r web,wo<TAB>``)."""
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    taken = set(done.split(",")) if done else set()
    return [prefix + name for name in matching([n for n in names if n not in taken], last)]


def complete_destinations(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The DEST of every ``deploy.DEST.yml`` beside the configuration file."""
    config_file = _config_file(ctx)
    stem, suffix = config_file.stem, config_file.suffix or ".yml"
    try:
        files = list(config_file.parent.glob(f"{stem}.*{suffix}"))
    except OSError:
        return []
    names = [path.name[len(stem) + 1:-len(suffix)] for path in files]
    return matching([name for name in names if name and "." not in name], incomplete)


def complete_roles(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The roles of ``servers:`` (``web`` for a plain list of hosts)."""
    servers = _raw_config(ctx).get("servers")
    names = [str(name) for name in servers] if isinstance(servers, dict) else ["web"] if servers else []
    return _list_items(names, incomplete)


def complete_accessories(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The names under ``accessories:``, and ``all``."""
    accessories = _raw_config(ctx).get("accessories")
    names = [str(name) for name in accessories] if isinstance(accessories, dict) else []
    return matching([*names, "all"], incomplete)
