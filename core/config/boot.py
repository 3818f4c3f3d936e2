"""``boot:``: how many hosts boot at once, the pause between groups, and whether roles boot in parallel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Boot:
    def __init__(self, raw: Mapping[str, Any] | None, host_count: int) -> None:
        self.raw: dict[str, Any] = dict(raw or {})
        self.host_count = host_count
        """Every host of the configuration (roles and accessories), which a ``N%`` limit is taken of."""

    @property
    def limit(self) -> int | None:
        limit = self.raw.get("limit")
        if isinstance(limit, str) and limit.strip().endswith("%"):
            digits = "".join(ch for ch in limit.strip()[:-1] if ch.isdigit())
            return max(self.host_count * int(digits or 0) // 100, 1)
        return None if limit is None else int(limit)

    @property
    def wait(self) -> int | float | None:
        return self.raw.get("wait")

    @property
    def parallel_roles(self) -> bool:
        return bool(self.raw.get("parallel_roles", False))
