"""Questions to the user (Kamal's Thor ``ask``), answered by ``-y`` in scripts."""

from __future__ import annotations

import sys


def confirm(question: str, confirmed: bool = False) -> bool:
    """True when ``confirmed`` or the user answers ``y``; no answer (or no terminal input) means no."""
    if confirmed:
        return True
    sys.stderr.write(f"{question} [y, N] (N) ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")
