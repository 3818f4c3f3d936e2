"""The ``kamalpy`` entry points of the installed distributions, remembered between runs.

``importlib.metadata`` costs ~20 ms to import (``email``, ``zipfile``, ``csv``...) and as much again to
read every distribution's metadata, on every command. Its answer only changes when a distribution
appears, disappears or changes on ``sys.path``, so it is kept in ``entry-points-<hash>.json`` in
``$KAMALPY_CACHE_DIR``, else ``$XDG_CACHE_HOME/kamalpy`` (``~/.cache/kamalpy``), under a key made of what
``importlib.metadata`` reads: each ``sys.path`` entry (stat of the directory or zip file) and, in each
directory, every ``*.dist-info``, ``*.egg-info`` and ``*.egg`` with its ``entry_points.txt`` and metadata
file (stat: mtime in ns, size, inode). Any difference, or a distribution finder other than Python's own
``PathFinder`` on ``sys.meta_path``, means a fresh scan through ``importlib.metadata``. A key whose newest
stat is younger than two seconds is not written (a change within the same clock tick would keep the
same mtime: git's "racy" rule). ``KAMALPY_NO_CACHE=1`` turns the cache off.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Any

CACHE_ENV = "KAMALPY_NO_CACHE"
DIR_ENV = "KAMALPY_CACHE_DIR"
FORMAT = 1
RACY_NS = 2_000_000_000
_METADATA_SUFFIXES = (".dist-info", ".egg-info", ".egg")
_METADATA_FILES = ("entry_points.txt", "METADATA", "PKG-INFO", "EGG-INFO/entry_points.txt", "EGG-INFO/PKG-INFO")


@dataclass(frozen=True)
class EntryPoint:
    """One entry point: ``name = value`` of distribution ``distribution`` (``version``)."""

    name: str
    value: str
    distribution: str
    version: str

    def load(self) -> Any:
        """What ``importlib.metadata.EntryPoint.load`` returns: the module, or its attribute after ``:``."""
        import importlib

        match = _pattern().match(self.value)
        module = importlib.import_module(match.group("module"))  # type: ignore[union-attr]  # as importlib does
        attrs = filter(None, (match.group("attr") or "").split("."))  # type: ignore[union-attr]
        return functools.reduce(getattr, attrs, module)


@functools.cache
def _pattern() -> Any:
    import re

    # importlib.metadata.EntryPoint.pattern
    return re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


def entry_points(group: str) -> list[EntryPoint]:
    """``importlib.metadata.entry_points(group=group)``, from the cache when nothing changed on ``sys.path``."""
    if os.environ.get(CACHE_ENV) or not _only_path_finder():
        return _scan(group)
    path = _cache_file()
    key, newest = _key()
    groups = _cached_groups(path, key)
    if group in groups:
        return [EntryPoint(*item) for item in groups[group]]
    found = _scan(group)
    groups[group] = [[ep.name, ep.value, ep.distribution, ep.version] for ep in found]
    if time.time_ns() - newest > RACY_NS:
        _write(path, {"key": key, "groups": groups})
    return found


def _cached_groups(path: str, key: list[Any]) -> dict[str, list[list[str]]]:
    """The cached groups when the cache file was written under ``key`` (else none)."""
    data = _read(path)
    try:
        if data is not None and data["key"] == key:
            groups = data["groups"]
            if all(isinstance(item, list) and len(item) == 4 and all(isinstance(part, str) for part in item)
                   for items in groups.values() for item in items):
                return dict(groups)
    except (KeyError, TypeError, AttributeError):
        pass
    return {}


def _scan(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points as metadata_entry_points

    return [EntryPoint(ep.name, ep.value, ep.dist.name if ep.dist else "", ep.dist.version if ep.dist else "")
            for ep in metadata_entry_points(group=group)]


def _only_path_finder() -> bool:
    """importlib.metadata asks every ``sys.meta_path`` finder with ``find_distributions``: only PathFinder's
    answer is covered by the key."""
    from importlib.machinery import PathFinder

    return all(finder is PathFinder for finder in sys.meta_path if hasattr(finder, "find_distributions"))


def _key() -> tuple[list[Any], int]:
    """What importlib.metadata's answer depends on (see the module docstring), and its newest mtime."""
    stats: list[list[int]] = []

    def stat(path: str) -> list[int] | None:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        stats.append([st.st_mtime_ns, st.st_size, st.st_ino])
        return stats[-1]

    key: list[Any] = [FORMAT, sys.version, sys.executable]
    for entry in sys.path:
        root = entry or "."  # importlib.metadata reads "" as the current directory
        key.append([entry, stat(root)])
        try:
            names = sorted(os.listdir(root))
        except (OSError, ValueError):
            continue
        for name in names:
            if name.lower().endswith(_METADATA_SUFFIXES):
                child = os.path.join(root, name)
                key.append([name, stat(child), [stat(os.path.join(child, file)) for file in _METADATA_FILES]])
    return key, max((mtime for mtime, _, _ in stats), default=0)


def cache_dir() -> str:
    """``$KAMALPY_CACHE_DIR``, else ``$XDG_CACHE_HOME/kamalpy`` (``~/.cache/kamalpy``)."""
    if os.environ.get(DIR_ENV):
        return os.environ[DIR_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kamalpy")


def _cache_file() -> str:
    # One file per interpreter and sys.path, so that several virtualenvs do not overwrite each other's.
    digest = zlib.crc32(json.dumps([sys.executable, sys.path]).encode())
    return os.path.join(cache_dir(), f"entry-points-{digest:08x}.json")


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: str, data: dict[str, Any]) -> None:
    """Best effort (a read-only home only costs the scan), atomic (concurrent runs never read half a file)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
