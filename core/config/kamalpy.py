"""``x-kamalpy:``: kamalpy's own settings that have no place in one of Kamal's sections.

Kamal 2.11 rejects unknown keys but ignores root keys that start with ``x-``, so settings kept under
``x-kamalpy`` leave the file valid for Kamal. The schema (``schema/kamal.json``, ``$defs/x-kamalpy``)
checks them, after Kamal's own keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KEY = "x-kamalpy"
# At most this many hosts pull at once. A deploy to 10 hosts (the largest of the usual benchmark sizes)
# pulls as before; 100 sandbox servers pulling at once made one registry request time out
# (docs/deploy.md, "Pulls on many hosts").
DEFAULT_PULL_LIMIT = 10


class KamalpyOptions:
    def __init__(self, raw: Mapping[str, Any] | None) -> None:
        self.raw: dict[str, Any] = dict(raw or {})

    @property
    def pull_limit(self) -> int:
        """How many hosts pull an image at once (``x-kamalpy.pull_limit``)."""
        return int(self.raw.get("pull_limit", DEFAULT_PULL_LIMIT))
