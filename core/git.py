"""The few local git queries kamalpy needs (version from the commit, dirty tree, repository root)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(*args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def used(cwd: str | Path | None = None) -> bool:
    """True inside a git work tree (Kamal: ``system("git rev-parse")``)."""
    try:
        return _git("rev-parse", cwd=cwd).returncode == 0
    except FileNotFoundError:  # no git installed: same as no repository
        return False


def revision(cwd: str | Path | None = None) -> str | None:
    """The full SHA of HEAD, or None when there is no commit yet."""
    result = _git("rev-parse", "HEAD", cwd=cwd)
    return result.stdout.strip() if result.returncode == 0 else None


def uncommitted_changes(cwd: str | Path | None = None) -> str:
    """``git status --porcelain`` output: empty when the tree is clean."""
    return _git("status", "--porcelain", cwd=cwd).stdout.strip()


def root(cwd: str | Path | None = None) -> str | None:
    result = _git("rev-parse", "--show-toplevel", cwd=cwd)
    return result.stdout.strip() if result.returncode == 0 else None



def config_value(key: str) -> str | None:
    """``git config KEY`` (user.name names the lock holder, user.email the audit performer)."""
    try:
        value = _git("config", key).stdout.strip()
    except FileNotFoundError:
        return None
    return value or None
