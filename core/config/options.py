"""Checks and values shared by roles and accessories: docker options, labels, logging."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kamalpy.config.args import argumentize, is_present, optionize
from kamalpy.config.proxy import deep_merge
from kamalpy.errors import ConfigurationError

RESERVED_LABELS = ("service", "role", "destination")
DEFAULT_RESTART_POLICY = "unless-stopped"
DEFAULT_LOG_OPTIONS = {"max-size": "10m"}


def validate_docker_options(options: Any, context: str) -> None:
    # Kamal 2.11 always runs containers with --restart unless-stopped; any other policy is refused.
    if isinstance(options, Mapping) and is_present(options.get("restart")):
        raise ConfigurationError(f"{context}: Cannot set restart policy in docker options, unless-stopped is required")


def validate_labels(labels: Any, context: str) -> None:
    if not isinstance(labels, Mapping):
        return
    for name in labels:
        if str(name) in RESERVED_LABELS:
            raise ConfigurationError(
                f"{context}/labels/{name}: invalid label. destination, role, and service are reserved labels")


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
