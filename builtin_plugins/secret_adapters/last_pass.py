"""Built-in plugin: the ``lastpass`` secret adapter (the ``lpass`` CLI), as Kamal 2.11 drives it.

``--account`` is the LastPass email. Login: ``lpass status --color never`` must print ``Logged in as
EMAIL.``, else ``lpass login EMAIL`` runs (it prompts). One ``lpass show NAMES... --json`` call;
names (``--from`` prefixed as ``FOLDER/NAME``) are matched with each entry's ``fullname``, which is
the key. A name that is not found is an error.
"""

from __future__ import annotations

from typing import Any

from kamalpy.builtin_plugins.secret_adapters.base import (
    CliAdapter,
    parse_json,
    prefixed,
    ruby_inspect,
    run_cli,
    unexpected,
)
from kamalpy.errors import SecretsError
from kamalpy.plugin import SecretAdapter, hookimpl


class LastPassAdapter(CliAdapter):
    requires_account = True
    program = "lpass"
    product = "LastPass"

    def login(self, account: str | None) -> None:
        status = run_cli(["lpass", "status", "--color", "never"]).stdout.strip()
        if status == f"Logged in as {account}.":
            return
        if not run_cli(["lpass", "login", str(account)]).ok:
            raise SecretsError("Failed to login to LastPass")

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        secrets = prefixed(secrets, from_)
        output = run_cli(["lpass", "show", *secrets, "--json"])
        if not output.ok:
            raise SecretsError(f"Could not read {ruby_inspect(secrets)} from LastPass")
        items = parse_json(output.stdout, "lpass show")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise unexpected("lpass show")
        results = {str(item.get("fullname") or ""): item.get("password") for item in items}
        missing = [secret for secret in secrets if secret not in results]
        if missing:
            raise SecretsError(f"Could not find {', '.join(missing)} in LastPass")
        return results


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"lastpass": LastPassAdapter, "last_pass": LastPassAdapter}
