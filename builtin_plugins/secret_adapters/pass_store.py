"""Built-in plugin: the ``pass`` secret adapter (the standard unix password store).

Kamal has no such adapter. No account and no login: gpg decrypts (its agent may ask for the key's
passphrase). Names are pass names (``--from`` prefixed as ``FOLDER/NAME``, which is also the key);
the value is the first line of ``pass show NAME``, the password by pass's convention (``pass -c``
copies that line). ``PASSWORD_STORE_DIR`` and ``GNUPGHOME`` are taken from the environment.

A name must be a file ``NAME.gpg`` in the store, checked before anything is decrypted: ``pass show``
on a folder would print its tree instead of failing.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from kamalpy.builtin_plugins.secret_adapters.base import CliAdapter, prefixed
from kamalpy.errors import SecretsError
from kamalpy.plugin import SecretAdapter, hookimpl

STORE_ENV = "PASSWORD_STORE_DIR"


class PassAdapter(CliAdapter):
    requires_account = False
    program = "pass"
    version_args = ("version",)
    product = "pass"

    def fetch_secrets(self, secrets: list[str], *, account: str | None, from_: str | None,
                      session: Any) -> dict[str, Any]:
        names = prefixed(secrets, from_)
        store = store_dir()
        missing = [name for name in names if not os.path.isfile(os.path.join(store, name + ".gpg"))]
        if missing:
            raise SecretsError(f"Could not find {', '.join(missing)} in the password store")
        return {name: show(name) for name in names}


def store_dir() -> str:
    """Where pass keeps its files: ``PASSWORD_STORE_DIR``, else ``~/.password-store`` (as pass does)."""
    return os.environ.get(STORE_ENV) or os.path.expanduser("~/.password-store")


def show(name: str) -> str:
    """The first line of ``pass show NAME``; gpg's messages are captured so a failure is one line."""
    try:
        process = subprocess.run(["pass", "show", name], capture_output=True, encoding="utf-8", errors="replace",
                                 check=False)
    except OSError:
        raise SecretsError("pass CLI is not installed") from None
    if process.returncode != 0:
        # stderr holds gpg's or pass's reason (never the decrypted text, which goes to stdout).
        reasons = [line.strip() for line in process.stderr.splitlines() if line.strip()]
        reason = f" ({reasons[-1]})" if reasons else ""
        raise SecretsError(f"Could not decrypt {name} from the password store{reason}")
    return process.stdout.split("\n", 1)[0].rstrip("\r")


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"pass": PassAdapter}
