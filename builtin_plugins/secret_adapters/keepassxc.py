"""Built-in plugin: the ``keepassxc`` secret adapter (``keepassxc-cli`` on a local ``.kdbx`` database).

Kamal has no such adapter. No account: ``--from`` is the database path (else ``KEEPASSXC_DATABASE``).
The database password comes from ``KEEPASSXC_PASSWORD`` and is written to keepassxc-cli's stdin, never
put on a command line; without it keepassxc-cli asks on the terminal, when there is one.
``KEEPASSXC_KEY_FILE`` adds a key file.

The database is unlocked once: ``keepassxc-cli export -f xml`` prints every entry, which is parsed
here (its XML keeps multi-line values intact, unlike ``show -a``). Names are entry paths
``GROUP/ENTRY`` (root group not included) for the entry's password, or ``GROUP/ENTRY/ATTRIBUTE`` for
another attribute (``UserName``, ``URL``, ``Notes``, a custom one). Keys are the names as asked.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from typing import Any

from kamalpy.builtin_plugins.secret_adapters.base import CliAdapter
from kamalpy.errors import SecretsError
from kamalpy.plugin import SecretAdapter, hookimpl

PROGRAM = "keepassxc-cli"
DATABASE_ENV = "KEEPASSXC_DATABASE"
PASSWORD_ENV = "KEEPASSXC_PASSWORD"
KEY_FILE_ENV = "KEEPASSXC_KEY_FILE"
#: stands for an entry path that two entries share
AMBIGUOUS: dict[str, str] = {}


class KeePassXCAdapter(CliAdapter):
    requires_account = False
    program = PROGRAM
    product = "KeePassXC"

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        database = from_ or os.environ.get(DATABASE_ENV)
        if not database:
            raise SecretsError(f"Give the path of the KeePassXC database with --from or {DATABASE_ENV}")
        database = os.path.expanduser(database)
        if not os.path.isfile(database):
            raise SecretsError(f"KeePassXC database not found: {database}")
        entries = read_entries(export_xml(database))
        results: dict[str, Any] = {}
        missing = []
        for name in secrets:
            value = lookup(entries, name)
            if value is None:
                missing.append(name)
            else:
                results[name] = value
        if missing:
            raise SecretsError(f"Could not find {', '.join(missing)} in the KeePassXC database")
        return results


def export_xml(database: str) -> str:
    """The database as XML; the password goes to keepassxc-cli's stdin (or it prompts on the terminal)."""
    argv = [PROGRAM, "export", "-f", "xml"]
    key_file = os.environ.get(KEY_FILE_ENV)
    if key_file:
        argv += ["-k", os.path.expanduser(key_file)]
    password = os.environ.get(PASSWORD_ENV)
    if password is None and not has_terminal():
        raise SecretsError(f"Set {PASSWORD_ENV} to unlock the KeePassXC database (no terminal to ask on)")
    # With the password given, its prompt and any error are captured and turned into one line;
    # on a terminal keepassxc-cli prompts (on stderr) and reads the password itself.
    try:
        process = subprocess.run(
            [*argv, database],
            input=None if password is None else password + "\n",
            stdout=subprocess.PIPE,
            stderr=None if password is None else subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
    except OSError:
        raise SecretsError("KeePassXC CLI is not installed") from None
    if process.returncode != 0:
        if "Invalid credentials" in (process.stderr or ""):
            raise SecretsError(f"Wrong password or key file for the KeePassXC database {database}")
        raise SecretsError(f"Could not open the KeePassXC database {database}")
    return process.stdout


def has_terminal() -> bool:
    """Whether keepassxc-cli, which inherits our stdin, can ask for the password on a terminal."""
    return os.isatty(0)


def read_entries(text: str) -> dict[str, dict[str, str]]:
    """``GROUP/ENTRY`` path -> the entry's attributes, from an export (older versions in History skipped)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        raise SecretsError(f"Could not parse the output of `{PROGRAM} export`") from None
    top = root.find("Root/Group")
    entries: dict[str, dict[str, str]] = {}
    if top is not None:
        _walk(top, "", entries)
    return entries


def _walk(group: ET.Element, prefix: str, entries: dict[str, dict[str, str]]) -> None:
    for entry in group.findall("Entry"):
        attributes = {(s.findtext("Key") or ""): (s.findtext("Value") or "") for s in entry.findall("String")}
        path = prefix + attributes.get("Title", "")
        entries[path] = AMBIGUOUS if path in entries else attributes
    for child in group.findall("Group"):
        _walk(child, f"{prefix}{child.findtext('Name') or ''}/", entries)


def lookup(entries: dict[str, dict[str, str]], name: str) -> str | None:
    """The value a name asks for: an entry's password, or ``ENTRY/ATTRIBUTE``; None when there is none."""
    path = name.lstrip("/")  # keepassxc-cli accepts a leading slash too
    if path in entries:
        return _attribute(name, entries[path], "Password")
    head, _, attribute = path.rpartition("/")
    if head in entries:
        return _attribute(name, entries[head], attribute)
    return None


def _attribute(name: str, attributes: dict[str, str], attribute: str) -> str | None:
    if attributes is AMBIGUOUS:
        raise SecretsError(f"{name} matches more than one entry in the KeePassXC database")
    if attribute in attributes:
        return attributes[attribute]
    # Like keepassxc-cli's `show -a`, attribute names also match ignoring case (`username`).
    matches = [value for key, value in attributes.items() if key.lower() == attribute.lower()]
    return matches[0] if len(matches) == 1 else None


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"keepassxc": KeePassXCAdapter}
