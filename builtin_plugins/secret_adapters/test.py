"""Built-in plugin: Kamal's ``test`` secret adapter.

It needs an account (any), contacts nothing and answers each name (prefixed ``FROM/`` with
``--from``) with the name reversed; ``LPAREN`` and ``RPAREN`` in a name stand for ``(`` and ``)``,
so that tests can produce values with parentheses.
"""

from __future__ import annotations

from kamalpy.plugin import SecretAdapter, hookimpl


class TestAdapter(SecretAdapter):
    __test__ = False  # not a pytest test class
    requires_account = True

    def fetch(self, secrets: list[str], account: str | None = None, from_: str | None = None) -> dict[str, str]:
        names = [f"{from_}/{name}" if from_ else name for name in secrets]
        return {name: name.replace("LPAREN", "(").replace("RPAREN", ")")[::-1] for name in names}


@hookimpl
def kamalpy_secret_adapters() -> dict[str, type[SecretAdapter]]:
    return {"test": TestAdapter}
