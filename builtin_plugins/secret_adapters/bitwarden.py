"""Built-in plugin: the ``bitwarden`` secret adapter (the ``bw`` CLI), as Kamal 2.11 drives it.

``--account`` is the Bitwarden email. Login: ``bw status`` (JSON); ``bw login EMAIL`` when
unauthenticated; ``bw unlock --raw`` when locked, whose output is the session passed to later
calls as ``BW_SESSION`` in their environment; then ``bw sync``. Names are ``ITEM`` (the login
password, or every custom field of an item that is not a login) or ``ITEM/FIELD`` (a custom field);
keys are ``ITEM`` and ``ITEM/FIELD``.
"""

from __future__ import annotations

from typing import Any

from kamalpy.builtin_plugins.secret_adapters.base import (
    CliAdapter,
    parse_json,
    prefixed,
    ruby_split,
    run_cli,
    unexpected,
)
from kamalpy.errors import SecretsError
from kamalpy.plugin import SecretAdapter, hookimpl


class BitwardenAdapter(CliAdapter):
    requires_account = True
    program = "bw"
    product = "Bitwarden"

    def login(self, account: str | None) -> str | None:
        session: str | None = None
        status = _status(None)
        if status == "unauthenticated":
            _bw(["login", str(account)], None)  # interactive; the status afterwards tells
            status = _status(None)
        if status == "locked":
            session = _bw(["unlock", "--raw"], None).stdout.strip() or None
            status = _status(session)
        if status != "unlocked":
            raise SecretsError("Failed to login to and unlock Bitwarden")
        if not _bw(["sync"], session).ok:
            raise SecretsError("Failed to sync Bitwarden")
        return session

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for item, fields in _items_fields(prefixed(secrets, from_)).items():
            output = _bw(["get", "item", item], session)
            if not output.ok:
                raise SecretsError(f"Could not read {item} from Bitwarden")
            item_json = parse_json(output.stdout.strip(), "bw get item")
            if not isinstance(item_json, dict):
                raise unexpected("bw get item")
            login = item_json.get("login")
            password = login.get("password") if isinstance(login, dict) else None
            if any(field is not None for field in fields):
                results.update(_from_fields(fields, item, item_json))
            elif password is not None:
                results[item] = password
            elif item_json.get("fields"):
                names = [field.get("name") if isinstance(field, dict) else None for field in item_json["fields"]]
                results.update(_from_fields(names, item, item_json))
            else:
                raise SecretsError(f"Item {item} is not a login type item and no fields were specified")
        return results


def _bw(args: list[str], session: str | None) -> Any:
    return run_cli(["bw", *args], env={"BW_SESSION": session} if session else None)


def _status(session: str | None) -> Any:
    status = parse_json(_bw(["status"], session).stdout.strip(), "bw status")
    return status.get("status") if isinstance(status, dict) else None


def _items_fields(secrets: list[str]) -> dict[str, list[str | None]]:
    """``{item: [field or None, ...]}``: the first two parts of each ``ITEM/FIELD`` name."""
    items: dict[str, list[str | None]] = {}
    for secret in secrets:
        parts = ruby_split(secret, "/")
        item = parts[0] if parts else ""
        items.setdefault(item, []).append(parts[1] if len(parts) > 1 else None)
    return items


def _from_fields(fields: list[str | None], item: str, item_json: dict[str, Any]) -> dict[str, Any]:
    custom = item_json.get("fields") if isinstance(item_json.get("fields"), list) else []
    results: dict[str, Any] = {}
    for field in fields:
        match = next((f for f in custom if isinstance(f, dict) and f.get("name") == field), None)
        if match is None:
            raise SecretsError(f"Could not find field {field or ''} in item {item} in Bitwarden")
        results[f"{item}/{field or ''}"] = match.get("value")
    return results


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"bitwarden": BitwardenAdapter}
