"""Values shared by roles and accessories: docker options and logging.

Reserved label names and the refused ``restart`` option are checked by the schema (``schema/kamal.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kamalpy.config.args import argumentize, is_present, optionize
from kamalpy.config.proxy import deep_merge

DEFAULT_LOG_OPTIONS = {"max-size": "10m"}


def option_args(options: Mapping[str, Any] | None) -> list[str]:
    """``docker run`` flags from an ``options:`` hash (``restart`` is never passed through)."""
    return optionize({k: v for k, v in (options or {}).items() if str(k) != "restart"})


class Logging:
    """``logging:`` (driver + options); a role's logging is the root's with the role's merged over it."""

    def __init__(self, raw: Mapping[str, Any] | None) -> None:
        self.raw: dict[str, Any] = dict(raw or {})

    def merge(self, override: Mapping[str, Any] | None) -> Logging:
        return Logging(deep_merge(self.raw, override or {}))

    @property
    def driver(self) -> str | None:
        return self.raw.get("driver")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.raw.get("options") or {})

    def args(self) -> list[str]:
        if is_present(self.driver) or self.options:
            driver = {"log-driver": self.driver} if self.driver is not None else {}
            return optionize(driver) + argumentize("--log-opt", self.options)
        return argumentize("--log-opt", DEFAULT_LOG_OPTIONS)
