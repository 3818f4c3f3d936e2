"""The ``age`` adapter: decrypt one file with the ``age`` CLI and pick secrets out of its plaintext.

``--from`` is the encrypted file. The identity (private key) is, first found: ``--account`` (a path),
``KAMALPY_AGE_KEY`` (the key itself, given to age on its stdin so it never reaches a command line or
the disk), ``KAMALPY_AGE_IDENTITY`` (a path), ``~/.config/age/keys.txt``. Keys of the result are
``FROM/NAME``, as Kamal's adapters key names when ``--from`` is given.

age's own messages are summarised, never quoted whole: when a file is not age's format, age quotes
its first line, which may be a secret from a file that was committed unencrypted.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from typing import ClassVar

from kamalpy.errors import SecretsError
from kamalpy.plugin import SecretAdapter
from kamalpy_secrets_age.plaintext import parse

PROGRAM = "age"
KEY_ENV = "KAMALPY_AGE_KEY"
IDENTITY_ENV = "KAMALPY_AGE_IDENTITY"
DEFAULT_IDENTITY = "~/.config/age/keys.txt"

_ERROR_PREFIX = "age: error: "
_QUOTED = re.compile(r'"(?:\\.|[^"\\])*"')


@dataclass(frozen=True)
class Identity:
    """Where the private key comes from: a file path, or the key text itself (from ``KAMALPY_AGE_KEY``)."""

    path: str | None = None
    key: str | None = None

    @property
    def label(self) -> str:
        return self.path if self.path is not None else KEY_ENV


class AgeAdapter(SecretAdapter):
    requires_account: ClassVar[bool] = False

    def fetch(self, secrets: list[str], account: str | None = None, from_: str | None = None) -> dict[str, str]:
        if shutil.which(PROGRAM) is None:
            raise SecretsError("age CLI is not installed")
        if not from_:
            raise SecretsError("Give the age-encrypted file with --from")
        if not os.path.isfile(os.path.expanduser(from_)):
            raise SecretsError(f"age-encrypted file not found: {from_}")
        identity = find_identity(account)
        values = parse(decrypt(from_, identity), source=from_)
        names = list(secrets) or list(values)
        missing = [name for name in names if name not in values]
        if missing:
            raise SecretsError(f"Could not find {', '.join(missing)} in {from_}")
        return {f"{from_}/{name}": values[name] for name in names}


def find_identity(account: str | None) -> Identity:
    """The identity to decrypt with (see the module docstring for the order); a named file must exist."""
    if account:
        path = account
    elif os.environ.get(KEY_ENV, "").strip():
        return Identity(key=os.environ[KEY_ENV])
    else:
        path = os.environ.get(IDENTITY_ENV) or DEFAULT_IDENTITY
    if not os.path.isfile(os.path.expanduser(path)):
        raise SecretsError(f"age identity file not found: {path}")
    return Identity(path=path)


def decrypt(path: str, identity: Identity) -> str:
    """The plaintext of ``path``; any failure becomes one line that quotes nothing of the file or key."""
    import subprocess  # here: kamalpy loads every plugin on each run, few decrypt

    argv = [PROGRAM, "--decrypt", "-i", "-" if identity.key is not None else os.path.expanduser(identity.path or "")]
    key = identity.key.encode() if identity.key is not None else None
    try:
        # With a key file, stdin stays ours: age asks for an encrypted key file's passphrase on the terminal.
        process = subprocess.run([*argv, os.path.expanduser(path)], input=key, capture_output=True, check=False)
    except OSError:
        raise SecretsError("age CLI is not installed") from None
    if process.returncode != 0:
        raise SecretsError(_failure(path, identity, process.stderr.decode("utf-8", "replace")))
    try:
        return process.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretsError(f"Could not parse {path}: the decrypted text is not UTF-8") from None


def _failure(path: str, identity: Identity, stderr: str) -> str:
    """Summarise age's error (``age: error: context: context: reason``) without anything it quoted."""
    errors = [line[len(_ERROR_PREFIX):] for line in stderr.splitlines() if line.startswith(_ERROR_PREFIX)]
    message = _QUOTED.sub("", errors[-1]) if errors else ""
    parts = [part.strip() for part in message.split(":") if part.strip()]
    if not parts:
        return f"Could not decrypt {path} with the identity in {identity.label}"
    if parts[0] == "failed to read header":
        return f"{path} is not an age-encrypted file"
    if parts[0] == "reading":  # `reading "FILE": failed to read "FILE": error at line 1: unknown identity type`
        reason = ": ".join(part for part in parts[1:] if part != "failed to read") or "unusable"
        return f"Could not read the age identity in {identity.label}: {reason}"
    return f"Could not decrypt {path} with the identity in {identity.label}: {parts[0]}"
