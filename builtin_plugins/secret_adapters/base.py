"""Shared parts of the built-in adapters that drive a password manager's command-line tool.

Each adapter follows Kamal 2.11: check that the CLI is installed, log in (which may prompt, so the
CLI keeps our stdin and its stderr goes straight to the terminal, as with Kamal's backticks), then
fetch. CLIs run from argument lists, never through a shell, so names need no quoting.

Error messages name secrets, items and commands, never values: a CLI's output is never quoted in an
error (it may hold secrets), and session tokens only travel in arguments or the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from kamalpy.errors import SecretsError
from kamalpy.plugin import SecretAdapter


@dataclass(frozen=True)
class Output:
    """What a CLI call gave back: its exit status and standard output (stderr is not captured)."""

    returncode: int
    stdout: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_cli(argv: Sequence[str], *, env: dict[str, str] | None = None, quiet: bool = False) -> Output:
    """Run ``argv`` with stdout captured; ``quiet`` sends stderr to /dev/null (Kamal's ``2> /dev/null``).

    ``env`` holds variables added to the current environment for this call only.
    """
    import subprocess  # here: every run registers the adapters, few call a CLI

    try:
        process = subprocess.run(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if quiet else None,
            env={**os.environ, **env} if env else None,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
    except FileNotFoundError:
        return Output(127, "")
    except PermissionError:
        return Output(126, "")
    return Output(process.returncode, process.stdout)


def parse_json(text: str, command: str) -> Any:
    """JSON from a CLI's output; the error names the command, never the text (it may hold secrets)."""
    try:
        return json.loads(text)
    except ValueError:
        raise SecretsError(f"Could not parse the output of `{command}` as JSON") from None


def unexpected(command: str) -> SecretsError:
    """The error for JSON of the wrong shape."""
    return SecretsError(f"Unexpected output from `{command}`")


def ruby_split(text: str, sep: str, limit: int = 0) -> list[str]:
    """Ruby's ``String#split(sep[, limit])``: without a limit, trailing empty fields are dropped."""
    if limit > 0:
        return text.split(sep, limit - 1)
    parts = text.split(sep)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def ruby_inspect(names: Sequence[str]) -> str:
    """A list of names as Ruby's ``Array#inspect`` shows it (Kamal puts such lists in messages)."""
    return "[" + ", ".join(json.dumps(name, ensure_ascii=False) for name in names) + "]"


def prefixed(secrets: Sequence[str], from_: str | None) -> list[str]:
    """``FROM/name`` for every name when ``--from`` is given."""
    return [f"{from_}/{name}" if from_ is not None else name for name in secrets]


class CliAdapter(SecretAdapter):
    """An adapter that checks for its CLI, logs in and fetches (Kamal's ``Adapters::Base#fetch``)."""

    requires_account: ClassVar[bool] = True
    #: the program, and the words of the "is installed" check run with stderr discarded
    program: ClassVar[str]
    version_args: ClassVar[tuple[str, ...]] = ("--version",)
    #: as in "<product> CLI is not installed"
    product: ClassVar[str]

    def fetch(self, secrets: list[str], account: str | None = None, from_: str | None = None) -> dict[str, Any]:
        if self.requires_account and not (account or "").strip():
            raise SecretsError("Missing required option '--account'")
        if not run_cli([self.program, *self.version_args], quiet=True).ok:
            raise SecretsError(f"{self.product} CLI is not installed")
        session = self.login(account)
        return self.fetch_secrets(list(secrets), account=account, from_=from_, session=session)

    def login(self, account: str | None) -> Any:
        """Make sure the CLI is signed in; returns a session (or None) handed to :meth:`fetch_secrets`."""
        return None

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        raise NotImplementedError
