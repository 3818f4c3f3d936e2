"""Built-in plugin: the ``1password`` secret adapter (the ``op`` CLI), as Kamal 2.11 drives it.

Names are ``[op://]VAULT/ITEM[/FIELD[/SUBFIELD...]]`` (after ``--from`` prefixing); the field is
``password`` when left out, and subfield parts are joined with ``.`` into one field label. One
``op item get`` per item asks for all of its fields. Result keys come from each field's
``reference`` without ``op://`` and without a final ``/password``. With no names, every field of
the ``--from`` item is fetched.
"""

from __future__ import annotations

from typing import Any

from kamalpy.builtin_plugins.secret_adapters.base import CliAdapter, parse_json, prefixed, run_cli, unexpected
from kamalpy.errors import SecretsError
from kamalpy.plugin import SecretAdapter, hookimpl


class OnePasswordAdapter(CliAdapter):
    requires_account = True
    program = "op"
    product = "1Password"

    def login(self, account: str | None) -> str | None:
        if run_cli(["op", "account", "get", "--account", str(account)], quiet=True).ok:
            return None
        output = run_cli(["op", "signin", "--account", str(account), "--force", "--raw"])
        if not output.ok:
            raise SecretsError("Failed to login to 1Password")
        # Kamal passes the token with its newline (as a literal `\n`), which op rejects: we strip it.
        return output.stdout.strip() or None

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        results: dict[str, Any] = {}
        if not secrets:
            vault, item = _vault_item(from_)
            item_json = parse_json(_item_get(vault, item, None, account, session), "op item get")
            if not isinstance(item_json, dict) or not isinstance(item_json.get("fields"), list):
                raise unexpected("op item get")
            results.update(_fields_map(item_json["fields"]))
            return results
        for vault, items in _vaults_items_fields(prefixed(secrets, from_)).items():
            for item, fields in items.items():
                fields_json = parse_json(_item_get(vault, item, fields, account, session), "op item get")
                if len(fields) == 1:
                    fields_json = [fields_json]
                if not isinstance(fields_json, list):
                    raise unexpected("op item get")
                results.update(_fields_map(fields_json))
        return results


def _vault_item(from_: str | None) -> tuple[str, str]:
    if not from_:
        raise SecretsError("Give the item to fetch all fields of with --from VAULT/ITEM")
    parts = from_.removeprefix("op://").split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise SecretsError("Give the item to fetch all fields of with --from VAULT/ITEM")
    return parts[0], parts[1]


def _vaults_items_fields(secrets: list[str]) -> dict[str, dict[str, list[str]]]:
    """``{vault: {item: [field label, ...]}}``, in the order the names were given."""
    vaults: dict[str, dict[str, list[str]]] = {}
    for secret in secrets:
        parts = [part for part in secret.removeprefix("op://").split("/")]
        while parts and parts[-1] == "":  # as Ruby's split
            parts.pop()
        if len(parts) < 2:
            raise SecretsError(f"Give the secret as VAULT/ITEM[/FIELD] (or use --from VAULT/ITEM): {secret}")
        vault, item, fields = parts[0], parts[1], parts[2:] or ["password"]
        vaults.setdefault(vault, {}).setdefault(item, []).append(".".join(fields))
    return vaults


def _item_get(vault: str, item: str, fields: list[str] | None, account: str | None, session: str | None) -> str:
    argv = ["op", "item", "get", item, "--vault", vault, "--format", "json", "--account", str(account)]
    if session:
        argv += ["--session", session]
    if fields:
        argv += ["--fields", ",".join(f"label={field}" for field in fields)]
    output = run_cli(argv)
    if not output.ok:
        which = f"{', '.join(fields)} " if fields else ""
        raise SecretsError(f"Could not read {which}from {item} in the {vault} 1Password vault")
    return output.stdout


def _fields_map(fields_json: list[Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for field in fields_json:
        if not isinstance(field, dict) or not isinstance(field.get("reference"), str):
            raise unexpected("op item get")
        key = field["reference"].removeprefix("op://").removesuffix("/password")
        results[key] = field.get("value")
    return results


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"1password": OnePasswordAdapter, "one_password": OnePasswordAdapter, "onepassword": OnePasswordAdapter}
