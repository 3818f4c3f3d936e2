"""Built-in plugin: the ``doppler`` secret adapter (the ``doppler`` CLI), as Kamal 2.11 drives it.

No account. Login: ``doppler me --json`` checks the session, else ``doppler login -y``. Names are
``PROJECT/CONFIG/NAME`` or ``NAME`` with ``--from PROJECT/CONFIG``; the project and config of the
first name go to ``doppler secrets get NAMES... --json -p PROJECT -c CONFIG``. With a service token
(``DOPPLER_TOKEN`` starting ``dp.st``) the token fixes project and config, so no ``-p``/``-c``.
Keys are the plain names, values Doppler's ``computed`` values.
"""

from __future__ import annotations

import os
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

MISSING_PROJECT = "Missing project or config from '--from=project/config' option"


class DopplerAdapter(CliAdapter):
    requires_account = False
    program = "doppler"
    product = "Doppler"

    def login(self, account: str | None) -> None:
        if run_cli(["doppler", "me", "--json"], quiet=True).ok:
            return
        if not run_cli(["doppler", "login", "-y"]).ok:
            raise SecretsError("Failed to login to Doppler")

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        secrets = prefixed(secrets, from_)
        flags: list[str] = []
        if not _service_token_set():
            parts = ruby_split(secrets[0], "/") if secrets else []
            if len(parts) < 2:
                raise SecretsError(MISSING_PROJECT)
            flags = ["-p", parts[0], "-c", parts[1]]
        names = [(ruby_split(secret, "/") or [""])[-1] for secret in secrets]
        output = run_cli(["doppler", "secrets", "get", *names, "--json", *flags])
        if not output.ok:
            raise SecretsError(f"Could not read {ruby_inspect(secrets)} from Doppler")
        items = parse_json(output.stdout, "doppler secrets get")
        if not isinstance(items, dict) or not all(isinstance(value, dict) for value in items.values()):
            raise unexpected("doppler secrets get")
        return {name: value.get("computed") for name, value in items.items()}


def _service_token_set() -> bool:
    return os.environ.get("DOPPLER_TOKEN", "").startswith("dp.st")


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"doppler": DopplerAdapter}
