"""The deploy window: its settings, the clock, and whether a moment falls inside it.

Nothing here talks to kamalpy's CLI; :mod:`kamalpy_deploy_window.plugin` wires it to the hooks.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kamalpy.errors import ConfigurationError, KamalpyError

KEY = "deploy_window"
OVERRIDE_ENV = "KAMALPY_DEPLOY_WINDOW_OVERRIDE"
NOW_ENV = "KAMALPY_DEPLOY_WINDOW_NOW"

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index == datetime.weekday()
DEFAULT_COMMANDS = ("deploy", "redeploy", "rollback", "setup")
# Commands that only show things: the window never applies to them, and `commands` may not list them,
# so the configuration can always be inspected and fixed.
READ_ONLY_COMMANDS = frozenset({
    "config", "docs", "plugins", "version", "audit", "lock status",
    "app details", "app containers", "app images", "app logs", "app version",
    "proxy details", "proxy logs", "secrets print",
})

_HOURS = re.compile(r"\s*(\d{1,2}):(\d\d)\s*-\s*(\d{1,2}):(\d\d)\s*")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "days": {"type": "array", "items": {"enum": list(DAYS)}, "minItems": 1, "uniqueItems": True},
        "hours": {"type": "string"},
        "timezone": {"type": "string"},
        "commands": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    },
    "additionalProperties": False,
}

DESCRIPTION = (
    "Allow deploying commands only inside a weekly time window. `days`: list of mon..sun (default: "
    "every day); `hours`: \"HH:MM-HH:MM\" in local time of `timezone`, start included, end excluded, "
    "may cross midnight (\"22:00-02:00\"; the window belongs to the day it starts on); default: all day; "
    "`timezone`: IANA name (default UTC); `commands`: the commands checked (default: deploy, redeploy, "
    "rollback, setup). Set KAMALPY_DEPLOY_WINDOW_OVERRIDE=\"<reason>\" to run outside the window."
)


class DeployWindowError(KamalpyError):
    """A malformed setting outside the configuration (the clock override)."""


@dataclass(frozen=True)
class Window:
    days: frozenset[int]
    """Weekdays (0 = Monday) on which the window opens."""
    start: dt.time | None
    """Opening time, or None for the whole day."""
    end: dt.time | None
    """Closing time (excluded); earlier than ``start`` when the window crosses midnight."""
    zone: ZoneInfo
    commands: frozenset[str]

    def contains(self, moment: dt.datetime) -> bool:
        """Whether ``moment`` (an aware datetime) is inside the window, judged on the zone's wall clock."""
        local = moment.astimezone(self.zone)
        day, clock = local.weekday(), local.time().replace(tzinfo=None)
        if self.start is None or self.end is None:
            return day in self.days
        if self.start < self.end:
            return day in self.days and self.start <= clock < self.end
        # Crossing midnight: the early-morning part belongs to the previous day's window.
        return (day in self.days and clock >= self.start) or ((day - 1) % 7 in self.days and clock < self.end)

    def describe(self) -> str:
        """``Mon-Fri 09:00-17:00 Europe/Berlin``."""
        hours = "all day" if self.start is None or self.end is None else f"{self.start:%H:%M}-{self.end:%H:%M}"
        return f"{describe_days(self.days)} {hours} {self.zone.key}"

    def local_now(self, moment: dt.datetime) -> str:
        """``Sat 10:12``: the moment on the zone's wall clock."""
        local = moment.astimezone(self.zone)
        return f"{DAYS[local.weekday()].capitalize()} {local:%H:%M}"

    def refusal(self, moment: dt.datetime) -> str:
        return (f"Deploys are allowed {self.describe()}; it is {self.local_now(moment)} there. "
                f"Set {OVERRIDE_ENV}=\"<reason>\" to deploy anyway.")


def describe_days(days: frozenset[int]) -> str:
    """Runs of consecutive days joined with a dash: ``Mon-Fri``, ``Mon, Wed-Thu``, ``every day``."""
    if len(days) == 7:
        return "every day"
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    names = [DAYS[run[0]].capitalize() + (f"-{DAYS[run[-1]].capitalize()}" if len(run) > 1 else "") for run in runs]
    return ", ".join(names)


def parse_hours(value: str) -> tuple[dt.time, dt.time]:
    match = _HOURS.fullmatch(value)
    start = end = None
    if match:
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        if h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60:
            start, end = dt.time(h1, m1), dt.time(h2, m2)
    if start is None or end is None:
        raise ConfigurationError(f"{KEY}/hours: '{value}' is not a time range like 09:00-17:00")
    if start == end:
        raise ConfigurationError(f"{KEY}/hours: '{value}' is an empty window (leave hours out for the whole day)")
    return start, end


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: empty or path-like names
        raise ConfigurationError(f"{KEY}/timezone: unknown time zone '{name}' (use an IANA name like "
                                 "Europe/Berlin)") from None


def parse_window(settings: Mapping[str, Any]) -> Window:
    """The window from the (schema-validated) ``deploy_window`` block; ConfigurationError when unusable."""
    start = end = None
    if "hours" in settings:
        start, end = parse_hours(settings["hours"])
    commands = settings.get("commands", DEFAULT_COMMANDS)
    read_only = sorted(set(commands) & READ_ONLY_COMMANDS)
    if read_only:
        raise ConfigurationError(f"{KEY}/commands: '{read_only[0]}' only shows things and is never refused")
    return Window(
        days=frozenset(DAYS.index(day) for day in settings.get("days", DAYS)),
        start=start,
        end=end,
        zone=parse_zone(settings.get("timezone", "UTC")),
        commands=frozenset(commands),
    )


def parse_now(value: str) -> dt.datetime:
    """An ISO 8601 time with a UTC offset (``Z`` accepted); DeployWindowError otherwise."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not read "Z"
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise DeployWindowError(f"{NOW_ENV}: '{value}' is not an ISO 8601 time with a UTC offset, "
                                "e.g. 2026-11-28T10:00:00+00:00")
    return moment


def now(environ: Mapping[str, str] = os.environ) -> dt.datetime:
    """The current time, or the one fixed by KAMALPY_DEPLOY_WINDOW_NOW (empty means unset)."""
    fixed = environ.get(NOW_ENV, "")
    return parse_now(fixed) if fixed.strip() else dt.datetime.now(dt.timezone.utc)


def override_reason(environ: Mapping[str, str] = os.environ) -> str:
    """The emergency override's reason on one line, or "" when not set."""
    return " ".join(environ.get(OVERRIDE_ENV, "").split())
