"""The ``ecr`` registry strategy: ``docker login`` to Amazon ECR with a token the aws CLI hands out at login time.

ECR passwords are tokens valid for 12 hours, so none is stored in ``.kamal/secrets``: each run asks
``aws ecr get-login-password --region REGION`` once, when the first login needs it, and sends it on the
login's standard input (never on a command line). ``registry.strategy: ecr`` selects it; the plugin fills
in ``registry.username`` (``AWS``) and a placeholder password, which the schema requires, before validation.
A dry run asks the CLI nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from typing import Any

from kamalpy.plugin import ConfigKey, KamalpyError, RegistryStrategy, hookimpl

KEY = "ecr"
DEFAULTS = {"region": None, "profile": None, "cli": "aws"}
USERNAME = "AWS"  # what ECR expects with a get-login-password token
PLACEHOLDER = "from-the-aws-cli"
REGION_IN_SERVER = ".dkr.ecr."


class EcrError(KamalpyError):
    """The aws CLI could not give a token (the message never contains one)."""


def settings(config: Any) -> dict[str, Any]:
    return {**DEFAULTS, **(config.extension(KEY) or {})}


def region(config: Any) -> str:
    """``ecr.region``, else the region in ``ACCOUNT.dkr.ecr.REGION.amazonaws.com``."""
    chosen = settings(config)["region"]
    if chosen:
        return str(chosen)
    server = str(config.registry.server or "")
    if REGION_IN_SERVER in server:
        return server.split(REGION_IN_SERVER, 1)[1].split(".", 1)[0]
    raise EcrError(f"ecr/region: not set, and registry/server {server or '(Docker Hub)'} names no ECR region")


class EcrRegistry(RegistryStrategy):
    name = "ecr"

    def __init__(self, commander: Any) -> None:
        super().__init__(commander)
        self._token: str | None = None
        self._lock = threading.Lock()  # hosts log in in parallel: one CLI call per run

    def password(self) -> str:
        if self.commander.dry_run:
            return ""
        with self._lock:
            if self._token is None:
                self._token = self._fetch()
            return self._token

    def _fetch(self) -> str:
        config = self.config
        options = settings(config)
        cli = shutil.which(str(options["cli"]))
        if cli is None:
            raise EcrError(f"ecr/cli: {options['cli']} not found (install the AWS CLI, or set ecr.cli)")
        argv = [cli, "ecr", "get-login-password", "--region", region(config)]
        if options["profile"]:
            argv += ["--profile", str(options["profile"])]
        try:
            found = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired as exc:
            raise EcrError("ecr: aws ecr get-login-password did not answer within 60 seconds") from exc
        token = found.stdout.strip()
        if found.returncode != 0 or not token:
            reason = (found.stderr.strip().splitlines() or [f"exit status {found.returncode}"])[-1]
            raise EcrError(f"ecr: aws ecr get-login-password failed: {reason}")
        return token


@hookimpl
def kamalpy_config_keys() -> list[ConfigKey]:
    return [ConfigKey(
        name=KEY,
        schema={"type": "object", "additionalProperties": False,
                "properties": {"region": {"type": "string", "minLength": 1},
                               "profile": {"type": "string", "minLength": 1},
                               "cli": {"type": "string", "minLength": 1}}},
        default=dict(DEFAULTS),
        description="Amazon ECR login (registry.strategy: ecr): the aws CLI's region (default: the one in "
                    "registry.server), profile, and the CLI to run (default aws).",
    )]


@hookimpl
def kamalpy_transform_config(raw: dict[str, Any], options: Any) -> None:
    # The schema wants a username and password for a remote registry; ECR's come from the CLI.
    registry = raw.get("registry")
    if isinstance(registry, dict) and registry.get("strategy") == EcrRegistry.name:
        registry.setdefault("username", USERNAME)
        registry.setdefault("password", PLACEHOLDER)


@hookimpl
def kamalpy_registry_strategies() -> dict[str, Any]:
    return {EcrRegistry.name: EcrRegistry}
