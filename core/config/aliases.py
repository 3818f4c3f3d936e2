"""``aliases:``: names for kamalpy command lines (``console: app exec -i "bin/rails console"``).

Alias names (the pattern, no built-in command) are checked by the schema (``schema/kamal.json``).
"""

from __future__ import annotations

from typing import Any


def aliases(raw: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (raw or {}).items()}
