"""RubyGems' ``Gem::Version``: which strings are versions, and how two versions compare.

Kamal checks ``minimum_version`` with ``Gem::Version``, so a value it cannot parse fails with
``Malformed version number string <value>`` and ``2.11.0.a`` sorts before ``2.11.0``. Rules from
rubygems/version.rb: ``-`` means ``.pre.``, segments are digit or letter runs, a letter segment is a
pre-release (below any number), trailing zeros of the release and pre-release parts do not count.
"""

from __future__ import annotations

import re

from kamalpy.errors import ConfigurationError

# Gem::Version::ANCHORED_VERSION_PATTERN; Ruby's \s is ASCII whitespace only, and \z is fullmatch.
_WS = "[ \t\r\n\f\v]*"
_VERSION = re.compile(
    _WS + r"(?:[0-9]+(?:\.[0-9a-zA-Z]+)*(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?" + _WS
)

Segment = int | str


def segments(version: str) -> list[Segment]:
    """Gem::Version#canonical_segments of ``version`` (raises Kamal's error when it is not a version)."""
    if not _VERSION.fullmatch(version):
        raise ConfigurationError(f"Malformed version number string {version}")
    text = version.strip(" \t\r\n\f\v").replace("-", ".pre.") or "0"
    parts: list[Segment] = [int(s) if s.isdigit() else s for s in re.findall(r"[0-9]+|[a-zA-Z]+", text)]
    first_letter = next((i for i, s in enumerate(parts) if isinstance(s, str)), len(parts))
    release, prerelease = parts[:first_letter], parts[first_letter:]
    return _drop_trailing_zeros(release) + _drop_trailing_zeros(prerelease)


def newer(a: str, b: str) -> bool:
    """``Gem::Version.new(a) > Gem::Version.new(b)``."""
    left, right = segments(a), segments(b)
    for i in range(max(len(left), len(right))):
        lhs = left[i] if i < len(left) else 0
        rhs = right[i] if i < len(right) else 0
        if lhs == rhs:
            continue
        if isinstance(lhs, str) != isinstance(rhs, str):
            return isinstance(rhs, str)  # a number is newer than a pre-release letter
        return lhs > rhs  # type: ignore[operator]  # both numbers or both strings
    return False


def _drop_trailing_zeros(parts: list[Segment]) -> list[Segment]:
    while parts and parts[-1] == 0:
        parts = parts[:-1]
    return parts
