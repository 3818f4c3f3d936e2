"""kamalpy plugin: the ``age`` secret adapter (secrets kept in an age-encrypted file in the repository).

Registered through the ``kamalpy`` entry-point group (``secrets_age``); see README.md.
"""

from __future__ import annotations

from kamalpy.plugin import SecretAdapter, hookimpl
from kamalpy_secrets_age.adapter import AgeAdapter

__all__ = ["AgeAdapter", "kamalpy_secret_adapters"]


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"age": AgeAdapter}
