"""Built-in plugin: ``kamalpy secrets fetch|extract|print``.

``fetch`` and ``extract`` take Kamal's hidden ``--inline`` flag: the result is returned instead of
printed (``fetch`` returns its JSON shell-escaped). That is how ``$(kamal secrets ...)`` inside a
secrets file runs in-process (see :mod:`kamalpy.secrets.store`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from kamalpy.cli.base import current_run, group
from kamalpy.plugin import hookimpl
from kamalpy.secrets import dump_json, extract_secret, fetch_secrets, shellescape

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.secrets.store import Secrets


@group("secrets")
def secrets_group() -> None:
    """Fetch secrets from password managers and show the resolved secrets."""


@secrets_group.command("fetch")
@click.argument("names", nargs=-1)
@click.option("-a", "--adapter", metavar="ADAPTER", help="Secret adapter (password manager) to fetch from.")
@click.option("--account", metavar="ACCOUNT", help="Account or user name, for adapters that need one.")
@click.option("--from", "from_", metavar="FROM", help="Vault, folder or item prefixed to every name as FROM/name.")
@click.option("--inline", is_flag=True, hidden=True)
def fetch_command(names: tuple[str, ...], adapter: str | None, account: str | None, from_: str | None,
                  inline: bool) -> str | None:
    """Fetch secrets and print them as a JSON object."""
    results = fetch_secrets(current_run().hooks, adapter, list(names), account=account, from_=from_)
    if inline:
        return shellescape(dump_json(results))
    _puts(dump_json(results))
    return None


@secrets_group.command("extract")
@click.argument("name")
@click.argument("secrets_json", metavar="SECRETS")
@click.option("--inline", is_flag=True, hidden=True)
def extract_command(name: str, secrets_json: str, inline: bool) -> str | None:
    """Print one secret from the JSON output of `secrets fetch`."""
    value = extract_secret(name, secrets_json)
    if inline:
        return value
    _puts(value)
    return None


@secrets_group.command("print")
def print_command() -> None:
    """Print every resolved secret as KEY=value (for debugging: this shows the values)."""
    for key, value in _project_secrets().to_dict().items():
        _puts(f"{key}={value}")


def _project_secrets() -> Secrets:
    """The configuration's secrets when a config file exists (Kamal needs one), else the default files."""
    from kamalpy.secrets.store import DEFAULT_SECRETS_PATH, Secrets

    run = current_run()
    destination = run.options.destination
    if not Path(run.options.config_file).exists():
        return Secrets(DEFAULT_SECRETS_PATH, destination, hooks=run.hooks)
    config = run.config
    secrets = getattr(config, "secrets", None)
    if isinstance(secrets, Secrets):
        return secrets
    return Secrets(getattr(config, "secrets_path", None) or DEFAULT_SECRETS_PATH, destination, hooks=run.hooks)


def _puts(text: str) -> None:
    """Print like Ruby's ``puts``: no second newline after a value that ends in one."""
    click.echo(text, nl=not text.endswith("\n"))


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(secrets_group)
