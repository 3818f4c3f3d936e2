"""The hosts and roles a command acts on, after ``-h/--hosts``, ``-r/--roles`` and ``-p/--primary``.

Filters are comma-separated globs (``*``, ``?``, ``[..]``, ``{a,b}``). Kamal splits on every comma, so a
brace list could never match there; here a comma inside braces stays part of the glob.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration
    from kamalpy.config.roles import Role

from kamalpy.errors import KamalpyError


class FilterError(KamalpyError):
    """``No --hosts match for ...`` / ``No --roles match for ...``."""


def split_filters(value: str | Sequence[str] | None) -> list[str]:
    """Comma-separated filters; commas inside ``{...}`` belong to the glob."""
    if value is None:
        return []
    if not isinstance(value, str):
        return [v for item in value for v in split_filters(item)]
    parts, depth, current = [], 0, ""
    for ch in value:
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += (ch == "{") - (ch == "}" and depth > 0)
        current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _expand_braces(pattern: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [e for option in match.group(1).split(",") for e in _expand_braces(head + option + tail)]


def glob_match(pattern: str, name: str) -> bool:
    """Ruby ``File.fnmatch(pattern, name, File::FNM_EXTGLOB)``: case-sensitive, with brace lists."""
    return any(fnmatch.fnmatchcase(name, p) for p in _expand_braces(pattern))


def filter_items(filters: Sequence[str], items: Sequence[str]) -> list[str]:
    """Items matching any filter, in the filters' order, without duplicates."""
    matches = [item for f in filters for item in items if glob_match(f, item)]
    return list(dict.fromkeys(matches))


class Specifics:
    """Kamal's ``Commander::Specifics``: the selected roles and hosts and the primary among them."""

    def __init__(self, config: Configuration, hosts: str | Sequence[str] | None = None,
                 roles: str | Sequence[str] | None = None, primary: bool = False) -> None:
        self.config = config
        host_filters, role_filters = split_filters(hosts), split_filters(roles)
        self.specific_hosts: list[str] | None = None
        self.specific_roles: list[Role] | None = None
        if host_filters:
            self.specific_hosts = filter_items(host_filters, config.all_hosts)
            if not self.specific_hosts:
                raise FilterError(f"No --hosts match for {','.join(host_filters)}")
        if role_filters:
            names = filter_items(role_filters, [role.name for role in config.roles])
            if not names:
                raise FilterError(f"No --roles match for {','.join(role_filters)}")
            self.specific_roles = [config.role(name) for name in names]
        if primary:
            first = self.specific_roles[0].primary_host if self.specific_roles else config.primary_host
            self.specific_hosts = [first] if first else []

        self.roles = self._specified_roles()
        self.hosts = self._specified_hosts()
        primary_role = self._primary_or_first(self.roles)
        self.primary_host = ((self.specific_hosts or [None])[0]
                             or (primary_role.primary_host if primary_role else None) or config.primary_host)
        self.primary_role = self._primary_or_first(self.roles_on(self.primary_host) if self.primary_host else [])
        # Stable sorts: the primary role first; hosts running the primary role first.
        self.roles.sort(key=lambda role: role is not self.primary_role)
        self.hosts.sort(key=lambda host: not any(r is self.primary_role for r in self.roles_on(host)))

    def _primary_or_first(self, roles: Sequence[Role] | None) -> Role | None:
        roles = list(roles or [])
        return next((r for r in roles if r is self.config.primary_role), roles[0] if roles else None)

    def _specified_roles(self) -> list[Role]:
        hosts = self.specific_hosts if self.specific_hosts is not None else self.config.all_hosts
        roles = self.specific_roles if self.specific_roles is not None else self.config.roles
        return [role for role in roles if set(hosts) & set(role.hosts)]

    def _specified_hosts(self) -> list[str]:
        hosts = list(self.specific_hosts if self.specific_hosts is not None else self.config.all_hosts)
        role_hosts = [h for role in self.specific_roles or [] for h in role.hosts]
        return [h for h in hosts if h in role_hosts] if role_hosts else hosts

    def roles_on(self, host: str) -> list[Role]:
        return [role for role in self.roles if host in role.hosts]

    @property
    def app_hosts(self) -> list[str]:
        """The selected app hosts, those running the primary role first (boot groups rely on it)."""
        app_hosts = set(self.config.app_hosts)
        return [h for h in self.hosts if h in app_hosts]

    @property
    def proxy_hosts(self) -> list[str]:
        return [h for h in self.config.proxy_hosts if h in self.hosts]

    @property
    def accessory_hosts(self) -> list[str]:
        hosts = [h for a in self.config.accessories for h in a.hosts]
        return [h for h in dict.fromkeys(hosts) if h in self.hosts]
