"""Built-in plugin: ``config`` and ``plugins``."""

from __future__ import annotations

import json

import click

from kamalpy.cli.aliases import check_aliases
from kamalpy.cli.base import command, current_run
from kamalpy.plugin import hookimpl


@command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def config_command(as_json: bool) -> None:
    """Show the combined config (including secrets, redacted)."""
    run = current_run()
    # Kamal's config prints the whole configuration, but still rejects -h/-r filters that match nothing.
    run.config.specifics(run.options.hosts, run.options.roles, run.options.primary)
    check_aliases(run.config.aliases)  # an alias that cannot run is a configuration error
    data = run.config.to_h()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))  # YAML dates (raw accessory values) as text
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True), nl=False)


REGISTRY_HOOKS = ("kamalpy_builders", "kamalpy_registry_strategies", "kamalpy_proxy_drivers", "kamalpy_transports",
                  "kamalpy_secret_adapters", "kamalpy_flow_steps", "kamalpy_output_views")


@command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def plugins_command(as_json: bool) -> None:
    """List the loaded plugins and the hooks each implements."""
    hooks = current_run().hooks
    infos = hooks.pm.plugin_infos()
    # Which plugin provides each name of the {name: class} hooks (the override rule picks one per name).
    provides: dict[str, dict[str, list[str]]] = {}
    for hook in REGISTRY_HOOKS:
        for name, plugin in hooks.registry_winners(hook).items():
            provides.setdefault(plugin, {}).setdefault(hook, []).append(name)
    if as_json:
        click.echo(json.dumps([{**info.__dict__, "provides": provides.get(info.name, {})} for info in infos],
                              indent=2))
        return
    for info in infos:
        click.echo(f"{info.name}  ({info.distribution} {info.version})")
        for hook in info.hooks:
            click.echo(f"    {hook}")
        for hook, names in provides.get(info.name, {}).items():
            click.echo(f"    provides {hook}: {', '.join(sorted(names))}")


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(config_command)
    cli.add_command(plugins_command)
