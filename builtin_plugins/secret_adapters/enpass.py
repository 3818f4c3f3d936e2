"""Built-in plugin: the ``enpass`` secret adapter (``enpass-cli``), as Kamal 2.11 drives it.

No account and no login: ``--from`` is the path of the vault, and ``enpass-cli`` asks for the master
password itself. Names are item titles (every password of the item) or ``TITLE/LABEL`` (one field);
one ``enpass-cli -json -vault VAULT show TITLES...`` call. Keys are ``TITLE`` or ``TITLE/LABEL``; a
key that comes back twice is an error.
"""

from __future__ import annotations

from typing import Any

from kamalpy.builtin_plugins.secret_adapters.base import CliAdapter, parse_json, run_cli, unexpected
from kamalpy.errors import SecretsError
from kamalpy.plugin import SecretAdapter, hookimpl

COMMAND = "enpass-cli show"


class EnpassAdapter(CliAdapter):
    requires_account = False
    program = "enpass-cli"
    version_args = ("version",)
    product = "Enpass"

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        if from_ is None:
            raise SecretsError("Give the path of the Enpass vault with --from")
        titles = list(dict.fromkeys(_title(secret) for secret in secrets))
        output = run_cli(["enpass-cli", "-json", "-vault", from_, "show", *titles])
        if not output.ok:  # Kamal goes on and fails parsing the empty output
            raise SecretsError(f"Could not read {', '.join(titles)} from Enpass")
        items = parse_json(output.stdout.strip(), COMMAND)
        if not isinstance(items, list):
            raise unexpected(COMMAND)
        results: dict[str, Any] = {}
        for item in items:
            if not isinstance(item, dict):
                raise unexpected(COMMAND)
            title, label, password = item.get("title"), item.get("label"), item.get("password")
            if title is None or not isinstance(password, str) or not password.strip():
                continue
            key = "/".join(part for part in (title, label) if part)
            if title in secrets or key in secrets:
                if key in results:
                    raise SecretsError(f"{key} is present more than once")
                results[key] = password
        return results


def _title(secret: str) -> str:
    """The item title of ``TITLE`` or ``TITLE/LABEL`` (split at the last slash)."""
    head, _, tail = secret.rpartition("/")
    return head or tail


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"enpass": EnpassAdapter}
