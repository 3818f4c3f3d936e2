"""Built-in plugin: the ``passbolt`` secret adapter (go-passbolt-cli), as Kamal 2.11 drives it.

No account: ``passbolt verify`` checks the CLI's configured login. Names are resource names, or
``FOLDER[/SUBFOLDER...]/NAME`` (``--from`` prefixed). Folders are looked up with ``passbolt list
folders --filter ... --json`` (top-level folders by name, then each nested level by name and parent
id); then one ``passbolt list resources --filter ... --folder ID... --json`` call. Keys are the
resource names; a name that is not found is an error.

Filters quote names as JSON strings. Kamal shell-escapes a name before quoting it, which only
differs for names with spaces or shell characters (and then matches nothing).
"""

from __future__ import annotations

import json
from typing import Any

from kamalpy.builtin_plugins.secret_adapters.base import (
    CliAdapter,
    parse_json,
    prefixed,
    ruby_inspect,
    ruby_split,
    run_cli,
    unexpected,
)
from kamalpy.errors import SecretsError
from kamalpy.plugin import SecretAdapter, hookimpl

Folder = dict[str, Any]


class PassboltAdapter(CliAdapter):
    requires_account = False
    program = "passbolt"
    product = "Passbolt"

    def login(self, account: str | None) -> None:
        if not run_cli(["passbolt", "verify"]).ok:
            raise SecretsError("Failed to login to Passbolt")

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        secrets = prefixed(secrets, from_)
        if not secrets:
            raise SecretsError("No secrets given to fetch")
        names = [_last(secret) for secret in secrets]
        folders = _folders(secrets)
        conditions: list[str] = []
        for secret in secrets:
            parts = ruby_split(secret, "/")
            name = _last(secret)
            if len(parts) > 1:
                folder = None
                for depth in range(1, len(parts)):  # the most nested folder of the path that was found
                    path = "/".join(parts[:depth])
                    folder = next((f for f in folders if _folder_path(f, folders) == path), folder)
                if folder is not None:
                    conditions.append(f"(Name == {_quote(name)} && FolderParentID == {_quote(folder.get('id'))})")
            else:
                conditions.append(f"Name == {_quote(name)}")
        argv = ["passbolt", "list", "resources"]
        if conditions:
            argv += ["--filter", " || ".join(conditions)]
        for folder in folders:
            argv += ["--folder", str(folder.get("id"))]
        output = run_cli([*argv, "--json"])
        if not output.ok:
            raise SecretsError(f"Could not read {ruby_inspect(secrets)} from Passbolt")
        items = _list(output.stdout, "passbolt list resources")
        found = {item.get("name") for item in items}
        missing = [name for name in names if name not in found]
        if missing:
            raise SecretsError(f"Could not find the following secrets in Passbolt: {', '.join(missing)}")
        return {str(item.get("name")): item.get("password") for item in items}


def _last(secret: str) -> str:
    parts = ruby_split(secret, "/")
    return parts[-1] if parts else ""


def _quote(value: Any) -> str:
    return json.dumps(str(value), ensure_ascii=False)


def _list(text: str, command: str) -> list[Folder]:
    items = parse_json(text, command)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise unexpected(command)
    return items


def _folders(secrets: list[str]) -> list[Folder]:
    """Every folder on the names' paths: top-level ones by name, nested ones level by level."""
    paths = list(dict.fromkeys(tuple(ruby_split(s, "/")[:-1]) for s in secrets if "/" in s))
    if not paths:
        return []
    parents = list(dict.fromkeys(path[0] if path else "" for path in paths))
    output = run_cli(["passbolt", "list", "folders", "--filter",
                      " || ".join(f"Name == {_quote(name)}" for name in parents), "--json"])
    if not output.ok:
        raise SecretsError("Could not read folders from Passbolt")
    top = _list(output.stdout, "passbolt list folders")
    folders = list(top)
    for path in paths:
        if len(path) <= 1:
            continue
        current = next((f for f in top if f.get("name") == path[0]), None)
        if current is None:
            continue
        for name in path[1:]:
            output = run_cli(["passbolt", "list", "folders", "--filter",
                              f"Name == {_quote(name)} && FolderParentID == {_quote(current.get('id'))}", "--json"])
            if not output.ok:
                continue  # as Kamal: try the next level under the same parent
            nested = _list(output.stdout, "passbolt list folders")
            if not nested:
                break
            folders.extend(nested)
            current = nested[0]
    found = {_folder_path(f, folders) for f in folders}
    missing = ["/".join(path) for path in paths if "/".join(path) not in found]
    if missing:
        raise SecretsError(f"Could not find the following folders in Passbolt: {', '.join(missing)}")
    return folders


def _folder_path(folder: Folder, folders: list[Folder]) -> str:
    """``parent/.../name`` of a folder, as far up as the known folders go."""
    path = [str(folder.get("name"))]
    seen = {id(folder)}
    while str(folder.get("folder_parent_id") or ""):
        parent = next((f for f in folders if f.get("id") == folder.get("folder_parent_id")), None)
        if parent is None or id(parent) in seen:  # unknown parent, or a loop in bad data
            break
        seen.add(id(parent))
        path.insert(0, str(parent.get("name")))
        folder = parent
    return "/".join(path)


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"passbolt": PassboltAdapter}
