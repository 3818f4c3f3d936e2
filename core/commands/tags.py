"""Kamal's tags (``Kamal::Tags``): the details an audit line and a hook's environment carry.

Order matters (audit lines print the values in order): recorded_at, performer, destination, version,
service_version, service, then the caller's details. ``None`` values are left out; a detail with the
name of a default tag replaces it in place, as a Ruby hash merge does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from kamalpy.commands.base import iso8601
from kamalpy.config.args import ruby_string

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

VERSION_TAGS = ("version", "service_version", "service")


def service_version(config: Configuration) -> str:
    """``<service>@<abbreviated version>`` (the full version when it contains ``_``)."""
    return "@".join(p for p in (config.service, config.abbreviated_version) if p is not None)


def tags(config: Configuration, *, performer: str, recorded_at: str | None = None,
         details: Mapping[str, object] | None = None, without: Collection[str] = ()) -> dict[str, str]:
    """The tags in Kamal's order; tags named in ``without`` are never computed (the version may need git)."""
    found: dict[str, object] = {"recorded_at": recorded_at or iso8601(), "performer": performer,
                                "destination": config.destination}
    if "version" not in without:
        found["version"] = config.version
    if "service_version" not in without:
        found["service_version"] = service_version(config)
    if "service" not in without:
        found["service"] = config.service
    found.update(details or {})
    return {key: ruby_string(value) for key, value in found.items() if value is not None and key not in without}


def tags_to_s(found: Mapping[str, str]) -> str:
    """``[value] [value] ...`` (``Tags#to_s``)."""
    return " ".join(f"[{value}]" for value in found.values())


def tags_env(found: Mapping[str, str]) -> dict[str, str]:
    """``KAMAL_<NAME>`` variables (``Tags#env``)."""
    return {f"KAMAL_{key.upper()}": value for key, value in found.items()}
