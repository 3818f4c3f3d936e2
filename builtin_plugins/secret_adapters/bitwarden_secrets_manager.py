"""Built-in plugin: the ``bitwarden-sm`` secret adapter (Bitwarden Secrets Manager, the ``bws`` CLI).

No account: ``bws`` authenticates with its access token (``BWS_ACCESS_TOKEN``); ``bws project list``
checks it. Names are secret ids (``bws secret get ID`` each), or a single ``all``
(``bws secret list``) or ``PROJECT_ID/all`` (``bws secret list PROJECT_ID``). Keys are the secrets'
``key`` fields. As with Kamal 2.11.
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

PRODUCT = "Bitwarden Secrets Manager"


class BitwardenSecretsManagerAdapter(CliAdapter):
    requires_account = False
    program = "bws"
    product = PRODUCT

    def login(self, account: str | None) -> None:
        if not run_cli(["bws", "project", "list"]).ok:
            raise SecretsError(f"Could not authenticate to {PRODUCT}. Did you set a valid access token?")

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        if not secrets:
            raise SecretsError(f"You must specify what to retrieve from {PRODUCT}")
        secrets = prefixed(secrets, from_)
        results: dict[str, Any] = {}
        list_command = _list_command(secrets)
        if list_command is None:
            for secret_id in secrets:
                output = run_cli(["bws", "secret", "get", secret_id])
                if not output.ok:
                    raise SecretsError(f"Could not read {secret_id} from {PRODUCT}")
                _add(results, [parse_json(output.stdout, "bws secret get")], "bws secret get")
        else:
            output = run_cli(list_command)
            if not output.ok:
                raise SecretsError(f"Could not read secrets from {PRODUCT}")
            items = parse_json(output.stdout, "bws secret list")
            if not isinstance(items, list):
                raise unexpected("bws secret list")
            _add(results, items, "bws secret list")
        return results


def _list_command(secrets: list[str]) -> list[str] | None:
    """``bws secret list [PROJECT]`` for a single ``all`` or ``PROJECT/all``, else None."""
    if len(secrets) != 1:
        return None
    if secrets[0] == "all":
        return ["bws", "secret", "list"]
    if secrets[0].endswith("/all"):
        parts = ruby_split(secrets[0], "/all")
        return ["bws", "secret", "list", parts[0] if parts else ""]
    return None


def _add(results: dict[str, Any], items: list[Any], command: str) -> None:
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise unexpected(command)
        results[item["key"]] = item.get("value")


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {
        "bitwarden-sm": BitwardenSecretsManagerAdapter,
        "bitwarden_secrets_manager": BitwardenSecretsManagerAdapter,
        "bitwardensecretsmanager": BitwardenSecretsManagerAdapter,
    }
