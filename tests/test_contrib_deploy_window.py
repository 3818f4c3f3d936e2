"""contrib/kamalpy-deploy-window: the window logic, its hooks, and the distribution installed for real."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import run_kamalpy, write_project

from kamalpy.errors import ConfigurationError, KamalpyError
from kamalpy.plugin import CommandContext

DIST = Path(__file__).parents[1] / "contrib" / "kamalpy-deploy-window"
if str(DIST) not in sys.path:  # unit tests import the package from its source tree
    sys.path.insert(0, str(DIST))

from kamalpy_deploy_window import plugin  # noqa: E402
from kamalpy_deploy_window import window as w  # noqa: E402

BERLIN_OFFICE = {"days": ["mon", "tue", "wed", "thu", "fri"], "hours": "09:00-17:00", "timezone": "Europe/Berlin"}


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# ----- the window -----

@pytest.mark.parametrize(("settings", "moment", "inside"), [
    # 2026-11-27 is a Friday, 2026-11-28 a Saturday (both CET, UTC+1).
    (BERLIN_OFFICE, "2026-11-27T10:00:00+00:00", True),
    (BERLIN_OFFICE, "2026-11-28T10:00:00+00:00", False),   # Saturday
    (BERLIN_OFFICE, "2026-11-27T08:00:00+01:00", False),   # before opening
    (BERLIN_OFFICE, "2026-11-27T09:00:00+01:00", True),    # start included
    (BERLIN_OFFICE, "2026-11-27T16:59:59+01:00", True),
    (BERLIN_OFFICE, "2026-11-27T17:00:00+01:00", False),   # end excluded
    (BERLIN_OFFICE, "2026-11-27T16:30:00+00:00", False),   # 17:30 in Berlin
    (BERLIN_OFFICE, "2026-11-30T07:59:00-01:00", True),    # Monday 09:59 in Berlin, given in another offset
    # Days only: the whole day.
    ({"days": ["sat", "sun"]}, "2026-11-28T23:59:00+00:00", True),
    ({"days": ["sat", "sun"]}, "2026-11-30T00:00:00+00:00", False),
    # Nothing but the key: every day, all day.
    ({}, "2026-11-28T03:00:00+00:00", True),
    # Crossing midnight: Friday 22:00 until Saturday 02:00.
    ({"days": ["fri"], "hours": "22:00-02:00"}, "2026-11-27T23:00:00+00:00", True),
    ({"days": ["fri"], "hours": "22:00-02:00"}, "2026-11-28T01:59:00+00:00", True),
    ({"days": ["fri"], "hours": "22:00-02:00"}, "2026-11-28T02:00:00+00:00", False),
    ({"days": ["fri"], "hours": "22:00-02:00"}, "2026-11-27T01:00:00+00:00", False),  # Thursday's window
    ({"days": ["fri"], "hours": "22:00-02:00"}, "2026-11-27T21:59:00+00:00", False),
    ({"days": ["sun"], "hours": "22:00-02:00"}, "2026-11-30T01:00:00+00:00", True),  # Sunday wraps to Monday
    ({"hours": "18:00-00:00"}, "2026-11-27T23:59:00+00:00", True),
    ({"hours": "18:00-00:00"}, "2026-11-28T00:00:00+00:00", False),
    # Time zones: Tokyo's Monday morning is still Sunday in UTC.
    ({"days": ["mon"], "hours": "08:00-10:00", "timezone": "Asia/Tokyo"}, "2026-11-29T23:30:00+00:00", True),
    # DST: Berlin's 09:00 is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST, from 2026-03-29).
    (BERLIN_OFFICE, "2026-03-23T07:30:00+00:00", False),  # Monday before the switch: 08:30 CET
    (BERLIN_OFFICE, "2026-03-30T07:30:00+00:00", True),   # Monday after the switch: 09:30 CEST
    (BERLIN_OFFICE, "2026-10-23T15:30:00+00:00", False),  # Friday before the switch back: 17:30 CEST
    (BERLIN_OFFICE, "2026-10-30T15:30:00+00:00", True),   # Friday after it: 16:30 CET
    # New York's spring-forward night: 01:00-03:00 local is only one real hour.
    ({"hours": "01:00-03:00", "timezone": "America/New_York"}, "2026-03-08T06:30:00+00:00", True),   # 01:30 EST
    ({"hours": "01:00-03:00", "timezone": "America/New_York"}, "2026-03-08T07:00:00+00:00", False),  # 03:00 EDT
])
def test_contains(settings, moment, inside):
    assert w.parse_window(settings).contains(at(moment)) is inside


def test_defaults():
    window = w.parse_window({})
    assert window.days == frozenset(range(7))
    assert (window.start, window.end, window.zone.key) == (None, None, "UTC")
    assert window.commands == frozenset({"deploy", "redeploy", "rollback", "setup"})


@pytest.mark.parametrize(("days", "text"), [
    (["mon", "tue", "wed", "thu", "fri"], "Mon-Fri"),
    (["fri", "mon", "wed", "thu"], "Mon, Wed-Fri"),
    (["sun"], "Sun"),
    (list(w.DAYS), "every day"),
])
def test_describe_days(days, text):
    assert w.describe_days(frozenset(w.DAYS.index(d) for d in days)) == text


def test_refusal_message():
    message = w.parse_window(BERLIN_OFFICE).refusal(at("2026-11-28T09:12:00+00:00"))
    assert message == ("Deploys are allowed Mon-Fri 09:00-17:00 Europe/Berlin; it is Sat 10:12 there. "
                       'Set KAMALPY_DEPLOY_WINDOW_OVERRIDE="<reason>" to deploy anyway.')
    assert w.parse_window({"days": ["sat"]}).describe() == "Sat all day UTC"


@pytest.mark.parametrize(("settings", "message"), [
    ({"timezone": "Europe/Berln"}, "deploy_window/timezone: unknown time zone 'Europe/Berln'"),
    ({"timezone": ""}, "deploy_window/timezone: unknown time zone ''"),
    ({"timezone": "../../etc/passwd"}, "deploy_window/timezone: unknown time zone"),
    ({"hours": "9-17"}, "deploy_window/hours: '9-17' is not a time range like 09:00-17:00"),
    ({"hours": "24:00-02:00"}, "deploy_window/hours: '24:00-02:00' is not a time range"),
    ({"hours": "09:60-10:00"}, "deploy_window/hours: '09:60-10:00' is not a time range"),
    ({"hours": "09:00-09:00"}, "deploy_window/hours: '09:00-09:00' is an empty window"),
    ({"commands": ["deploy", "config"]}, "deploy_window/commands: 'config' only shows things"),
])
def test_bad_settings(settings, message):
    with pytest.raises(ConfigurationError) as raised:
        w.parse_window(settings)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_hours_tolerate_spaces_and_single_digit_hours():
    window = w.parse_window({"hours": " 9:00 - 17:30 "})
    assert (window.start, window.end) == (dt.time(9), dt.time(17, 30))


# ----- the clock and the override -----

@pytest.mark.parametrize("text", ["2026-11-28T10:00:00+00:00", "2026-11-28T10:00:00Z", "2026-11-28T11:00:00+01:00"])
def test_now_fixed(text):
    assert w.now({w.NOW_ENV: text}) == at("2026-11-28T10:00:00+00:00")


@pytest.mark.parametrize("text", ["2026-11-28T10:00:00", "tomorrow", "2026-13-01T00:00:00+00:00"])
def test_now_malformed(text):
    expected = re.escape(f"KAMALPY_DEPLOY_WINDOW_NOW: '{text}' is not an ISO 8601 time")
    with pytest.raises(KamalpyError, match="^" + expected):
        w.now({w.NOW_ENV: text})


def test_now_unset_or_empty_is_the_real_clock():
    for environ in ({}, {w.NOW_ENV: "  "}):
        assert abs(w.now(environ) - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(seconds=5)


def test_override_reason_is_one_line():
    assert w.override_reason({}) == ""
    assert w.override_reason({w.OVERRIDE_ENV: "   "}) == ""
    assert w.override_reason({w.OVERRIDE_ENV: " hotfix\n for  outage "}) == "hotfix for outage"


# ----- the before_command hook -----

def context(name: str, settings=None, loader=None) -> CommandContext:
    config = SimpleNamespace(extension=lambda key: settings if key == w.KEY else None)
    return CommandContext(path=tuple(name.split()), options=None, _config_loader=loader or (lambda: config))


@pytest.fixture
def saturday(monkeypatch):
    monkeypatch.setenv(w.NOW_ENV, "2026-11-28T09:12:00+00:00")
    monkeypatch.delenv(w.OVERRIDE_ENV, raising=False)


def test_hook_refuses_outside(saturday):
    refusal = plugin.kamalpy_before_command(context("deploy", BERLIN_OFFICE))
    assert refusal.startswith("Deploys are allowed Mon-Fri 09:00-17:00 Europe/Berlin; it is Sat 10:12 there.")


@pytest.mark.parametrize("name", ["redeploy", "rollback", "setup"])
def test_hook_guards_default_commands(saturday, name):
    assert plugin.kamalpy_before_command(context(name, BERLIN_OFFICE))


def test_hook_allows_inside(monkeypatch):
    monkeypatch.setenv(w.NOW_ENV, "2026-11-27T10:00:00+00:00")
    assert plugin.kamalpy_before_command(context("deploy", BERLIN_OFFICE)) is None


def test_hook_allows_without_key(saturday):
    assert plugin.kamalpy_before_command(context("deploy", None)) is None


def test_hook_only_checks_listed_commands(saturday):
    settings = {**BERLIN_OFFICE, "commands": ["app boot"]}
    assert plugin.kamalpy_before_command(context("deploy", settings)) is None
    assert plugin.kamalpy_before_command(context("app boot", settings))
    assert plugin.kamalpy_before_command(context("app details", BERLIN_OFFICE)) is None


def test_hook_never_loads_config_for_read_only_commands(saturday):
    def boom():
        raise AssertionError("configuration loaded")

    for name in ("config", "docs", "plugins", "app details"):
        assert plugin.kamalpy_before_command(context(name, loader=boom)) is None


def test_hook_config_errors(saturday):
    def broken():
        raise ConfigurationError("servers: missing")

    with pytest.raises(ConfigurationError):  # deploy needs its config: fail before anything else
        plugin.kamalpy_before_command(context("deploy", loader=broken))
    assert plugin.kamalpy_before_command(context("secrets fetch", loader=broken)) is None


def test_hook_override(saturday, monkeypatch, capsys):
    monkeypatch.setenv(w.OVERRIDE_ENV, "hotfix for outage")
    assert plugin.kamalpy_before_command(context("deploy", BERLIN_OFFICE)) is None
    assert capsys.readouterr().err == (
        "WARNING: 'deploy' outside the deploy window (Mon-Fri 09:00-17:00 Europe/Berlin; it is Sat 10:12 "
        "there), allowed by KAMALPY_DEPLOY_WINDOW_OVERRIDE: hotfix for outage\n")
    # Inside the window the override says nothing.
    monkeypatch.setenv(w.NOW_ENV, "2026-11-27T10:00:00+00:00")
    assert plugin.kamalpy_before_command(context("deploy", BERLIN_OFFICE)) is None
    assert capsys.readouterr().err == ""


def test_hook_malformed_clock(monkeypatch):
    monkeypatch.setenv(w.NOW_ENV, "soon")
    with pytest.raises(KamalpyError, match="KAMALPY_DEPLOY_WINDOW_NOW: 'soon'"):
        plugin.kamalpy_before_command(context("deploy", BERLIN_OFFICE))
    assert plugin.kamalpy_before_command(context("deploy", None)) is None  # no window: the clock is not read


# ----- the key in a real configuration (in-process, plugin from KAMALPY_PLUGINS) -----

PROJECT = """\
service: app
image: dhh/app
servers:
  - 10.0.0.1
registry:
  server: registry.example.com
  username: dhh
  password: secret
builder:
  arch: amd64
"""


@pytest.mark.parametrize(("block", "error"), [
    ("  timezone: Mars/Olympus\n", "ERROR: deploy_window/timezone: unknown time zone 'Mars/Olympus'"),
    ("  days: [mon, friday]\n", "ERROR: deploy_window/days/1: 'friday' is not one of"),
    ("  hours: 9-17\n", "ERROR: deploy_window/hours: '9-17' is not a time range like 09:00-17:00"),
    ("  start: '09:00'\n", "ERROR: deploy_window: Additional properties are not allowed"),
])
def test_config_errors_in_process(kamalpy, monkeypatch, tmp_path, block, error):
    monkeypatch.setenv("KAMALPY_PLUGINS", "kamalpy_deploy_window.plugin")
    monkeypatch.chdir(write_project(tmp_path, PROJECT + "deploy_window:\n" + block))
    result = kamalpy("config", "--version", "v1")
    assert result.code == 1
    assert result.err.startswith(error) and len(result.err.splitlines()) == 1, result.err


def test_docs_in_process(kamalpy, monkeypatch):
    monkeypatch.setenv("KAMALPY_PLUGINS", "kamalpy_deploy_window.plugin")
    result = kamalpy("docs", "deploy_window")
    assert result.code == 0 and "KAMALPY_DEPLOY_WINDOW_OVERRIDE" in result.out


# ----- the distribution, built and installed for real -----

WINDOW = ('deploy_window:\n  days: [mon, tue, wed, thu, fri]\n  hours: "09:00-17:00"\n'
          "  timezone: Europe/Berlin\n")
SATURDAY = {"KAMALPY_DEPLOY_WINDOW_NOW": "2026-11-28T09:12:00+00:00"}
FRIDAY = {"KAMALPY_DEPLOY_WINDOW_NOW": "2026-11-27T10:00:00+00:00"}
REFUSAL = ('ERROR: Deploys are allowed Mon-Fri 09:00-17:00 Europe/Berlin; it is Sat 10:12 there. '
           'Set KAMALPY_DEPLOY_WINDOW_OVERRIDE="<reason>" to deploy anyway.')


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """pip-install the distribution into a directory used as PYTHONPATH (never into /work/venv).

    A copy is installed so pip's build/ and egg-info/ land in the temporary tree, not in contrib/.
    """
    source = tmp_path_factory.mktemp("src") / DIST.name
    shutil.copytree(DIST, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )
    return target


def run_all(site: Path, calls: list[tuple[Path, dict, tuple[str, ...]]]):
    """Run kamalpy calls in parallel: (cwd, extra env, args) -> results in order."""
    def one(call):
        cwd, env, args = call
        return run_kamalpy(*args, cwd=cwd, env={"PYTHONPATH": str(site), "KAMALPY_DEPLOY_WINDOW_OVERRIDE": "",
                                                "KAMALPY_PLUGINS": "", **env})

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, calls))


def project(root: Path, extra: str) -> Path:
    root.mkdir()
    return write_project(root, PROJECT + extra)


def test_installed_plugin_guards_a_real_command(site, tmp_path):
    """`proxy boot` exists today, so it proves the installed policy end to end with --dry-run."""
    proj = project(tmp_path / "p", WINDOW + "  commands: [proxy boot]\n")
    boot = ("proxy", "boot", "--dry-run", "--version", "v1")
    listed, outside, inside, override, config, bad_clock, bad_zone = run_all(site, [
        (proj, {}, ("plugins", "--json")),
        (proj, SATURDAY, boot),
        (proj, FRIDAY, boot),
        (proj, {**SATURDAY, "KAMALPY_DEPLOY_WINDOW_OVERRIDE": "hotfix"}, boot),
        (proj, SATURDAY, ("config", "--version", "v1")),
        (proj, {"KAMALPY_DEPLOY_WINDOW_NOW": "2026-11-28 10:00"}, boot),
        (project(tmp_path / "z", WINDOW.replace("Europe/Berlin", "Europe/Berln")), {}, ("config", "--version", "v1")),
    ])
    mine = [p for p in json.loads(listed.out) if p["name"] == "deploy_window"]
    assert mine and (mine[0]["distribution"], mine[0]["version"]) == ("kamalpy-deploy-window", "0.1.0")
    assert {"kamalpy_before_command", "kamalpy_config_keys", "kamalpy_validate_config"} <= set(mine[0]["hooks"])

    assert (outside.code, outside.out) == (1, "")
    assert outside.err.strip() == REFUSAL

    assert inside.code == 0, inside.err
    assert "Deploys are allowed" not in inside.err and "10.0.0.1\t" in inside.out

    assert override.code == 0, override.err
    assert override.err.startswith("WARNING: 'proxy boot' outside the deploy window (Mon-Fri 09:00-17:00 "
                                   "Europe/Berlin; it is Sat 10:12 there), allowed by "
                                   "KAMALPY_DEPLOY_WINDOW_OVERRIDE: hotfix\n")

    assert (config.code, config.err) == (0, "")  # read-only commands are never refused

    assert bad_clock.code == 1 and "Traceback" not in bad_clock.err
    assert bad_clock.err.strip().startswith("ERROR: KAMALPY_DEPLOY_WINDOW_NOW: '2026-11-28 10:00' is not an ISO")

    assert bad_zone.code == 1
    assert bad_zone.err == ("ERROR: deploy_window/timezone: unknown time zone 'Europe/Berln' "
                            "(use an IANA name like Europe/Berlin)\n")


def test_installed_plugin_deploy(site, tmp_path):
    """The real target: `kamalpy deploy` refused outside the window, allowed inside (dry run, no servers)."""
    proj = project(tmp_path / "p", WINDOW)
    if run_kamalpy("deploy", "--help", cwd=proj, env={"PYTHONPATH": str(site)}).code != 0:
        pytest.skip("kamalpy has no deploy command yet")
    deploy = ("deploy", "--dry-run", "-P", "--version", "v1")
    outside, inside, override, no_key, config = run_all(site, [
        (proj, SATURDAY, deploy),
        (proj, FRIDAY, deploy),
        (proj, {**SATURDAY, "KAMALPY_DEPLOY_WINDOW_OVERRIDE": "hotfix"}, deploy),
        (project(tmp_path / "n", ""), SATURDAY, deploy),
        (proj, SATURDAY, ("config", "--version", "v1")),
    ])
    assert (outside.code, outside.out, outside.err.strip()) == (1, "", REFUSAL)
    for allowed in (inside, override, no_key):
        assert allowed.code == 0, allowed.err
        assert "Deploys are allowed" not in allowed.out + allowed.err and "Traceback" not in allowed.err
    assert override.err.startswith("WARNING: 'deploy' outside the deploy window")
    assert (config.code, config.err) == (0, "")
