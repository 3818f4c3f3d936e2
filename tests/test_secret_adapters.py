"""The built-in password-manager adapters, each against a fake of its CLI, and against Kamal 2.11.

Every case installs fakes (tests/fake_clis/fake_cli.py under the vendor's program name) first on
PATH; the fakes answer in the vendor's output format from the case's rules and log each call. A
case states the exact calls (arguments, and ``BW_SESSION``/``DOPPLER_TOKEN`` where set) and the
printed JSON or the error. Secret values in the fakes' answers contain ``SV`` so a test can check
that no value reaches an error. Tests marked ``kamal`` run Kamal on the same fakes and compare.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kamalpy.cli.main import main
from kamalpy.hooks import Hooks
from kamalpy.plugins import build_plugin_manager

FAKE_CLI = Path(__file__).parent / "fake_clis" / "fake_cli.py"
LOGGED_ENV = ("BW_SESSION", "DOPPLER_TOKEN", "BWS_ACCESS_TOKEN")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def rule(cli: str, *argv: str, out: Any = "", exit: int = 0, err: str = "", when: str | None = None,
         then: str | None = None, env: dict[str, str | None] | None = None) -> dict[str, Any]:
    """A fake's answer to one exact call; ``out`` that is not a string is written as JSON."""
    answer: dict[str, Any] = {"cli": cli, "argv": list(argv), "exit": exit, "stderr": err,
                              "stdout": out if isinstance(out, str) else json.dumps(out)}
    answer.update({k: v for k, v in (("when", when), ("then", then), ("env", env)) if v is not None})
    return answer


def version(cli: str) -> dict[str, Any]:
    args = ("version",) if cli == "enpass-cli" else ("--version",)
    return rule(cli, *args, out="1.0.0\n")


@dataclass
class Case:
    id: str
    args: list[str]  # after `secrets fetch`
    rules: list[dict[str, Any]]
    calls: list[list[Any]]  # [cli, *argv] (+ {env} when an adapter variable is set)
    output: dict[str, Any] | None = None
    error: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    state: str | None = None
    kamal_differs: str = ""  # why Kamal 2.11 behaves differently (the case is then not compared)

    @property
    def clis(self) -> set[str]:
        return {r["cli"] for r in self.rules} | {c[0] for c in self.calls}


# --- 1password ----------------------------------------------------------------------------------------

def op_field(ref: str, value: str, label: str = "password") -> dict[str, Any]:
    return {"id": label, "type": "CONCEALED", "label": label, "value": value, "reference": ref}


OP_GET = ["item", "get"]
OP_OPTS = ["--format", "json", "--account", "acme"]
CASES = [
    Case("1password-signin", ["-a", "1password", "--account", "acme", "--from", "Vault/Item", "a", "s/f"],
         [version("op"), rule("op", "account", "get", "--account", "acme", exit=1, err="not signed in\n"),
          rule("op", "signin", "--account", "acme", "--force", "--raw", out="TOKEN\n"),
          rule("op", *OP_GET, "Item", "--vault", "Vault", *OP_OPTS, "--session", "TOKEN", "--fields",
               "label=a,label=s.f", out=[op_field("op://Vault/Item/a", "SV1", "a"),
                                         op_field("op://Vault/Item/s/f", "SV2", "f")])],
         [["op", "--version"], ["op", "account", "get", "--account", "acme"],
          ["op", "signin", "--account", "acme", "--force", "--raw"],
          ["op", *OP_GET, "Item", "--vault", "Vault", *OP_OPTS, "--session", "TOKEN", "--fields",
           "label=a,label=s.f"]],
         output={"Vault/Item/a": "SV1", "Vault/Item/s/f": "SV2"},
         kamal_differs="Kamal passes the session as `TOKEN\\n` (a literal backslash-n), which op rejects"),
    Case("1password-signed-in", ["-a", "1Password", "--account", "acme", "op://V/I1", "V/I1/user", "V/I2/pw"],
         [version("op"), rule("op", "account", "get", "--account", "acme", out="{}"),
          rule("op", *OP_GET, "I1", "--vault", "V", *OP_OPTS, "--fields", "label=password,label=user",
               out=[op_field("op://V/I1/password", "SV1"), op_field("op://V/I1/user", "SV2", "user")]),
          rule("op", *OP_GET, "I2", "--vault", "V", *OP_OPTS, "--fields", "label=pw",
               out=op_field("op://V/I2/pw", "SV3", "pw"))],
         [["op", "--version"], ["op", "account", "get", "--account", "acme"],
          ["op", *OP_GET, "I1", "--vault", "V", *OP_OPTS, "--fields", "label=password,label=user"],
          ["op", *OP_GET, "I2", "--vault", "V", *OP_OPTS, "--fields", "label=pw"]],
         output={"V/I1": "SV1", "V/I1/user": "SV2", "V/I2/pw": "SV3"}),
    Case("1password-whole-item", ["-a", "one_password", "--account", "acme", "--from", "op://V/I"],
         [version("op"), rule("op", "account", "get", "--account", "acme", out="{}"),
          rule("op", *OP_GET, "I", "--vault", "V", *OP_OPTS,
               out={"id": "x", "title": "I", "fields": [op_field("op://V/I/password", "SV1"),
                                                        op_field("op://V/I/Sec/TOKEN", "SV2", "TOKEN")]})],
         [["op", "--version"], ["op", "account", "get", "--account", "acme"],
          ["op", *OP_GET, "I", "--vault", "V", *OP_OPTS]],
         output={"V/I": "SV1", "V/I/Sec/TOKEN": "SV2"}),
    Case("1password-signin-fails", ["-a", "1password", "--account", "acme", "V/I"],
         [version("op"), rule("op", "account", "get", "--account", "acme", exit=1),
          rule("op", "signin", "--account", "acme", "--force", "--raw", exit=1)],
         [["op", "--version"], ["op", "account", "get", "--account", "acme"],
          ["op", "signin", "--account", "acme", "--force", "--raw"]],
         error="Failed to login to 1Password"),
    Case("1password-not-found", ["-a", "1password", "--account", "acme", "V/I", "V/I/x"],
         [version("op"), rule("op", "account", "get", "--account", "acme", out="{}"),
          rule("op", *OP_GET, "I", "--vault", "V", *OP_OPTS, "--fields", "label=password,label=x", exit=1,
               err='[ERROR] "I" isn\'t an item in the "V" vault\n')],
         [["op", "--version"], ["op", "account", "get", "--account", "acme"],
          ["op", *OP_GET, "I", "--vault", "V", *OP_OPTS, "--fields", "label=password,label=x"]],
         error="Could not read password, x from I in the V 1Password vault"),
    Case("1password-not-installed", ["-a", "1password", "--account", "acme", "V/I"],
         [rule("op", "--version", exit=1)], [["op", "--version"]], error="1Password CLI is not installed"),
    Case("1password-malformed", ["-a", "1password", "--account", "acme", "V/I"],
         [version("op"), rule("op", "account", "get", "--account", "acme", out="{}"),
          rule("op", *OP_GET, "I", "--vault", "V", *OP_OPTS, "--fields", "label=password", out="SV1 {oops")],
         [["op", "--version"], ["op", "account", "get", "--account", "acme"],
          ["op", *OP_GET, "I", "--vault", "V", *OP_OPTS, "--fields", "label=password"]],
         error="Could not parse the output of `op item get` as JSON",
         kamal_differs="Kamal shows Ruby's JSON parser error, which quotes the output"),
]

# --- bitwarden ----------------------------------------------------------------------------------------


def bw_status(status: str) -> dict[str, Any]:
    return {"serverUrl": None, "lastSync": "2025-01-01T00:00:00.000Z", "userEmail": "me@example.com",
            "userId": "u1", "status": status}


def bw_item(name: str, password: str | None = None, fields: dict[str, str] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"object": "item", "id": f"id-{name}", "type": 1 if password else 2, "name": name}
    if password:
        item["login"] = {"username": "u", "password": password, "totp": None}
    if fields is not None:
        item["fields"] = [{"name": k, "value": v, "type": 1} for k, v in fields.items()]
    return item


S = {"BW_SESSION": "SESS"}
BW_LOCKED = [version("bw"), rule("bw", "status", out=bw_status("locked"), env={"BW_SESSION": None}),
             rule("bw", "unlock", "--raw", out="SESS\n"),
             rule("bw", "status", out=bw_status("unlocked"), env=S), rule("bw", "sync", out="Syncing complete.", env=S)]
BW_LOCKED_CALLS = [["bw", "--version"], ["bw", "status"], ["bw", "unlock", "--raw"], ["bw", "status", S],
                   ["bw", "sync", S]]
BW_UNLOCKED = [version("bw"), rule("bw", "status", out=bw_status("unlocked")), rule("bw", "sync", out="ok")]
BW_UNLOCKED_CALLS = [["bw", "--version"], ["bw", "status"], ["bw", "sync"]]
CASES += [
    Case("bitwarden-locked", ["-a", "bitwarden", "--account", "me@example.com", "app", "api/token", "api/other"],
         [*BW_LOCKED, rule("bw", "get", "item", "app", out=bw_item("app", "SV1"), env=S),
          rule("bw", "get", "item", "api", out=bw_item("api", "SV2", {"token": "SV3", "other": "SV4"}), env=S)],
         [*BW_LOCKED_CALLS, ["bw", "get", "item", "app", S], ["bw", "get", "item", "api", S]],
         output={"app": "SV1", "api/token": "SV3", "api/other": "SV4"}),
    Case("bitwarden-login", ["-a", "bitwarden", "--account", "me@example.com", "--from", "app", "token"],
         [version("bw"), rule("bw", "status", out=bw_status("unauthenticated"), when="out"),
          rule("bw", "login", "me@example.com", out="You are logged in!", then="locked"),
          rule("bw", "status", out=bw_status("locked"), when="locked", env={"BW_SESSION": None}),
          *BW_LOCKED[2:], rule("bw", "get", "item", "app", out=bw_item("app", "SV1", {"token": "SV2"}), env=S)],
         [["bw", "--version"], ["bw", "status"], ["bw", "login", "me@example.com"], *BW_LOCKED_CALLS[1:],
          ["bw", "get", "item", "app", S]],
         output={"app/token": "SV2"}, state="out"),
    Case("bitwarden-unlocked-fields", ["-a", "bitwarden", "--account", "me@example.com", "notes"],
         [*BW_UNLOCKED, rule("bw", "get", "item", "notes", out=bw_item("notes", None, {"A": "SV1", "B": "SV2"}))],
         [*BW_UNLOCKED_CALLS, ["bw", "get", "item", "notes"]], output={"notes/A": "SV1", "notes/B": "SV2"}),
    Case("bitwarden-unlock-fails", ["-a", "bitwarden", "--account", "me@example.com", "app"],
         [version("bw"), rule("bw", "status", out=bw_status("locked")),
          rule("bw", "unlock", "--raw", exit=1, err="Invalid master password.\n")],
         [["bw", "--version"], ["bw", "status"], ["bw", "unlock", "--raw"], ["bw", "status"]],
         error="Failed to login to and unlock Bitwarden"),
    Case("bitwarden-sync-fails", ["-a", "bitwarden", "--account", "me@example.com", "app"],
         [version("bw"), rule("bw", "status", out=bw_status("unlocked")), rule("bw", "sync", exit=1)],
         BW_UNLOCKED_CALLS, error="Failed to sync Bitwarden"),
    Case("bitwarden-not-found", ["-a", "bitwarden", "--account", "me@example.com", "app"],
         [*BW_UNLOCKED, rule("bw", "get", "item", "app", exit=1, err="Not found.\n")],
         [*BW_UNLOCKED_CALLS, ["bw", "get", "item", "app"]], error="Could not read app from Bitwarden"),
    Case("bitwarden-field-missing", ["-a", "bitwarden", "--account", "me@example.com", "app/nope"],
         [*BW_UNLOCKED, rule("bw", "get", "item", "app", out=bw_item("app", "SV1", {"token": "SV2"}))],
         [*BW_UNLOCKED_CALLS, ["bw", "get", "item", "app"]],
         error="Could not find field nope in item app in Bitwarden"),
    Case("bitwarden-no-fields", ["-a", "bitwarden", "--account", "me@example.com", "note"],
         [*BW_UNLOCKED, rule("bw", "get", "item", "note", out=bw_item("note"))],
         [*BW_UNLOCKED_CALLS, ["bw", "get", "item", "note"]],
         error="Item note is not a login type item and no fields were specified"),
    Case("bitwarden-not-installed", ["-a", "bitwarden", "--account", "me@example.com", "app"],
         [rule("bw", "--version", exit=127)], [["bw", "--version"]], error="Bitwarden CLI is not installed"),
    Case("bitwarden-malformed-status", ["-a", "bitwarden", "--account", "me@example.com", "app"],
         [version("bw"), rule("bw", "status", out="You are not logged in.")], [["bw", "--version"], ["bw", "status"]],
         error="Could not parse the output of `bw status` as JSON",
         kamal_differs="Kamal shows Ruby's JSON parser error, which quotes the output"),
]

# --- bitwarden-sm -------------------------------------------------------------------------------------


def bws_secret(key: str, value: str) -> dict[str, Any]:
    return {"object": "secret", "id": f"id-{key}", "organizationId": "o1", "projectId": "p1", "key": key,
            "value": value, "note": "", "creationDate": "2025-01-01T00:00:00Z"}


BWS_OK = [version("bws"), rule("bws", "project", "list", out=[{"id": "p1", "name": "app"}])]
BWS_OK_CALLS = [["bws", "--version"], ["bws", "project", "list"]]
CASES += [
    Case("bitwarden-sm-get", ["-a", "bitwarden-sm", "id-1", "id-2"],
         [*BWS_OK, rule("bws", "secret", "get", "id-1", out=bws_secret("DB", "SV1")),
          rule("bws", "secret", "get", "id-2", out=bws_secret("API", "SV2"))],
         [*BWS_OK_CALLS, ["bws", "secret", "get", "id-1"], ["bws", "secret", "get", "id-2"]],
         output={"DB": "SV1", "API": "SV2"}),
    Case("bitwarden-sm-all", ["-a", "bitwarden_secrets_manager", "all"],
         [*BWS_OK, rule("bws", "secret", "list", out=[bws_secret("A", "SV1"), bws_secret("B", "SV2")])],
         [*BWS_OK_CALLS, ["bws", "secret", "list"]], output={"A": "SV1", "B": "SV2"}),
    Case("bitwarden-sm-project-all", ["-a", "bitwarden-sm", "--from", "p1", "all"],
         [*BWS_OK, rule("bws", "secret", "list", "p1", out=[bws_secret("A", "SV1")])],
         [*BWS_OK_CALLS, ["bws", "secret", "list", "p1"]], output={"A": "SV1"}),
    Case("bitwarden-sm-no-token", ["-a", "bitwarden-sm", "id-1"],
         [version("bws"), rule("bws", "project", "list", exit=1, err="Error: Missing access token\n")],
         BWS_OK_CALLS,
         error="Could not authenticate to Bitwarden Secrets Manager. Did you set a valid access token?"),
    Case("bitwarden-sm-nothing", ["-a", "bitwarden-sm"], BWS_OK, BWS_OK_CALLS,
         error="You must specify what to retrieve from Bitwarden Secrets Manager"),
    Case("bitwarden-sm-not-found", ["-a", "bitwarden-sm", "id-1", "id-2"],
         [*BWS_OK, rule("bws", "secret", "get", "id-1", out=bws_secret("DB", "SV1")),
          rule("bws", "secret", "get", "id-2", exit=1, err="Error: Resource not found.\n")],
         [*BWS_OK_CALLS, ["bws", "secret", "get", "id-1"], ["bws", "secret", "get", "id-2"]],
         error="Could not read id-2 from Bitwarden Secrets Manager"),
    Case("bitwarden-sm-not-installed", ["-a", "bitwarden-sm", "x"], [rule("bws", "--version", exit=1)],
         [["bws", "--version"]], error="Bitwarden Secrets Manager CLI is not installed"),
]

# --- aws_secrets_manager ------------------------------------------------------------------------------


def aws_value(name: str, string: str) -> dict[str, Any]:
    return {"ARN": f"arn:aws:secretsmanager:eu-west-1:1:secret:{name}-Ab12", "Name": name, "VersionId": "v1",
            "SecretString": string, "VersionStages": ["AWSCURRENT"], "CreatedDate": "2025-01-01T00:00:00+00:00"}


AWS_GET = ["secretsmanager", "batch-get-secret-value", "--secret-id-list"]
CASES += [
    Case("aws-profile", ["-a", "aws_secrets_manager", "--account", "prod", "app/db", "api-key"],
         [version("aws"), rule("aws", *AWS_GET, "app/db", "api-key", "--profile", "prod", "--output", "json",
                               out={"SecretValues": [aws_value("app/db", '{"user": "SV1", "port": 5432}'),
                                                     aws_value("api-key", "SV2")], "Errors": []})],
         [["aws", "--version"], ["aws", *AWS_GET, "app/db", "api-key", "--profile", "prod", "--output", "json"]],
         output={"app/db/user": "SV1", "app/db/port": 5432, "api-key": "SV2"}),
    Case("aws-from", ["-a", "aws_secrets_manager", "--from", "app", "db"],
         [version("aws"), rule("aws", *AWS_GET, "app/db", "--output", "json",
                               out={"SecretValues": [aws_value("app/db", "SV1")], "Errors": []})],
         [["aws", "--version"], ["aws", *AWS_GET, "app/db", "--output", "json"]], output={"app/db": "SV1"}),
    Case("aws-errors", ["-a", "aws_secrets_manager", "ok", "gone"],
         [version("aws"), rule("aws", *AWS_GET, "ok", "gone", "--output", "json", out={
             "SecretValues": [aws_value("ok", "SV1")], "Errors": [
                 {"SecretId": "gone", "ErrorCode": "ResourceNotFoundException",
                  "Message": "Secrets Manager can't find the specified secret."}]})],
         [["aws", "--version"], ["aws", *AWS_GET, "ok", "gone", "--output", "json"]],
         error="gone: Secrets Manager can't find the specified secret."),
    Case("aws-fails", ["-a", "aws_secrets_manager", "x"],
         [version("aws"), rule("aws", *AWS_GET, "x", "--output", "json", exit=255,
                               err="Unable to locate credentials.\n")],
         [["aws", "--version"], ["aws", *AWS_GET, "x", "--output", "json"]],
         error='Could not read ["x"] from AWS Secrets Manager',
         kamal_differs="Kamal puts the command's stdout (empty here) where the names are"),
    Case("aws-not-installed", ["-a", "aws_secrets_manager", "x"], [rule("aws", "--version", exit=1)],
         [["aws", "--version"]], error="AWS CLI is not installed"),
]

# --- doppler ------------------------------------------------------------------------------------------


def doppler_values(**values: str) -> dict[str, Any]:
    return {k: {"computed": v, "computedVisibility": "masked", "note": "", "raw": v, "rawVisibility": "masked"}
            for k, v in values.items()}


DOPPLER_ME = [version("doppler"), rule("doppler", "me", "--json", out={"name": "laptop", "type": "cli"})]
DOPPLER_ME_CALLS = [["doppler", "--version"], ["doppler", "me", "--json"]]
CASES += [
    Case("doppler-from", ["-a", "doppler", "--from", "shop/prd", "A", "B"],
         [*DOPPLER_ME, rule("doppler", "secrets", "get", "A", "B", "--json", "-p", "shop", "-c", "prd",
                            out=doppler_values(A="SV1", B="SV2"))],
         [*DOPPLER_ME_CALLS, ["doppler", "secrets", "get", "A", "B", "--json", "-p", "shop", "-c", "prd"]],
         output={"A": "SV1", "B": "SV2"}),
    Case("doppler-login", ["-a", "doppler", "shop/prd/A"],
         [version("doppler"), rule("doppler", "me", "--json", exit=1, err="Unable to authenticate\n"),
          rule("doppler", "login", "-y", out="Welcome\n"),
          rule("doppler", "secrets", "get", "A", "--json", "-p", "shop", "-c", "prd", out=doppler_values(A="SV1"))],
         [*DOPPLER_ME_CALLS, ["doppler", "login", "-y"],
          ["doppler", "secrets", "get", "A", "--json", "-p", "shop", "-c", "prd"]], output={"A": "SV1"}),
    Case("doppler-service-token", ["-a", "doppler", "A"],
         [*DOPPLER_ME, rule("doppler", "secrets", "get", "A", "--json", out=doppler_values(A="SV1"))],
         [*[[*c, {"DOPPLER_TOKEN": "dp.st.prd.x"}] for c in DOPPLER_ME_CALLS],
          ["doppler", "secrets", "get", "A", "--json", {"DOPPLER_TOKEN": "dp.st.prd.x"}]],
         output={"A": "SV1"}, env={"DOPPLER_TOKEN": "dp.st.prd.x"}),
    Case("doppler-no-project", ["-a", "doppler", "A"], DOPPLER_ME, DOPPLER_ME_CALLS,
         error="Missing project or config from '--from=project/config' option"),
    Case("doppler-login-fails", ["-a", "doppler", "shop/prd/A"],
         [version("doppler"), rule("doppler", "me", "--json", exit=1), rule("doppler", "login", "-y", exit=1)],
         [*DOPPLER_ME_CALLS, ["doppler", "login", "-y"]], error="Failed to login to Doppler"),
    Case("doppler-not-found", ["-a", "doppler", "--from", "shop/prd", "A"],
         [*DOPPLER_ME, rule("doppler", "secrets", "get", "A", "--json", "-p", "shop", "-c", "prd", exit=1,
                            err="Doppler Error: Could not find requested secret: A\n")],
         [*DOPPLER_ME_CALLS, ["doppler", "secrets", "get", "A", "--json", "-p", "shop", "-c", "prd"]],
         error='Could not read ["shop/prd/A"] from Doppler'),
    Case("doppler-not-installed", ["-a", "doppler", "A"], [rule("doppler", "--version", exit=1)],
         [["doppler", "--version"]], error="Doppler CLI is not installed"),
]

# --- enpass -------------------------------------------------------------------------------------------


def enpass_item(title: str, label: str, password: str) -> dict[str, Any]:
    return {"category": "login", "label": label, "login": "me", "password": password, "title": title,
            "type": "password"}


ENPASS_SHOW = ["-json", "-vault", "/vaults/primary", "show"]
CASES += [
    Case("enpass-titles-and-labels", ["-a", "enpass", "--from", "/vaults/primary", "Shop", "Mail/SMTP"],
         [version("enpass-cli"), rule("enpass-cli", *ENPASS_SHOW, "Shop", "Mail", out=[
             enpass_item("Shop", "", "SV1"), enpass_item("Shop", "API", "SV2"), enpass_item("Shop", "Empty", ""),
             enpass_item("Mail", "SMTP", "SV3"), enpass_item("Mail", "IMAP", "SV4")])],
         [["enpass-cli", "version"], ["enpass-cli", *ENPASS_SHOW, "Shop", "Mail"]],
         output={"Shop": "SV1", "Shop/API": "SV2", "Mail/SMTP": "SV3"}),
    Case("enpass-duplicate", ["-a", "enpass", "--from", "/vaults/primary", "Shop"],
         [version("enpass-cli"), rule("enpass-cli", *ENPASS_SHOW, "Shop", out=[
             enpass_item("Shop", "API", "SV1"), enpass_item("Shop", "API", "SV2")])],
         [["enpass-cli", "version"], ["enpass-cli", *ENPASS_SHOW, "Shop"]], error="Shop/API is present more than once"),
    Case("enpass-not-installed", ["-a", "enpass", "--from", "/v", "Shop"], [rule("enpass-cli", "version", exit=2)],
         [["enpass-cli", "version"]], error="Enpass CLI is not installed"),
]

# --- gcp ----------------------------------------------------------------------------------------------


def gcp_payload(value: str) -> dict[str, Any]:
    import base64

    return {"name": "projects/1/secrets/x/versions/1",
            "payload": {"data": base64.b64encode(value.encode()).decode(), "dataCrc32c": "1"}}


GCP_LIST = ["auth", "list", "--format=json"]
GCP_ACCESS = ["secrets", "versions", "access"]
GCP_AUTHED = [version("gcloud"), rule("gcloud", *GCP_LIST, out=[{"account": "me@example.com", "status": "ACTIVE"}])]
GCP_AUTHED_CALLS = [["gcloud", "--version"], ["gcloud", *GCP_LIST]]
CASES += [
    Case("gcp-user", ["-a", "gcp", "--account", "me@example.com", "db-pass", "shop/api/3"],
         [*GCP_AUTHED,
          rule("gcloud", *GCP_ACCESS, "latest", "--secret=db-pass", "--account=me@example.com", "--format=json",
               out=gcp_payload("SV1 é")),
          rule("gcloud", *GCP_ACCESS, "3", "--secret=api", "--project=shop", "--account=me@example.com",
               "--format=json", out=gcp_payload("SV2"))],
         [*GCP_AUTHED_CALLS,
          ["gcloud", *GCP_ACCESS, "latest", "--secret=db-pass", "--account=me@example.com", "--format=json"],
          ["gcloud", *GCP_ACCESS, "3", "--secret=api", "--project=shop", "--account=me@example.com", "--format=json"]],
         output={"default/db-pass": "SV1 é", "shop/api": "SV2"}),
    Case("gcp-impersonate", ["-a", "gcp_secret_manager", "--account", "default|sa@x.iam,sb@x.iam", "--from", "shop",
                             "db"],
         [*GCP_AUTHED, rule("gcloud", *GCP_ACCESS, "latest", "--secret=db", "--project=shop",
                            "--impersonate-service-account=sa@x.iam,sb@x.iam", "--format=json",
                            out=gcp_payload("SV1"))],
         [*GCP_AUTHED_CALLS, ["gcloud", *GCP_ACCESS, "latest", "--secret=db", "--project=shop",
                              "--impersonate-service-account=sa@x.iam,sb@x.iam", "--format=json"]],
         output={"shop/db": "SV1"}),
    Case("gcp-login", ["-a", "gcp", "--account", "default", "db"],
         [version("gcloud"), rule("gcloud", *GCP_LIST, out=[], when="out"),
          rule("gcloud", "auth", "login", then="in"),
          rule("gcloud", *GCP_LIST, out=[{"account": "me@example.com", "status": "ACTIVE"}], when="in"),
          rule("gcloud", *GCP_ACCESS, "latest", "--secret=db", "--format=json", out=gcp_payload("SV1"))],
         [["gcloud", "--version"], ["gcloud", *GCP_LIST], ["gcloud", "auth", "login"], ["gcloud", *GCP_LIST],
          ["gcloud", *GCP_ACCESS, "latest", "--secret=db", "--format=json"]],
         output={"default/db": "SV1"}, state="out"),
    Case("gcp-login-fails", ["-a", "gcp", "--account", "default", "db"],
         [version("gcloud"), rule("gcloud", *GCP_LIST, out=[]), rule("gcloud", "auth", "login", exit=1)],
         [["gcloud", "--version"], ["gcloud", *GCP_LIST], ["gcloud", "auth", "login"], ["gcloud", *GCP_LIST]],
         error="could not login to gcloud"),
    Case("gcp-not-found", ["-a", "gcp", "--account", "default", "db"],
         [*GCP_AUTHED, rule("gcloud", *GCP_ACCESS, "latest", "--secret=db", "--format=json", exit=1,
                            err="ERROR: (gcloud.secrets.versions.access) NOT_FOUND: Secret [db] not found.\n")],
         [*GCP_AUTHED_CALLS, ["gcloud", *GCP_ACCESS, "latest", "--secret=db", "--format=json"]],
         error="Could not read default/db from Google Secret Manager",
         kamal_differs="Kamal parses the empty output first and fails with a JSON parser error"),
    Case("gcp-not-installed", ["-a", "gcp", "--account", "default", "db"], [rule("gcloud", "--version", exit=1)],
         [["gcloud", "--version"]], error="gcloud CLI is not installed"),
]

# --- lastpass -----------------------------------------------------------------------------------------


def lpass_item(fullname: str, password: str) -> dict[str, Any]:
    group, _, name = fullname.rpartition("/")
    return {"id": "1", "name": name, "fullname": fullname, "username": "me", "password": password,
            "last_modified_gmt": "1700000000", "last_touch": "0", "group": group, "url": "", "note": ""}


LPASS_IN = [version("lpass"), rule("lpass", "status", "--color", "never", out="Logged in as me@example.com.\n")]
LPASS_IN_CALLS = [["lpass", "--version"], ["lpass", "status", "--color", "never"]]
CASES += [
    Case("lastpass-logged-in", ["-a", "lastpass", "--account", "me@example.com", "A", "Shared/B"],
         [*LPASS_IN, rule("lpass", "show", "A", "Shared/B", "--json",
                          out=[lpass_item("A", "SV1"), lpass_item("Shared/B", "SV2")])],
         [*LPASS_IN_CALLS, ["lpass", "show", "A", "Shared/B", "--json"]], output={"A": "SV1", "Shared/B": "SV2"}),
    Case("lastpass-login", ["-a", "LastPass", "--account", "me@example.com", "--from", "Shared", "B"],
         [version("lpass"), rule("lpass", "status", "--color", "never", out="Not logged in.\n", exit=1),
          rule("lpass", "login", "me@example.com", out="Success: Logged in as me@example.com.\n"),
          rule("lpass", "show", "Shared/B", "--json", out=[lpass_item("Shared/B", "SV2")])],
         [*LPASS_IN_CALLS, ["lpass", "login", "me@example.com"], ["lpass", "show", "Shared/B", "--json"]],
         output={"Shared/B": "SV2"}),
    Case("lastpass-other-account", ["-a", "last_pass", "--account", "you@example.com", "A"],
         [*LPASS_IN, rule("lpass", "login", "you@example.com", exit=1,
                          err="Error: Failed to enter correct password.\n")],
         [*LPASS_IN_CALLS, ["lpass", "login", "you@example.com"]], error="Failed to login to LastPass"),
    Case("lastpass-missing", ["-a", "lastpass", "--account", "me@example.com", "A", "B"],
         [*LPASS_IN, rule("lpass", "show", "A", "B", "--json", out=[lpass_item("A", "SV1")])],
         [*LPASS_IN_CALLS, ["lpass", "show", "A", "B", "--json"]], error="Could not find B in LastPass"),
    Case("lastpass-show-fails", ["-a", "lastpass", "--account", "me@example.com", "A"],
         [*LPASS_IN, rule("lpass", "show", "A", "--json", exit=1, err="Error: Could not find specified account(s).\n")],
         [*LPASS_IN_CALLS, ["lpass", "show", "A", "--json"]], error='Could not read ["A"] from LastPass'),
    Case("lastpass-not-installed", ["-a", "lastpass", "--account", "me@example.com", "A"],
         [rule("lpass", "--version", exit=1)], [["lpass", "--version"]], error="LastPass CLI is not installed"),
]

# --- passbolt -----------------------------------------------------------------------------------------


def pb_folder(id_: str, name: str, parent: str = "") -> dict[str, Any]:
    return {"id": id_, "folder_parent_id": parent, "name": name, "created_timestamp": "2025-01-01T00:00:00Z"}


def pb_resource(name: str, password: str, folder: str = "") -> dict[str, Any]:
    return {"id": f"r-{name}", "folder_parent_id": folder, "name": name, "username": "me", "uri": "",
            "password": password}


PB_OK = [version("passbolt"), rule("passbolt", "verify", out="Login Checked!\n")]
PB_OK_CALLS = [["passbolt", "--version"], ["passbolt", "verify"]]
PB_RES = ["list", "resources", "--filter"]
CASES += [
    Case("passbolt-root", ["-a", "passbolt", "A", "B"],
         [*PB_OK, rule("passbolt", *PB_RES, 'Name == "A" || Name == "B"', "--json",
                       out=[pb_resource("A", "SV1"), pb_resource("B", "SV2")])],
         [*PB_OK_CALLS, ["passbolt", *PB_RES, 'Name == "A" || Name == "B"', "--json"]],
         output={"A": "SV1", "B": "SV2"}),
    Case("passbolt-folders", ["-a", "passbolt", "--from", "prod", "DB", "api/KEY"],
         [*PB_OK,
          rule("passbolt", "list", "folders", "--filter", 'Name == "prod"', "--json", out=[pb_folder("f1", "prod")]),
          rule("passbolt", "list", "folders", "--filter", 'Name == "api" && FolderParentID == "f1"', "--json",
               out=[pb_folder("f2", "api", "f1")]),
          rule("passbolt", *PB_RES, '(Name == "DB" && FolderParentID == "f1") || (Name == "KEY" && FolderParentID == '
               '"f2")', "--folder", "f1", "--folder", "f2", "--json",
               out=[pb_resource("DB", "SV1", "f1"), pb_resource("KEY", "SV2", "f2")])],
         [*PB_OK_CALLS, ["passbolt", "list", "folders", "--filter", 'Name == "prod"', "--json"],
          ["passbolt", "list", "folders", "--filter", 'Name == "api" && FolderParentID == "f1"', "--json"],
          ["passbolt", *PB_RES, '(Name == "DB" && FolderParentID == "f1") || (Name == "KEY" && FolderParentID == '
           '"f2")', "--folder", "f1", "--folder", "f2", "--json"]],
         output={"DB": "SV1", "KEY": "SV2"}),
    Case("passbolt-missing-folder", ["-a", "passbolt", "prod/DB"],
         [*PB_OK, rule("passbolt", "list", "folders", "--filter", 'Name == "prod"', "--json", out=[])],
         [*PB_OK_CALLS, ["passbolt", "list", "folders", "--filter", 'Name == "prod"', "--json"]],
         error="Could not find the following folders in Passbolt: prod"),
    Case("passbolt-missing-secret", ["-a", "passbolt", "A", "B"],
         [*PB_OK, rule("passbolt", *PB_RES, 'Name == "A" || Name == "B"', "--json", out=[pb_resource("A", "SV1")])],
         [*PB_OK_CALLS, ["passbolt", *PB_RES, 'Name == "A" || Name == "B"', "--json"]],
         error="Could not find the following secrets in Passbolt: B"),
    Case("passbolt-verify-fails", ["-a", "passbolt", "A"],
         [version("passbolt"), rule("passbolt", "verify", exit=1, err="Error: Checking: Login: ...\n")],
         PB_OK_CALLS, error="Failed to login to Passbolt"),
    Case("passbolt-nothing", ["-a", "passbolt"], PB_OK, PB_OK_CALLS, error="No secrets given to fetch"),
    Case("passbolt-not-installed", ["-a", "passbolt", "A"], [rule("passbolt", "--version", exit=1)],
         [["passbolt", "--version"]], error="Passbolt CLI is not installed"),
]


# --- harness ------------------------------------------------------------------------------------------


def install_fakes(case: Case, root: Path) -> dict[str, str]:
    """Fakes and rules under ``root``; returns the environment variables to run with."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    source = FAKE_CLI.read_text()
    for cli in case.clis:
        path = bin_dir / cli
        path.write_text(f"#!{sys.executable}\n{source}")
        path.chmod(0o755)
    rules = root / "rules.json"
    rules.write_text(json.dumps({"state": case.state, "rules": case.rules}))
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_CLI_LOG": str(root / "calls.log"),
            "FAKE_CLI_RULES": str(rules), **case.env}


def logged_calls(root: Path) -> list[list[Any]]:
    log = root / "calls.log"
    calls = []
    for line in log.read_text().splitlines() if log.exists() else []:
        entry = json.loads(line)
        calls.append([entry["cli"], *entry["argv"], *([entry["env"]] if entry["env"] else [])])
    return calls


def run_subprocess(command: list[str], case: Case, root: Path) -> tuple[int, str, str, list[list[Any]]]:
    env = {k: v for k, v in os.environ.items() if k not in LOGGED_ENV}
    env.update(install_fakes(case, root))
    work = root / "work"
    work.mkdir()
    result = subprocess.run([*command, "secrets", "fetch", *case.args], cwd=work, env=env, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=120)
    return result.returncode, result.stdout, result.stderr, logged_calls(root)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in LOGGED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_case(case: Case, root: Path, monkeypatch: pytest.MonkeyPatch,
             capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str, list[list[Any]]]:
    for name, value in install_fakes(case, root / "fakes").items():
        monkeypatch.setenv(name, value)
    capfd.readouterr()
    code = main(["secrets", "fetch", *case.args], standalone=False)
    out, err = capfd.readouterr()
    return code, out, err, logged_calls(root / "fakes")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_adapter(case: Case, clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                 capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err, calls = run_case(case, clean_env, monkeypatch, capfd)
    assert calls == case.calls
    if case.error is None:
        assert (code, json.loads(out)) == (0, case.output)
        assert out == json.dumps(case.output, separators=(",", ":"), ensure_ascii=False) + "\n"
        assert "fake" not in err  # no unexpected call
    else:
        assert (code, out) == (1, "")
        # The last line is ours; lines before it come from a CLI's stderr, passed through as with Kamal.
        assert err.splitlines()[-1] == f"ERROR: {case.error}"
        assert "SV" not in out + err  # no secret value in an error, nor from a CLI's stderr


def test_cli_missing_from_path(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                               capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(clean_env))  # an empty directory: no CLI at all
    for args, message in [(["-a", "1password", "--account", "a", "x"], "1Password CLI"),
                          (["-a", "bitwarden", "--account", "a", "x"], "Bitwarden CLI"),
                          (["-a", "bitwarden-sm", "x"], "Bitwarden Secrets Manager CLI"),
                          (["-a", "aws_secrets_manager", "x"], "AWS CLI"), (["-a", "doppler", "x"], "Doppler CLI"),
                          (["-a", "enpass", "--from", "v", "x"], "Enpass CLI"),
                          (["-a", "gcp", "--account", "a", "x"], "gcloud CLI"),
                          (["-a", "lastpass", "--account", "a", "x"], "LastPass CLI"),
                          (["-a", "passbolt", "x"], "Passbolt CLI")]:
        assert main(["secrets", "fetch", *args], standalone=False) == 1
        assert capfd.readouterr() == ("", f"ERROR: {message} is not installed\n")


@pytest.mark.parametrize("adapter", ["1password", "bitwarden", "gcp", "lastpass"])
def test_account_required(adapter: str, clean_env: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["secrets", "fetch", "-a", adapter, "x"], standalone=False) == 1
    assert capfd.readouterr() == ("", "ERROR: No value provided for required options '--account'\n")


def test_adapter_names_and_aliases() -> None:
    adapters = Hooks(build_plugin_manager(load_entry_points=False)).secret_adapters()
    groups = [{"1password", "one_password", "onepassword"}, {"bitwarden"},
              {"bitwarden-sm", "bitwarden_secrets_manager", "bitwardensecretsmanager"},
              {"aws_secrets_manager", "awssecretsmanager"}, {"doppler"}, {"enpass"},
              {"gcp", "gcp_secret_manager", "gcpsecretmanager"}, {"lastpass", "last_pass"}, {"passbolt"}]
    for names in groups:
        assert len({adapters[name] for name in names}) == 1, names
    assert len({adapters[next(iter(names))] for names in groups}) == len(groups)


# --- against Kamal 2.11 -------------------------------------------------------------------------------

COMPARED = [case for case in CASES if not case.kamal_differs]


@pytest.fixture(scope="module")
def kamal_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Kamal on every compared case, in parallel (about 1.5 s of CPU each)."""
    kamal = shutil.which("kamal")
    if kamal is None:
        pytest.skip("kamal is not installed")
    root = tmp_path_factory.mktemp("adapters-kamal")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(lambda case: run_subprocess([kamal], case, root / case.id), COMPARED)
        return dict(zip((c.id for c in COMPARED), results, strict=True))


@pytest.mark.kamal
@pytest.mark.parametrize("case", COMPARED, ids=lambda c: c.id)
def test_same_as_kamal(case: Case, kamal_results: dict[str, Any], clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                       capfd: pytest.CaptureFixture[str]) -> None:
    k_code, k_out, _, k_calls = kamal_results[case.id]
    code, out, err, calls = run_case(case, clean_env, monkeypatch, capfd)
    assert calls == k_calls
    if k_code == 0 and "ERROR" not in k_out:
        assert (code, out) == (0, k_out)
    else:
        # Kamal: `  ERROR (RuntimeError): message` (coloured) on stdout; kamalpy: `ERROR: message` on stderr.
        theirs = re.sub(r"^\s*ERROR \([\w:]+\): ", "", ANSI.sub("", k_out).strip())
        assert (code, out, err.splitlines()[-1]) == (1, "", f"ERROR: {theirs}")
