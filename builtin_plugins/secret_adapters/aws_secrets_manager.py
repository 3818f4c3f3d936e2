"""Built-in plugin: the ``aws_secrets_manager`` secret adapter (the ``aws`` CLI), as Kamal 2.11.

One ``aws secretsmanager batch-get-secret-value --secret-id-list IDS... [--profile ACCOUNT]
--output json`` call; ``--account`` is the optional AWS profile. A secret whose string is a JSON
object gives one key per member (``NAME/KEY``, the members' JSON types kept); any other secret
string gives the key ``NAME``.
"""

from __future__ import annotations

import json
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

COMMAND = "aws secretsmanager batch-get-secret-value"


class AwsSecretsManagerAdapter(CliAdapter):
    requires_account = False
    program = "aws"
    product = "AWS"

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for secret in _batch_get(prefixed(secrets, from_), account):
            if not isinstance(secret, dict):
                raise unexpected(COMMAND)
            name = secret.get("Name")
            string = secret.get("SecretString")
            if not isinstance(string, str):
                raise SecretsError(f"Secret {name} has no string value (binary secrets are not supported)")
            try:
                members = json.loads(string)
            except ValueError:
                members = None
            if isinstance(members, dict):
                for key, value in members.items():
                    results[f"{name}/{key}"] = value
            else:
                # Kamal 2.11 fails on a secret string that is a JSON number, array or null; it is just a value.
                results[str(name)] = string
        return results


def _batch_get(secret_ids: list[str], account: str | None) -> list[Any]:
    argv = ["aws", "secretsmanager", "batch-get-secret-value", "--secret-id-list", *secret_ids]
    if account:
        argv += ["--profile", account]
    output = run_cli([*argv, "--output", "json"])
    if not output.ok:
        # Kamal puts the command's stdout here; we name the secrets instead (stdout may hold values).
        raise SecretsError(f"Could not read {ruby_inspect(secret_ids)} from AWS Secrets Manager")
    answer = parse_json(output.stdout, COMMAND)
    if not isinstance(answer, dict):
        raise unexpected(COMMAND)
    errors = answer.get("Errors")
    if errors:
        raise SecretsError(" ".join(
            f"{error.get('SecretId')}: {error.get('Message')}" if isinstance(error, dict) else str(error)
            for error in errors
        ))
    values = answer.get("SecretValues")
    if not isinstance(values, list):
        raise unexpected(COMMAND)
    return values


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"aws_secrets_manager": AwsSecretsManagerAdapter, "awssecretsmanager": AwsSecretsManagerAdapter}
