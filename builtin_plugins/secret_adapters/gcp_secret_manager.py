"""Built-in plugin: the ``gcp`` secret adapter (Google Secret Manager, the ``gcloud`` CLI), as Kamal 2.11.

``--account`` is ``USER`` or ``USER|SA1[,SA2...]`` (service accounts to impersonate, a delegation
chain); ``default`` as the user means gcloud's active account. Login: ``gcloud auth list
--format=json`` must list an account, else ``gcloud auth login`` runs and the list is checked again.
Names are ``NAME``, ``PROJECT/NAME`` or ``PROJECT/NAME/VERSION`` after ``--from`` prefixing
(project ``default``: gcloud's default project; version ``latest`` when left out). One
``gcloud secrets versions access`` per secret; the payload is base64-decoded. Keys are
``PROJECT/NAME``.
"""

from __future__ import annotations

import base64
import binascii
import re
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


class GcpSecretManagerAdapter(CliAdapter):
    requires_account = True
    program = "gcloud"
    product = "gcloud"

    def login(self, account: str | None) -> None:
        if not _logged_in():
            run_cli(["gcloud", "auth", "login"])
            if not _logged_in():
                raise SecretsError("could not login to gcloud")

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        user, _, chain = str(account).partition("|")
        service_account = chain if "|" in str(account) else None
        results: dict[str, Any] = {}
        for project, name, version in _with_metadata(prefixed(secrets, from_)).values():
            key = f"{project}/{name}"
            argv = ["gcloud", "secrets", "versions", "access", version, f"--secret={name}"]
            if project != "default":
                argv.append(f"--project={project}")
            if user != "default":
                argv.append(f"--account={user}")
            if service_account is not None:
                argv.append(f"--impersonate-service-account={service_account}")
            output = run_cli([*argv, "--format=json"])
            if not output.ok:
                raise SecretsError(f"Could not read {key} from Google Secret Manager")
            secret = parse_json(output.stdout.strip(), "gcloud secrets versions access")
            payload = secret.get("payload") if isinstance(secret, dict) else None
            data = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(data, str):
                raise unexpected("gcloud secrets versions access")
            results[key] = _decode(data, key)
        return results


def _logged_in() -> bool:
    accounts = parse_json(run_cli(["gcloud", "auth", "list", "--format=json"]).stdout, "gcloud auth list")
    return bool(accounts)


def _with_metadata(secrets: list[str]) -> dict[str, tuple[str, str, str]]:
    """``{secret: (project, name, version)}``; a repeated name is fetched once."""
    items: dict[str, tuple[str, str, str]] = {}
    for secret in secrets:
        parts = ruby_split(secret, "/")
        if len(parts) == 1:
            parts.insert(0, "default")
        if len(parts) < 2:
            raise SecretsError(f"Give the secret as [PROJECT/]NAME[/VERSION]: {secret}")
        items[secret] = (parts[0], parts[1], parts[2] if len(parts) > 2 else "latest")
    return items


def _decode(data: str, key: str) -> str:
    """Base64 as leniently as Ruby's ``Base64.decode64`` (stray characters and padding ignored)."""
    cleaned = re.sub(r"[^A-Za-z0-9+/]", "", data)
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except binascii.Error:
        raise SecretsError(f"Could not decode {key} from Google Secret Manager") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretsError(f"Secret {key} from Google Secret Manager is not UTF-8 text") from None


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"gcp": GcpSecretManagerAdapter, "gcp_secret_manager": GcpSecretManagerAdapter,
            "gcpsecretmanager": GcpSecretManagerAdapter}
