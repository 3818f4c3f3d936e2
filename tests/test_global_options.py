"""Global options reach the run on every click release kamalpy allows, and ``--dry-run`` connects to nothing.

With click 8.4.0 the options were once read through click's parameter source from a callback, which that
release fills in only after the callbacks: every global option was dropped and ``--dry-run`` ran the
commands for real. CI runs this file under the lowest allowed click, 8.4.0 and the newest (scripts/dep-matrix).
The hosts are loopback addresses with a listener on the SSH port: any connection attempt would be left
pending there.
"""

from __future__ import annotations

import sys

import click
import pytest
from helpers import LOOPBACK_HOSTS, assert_no_connection, dry_run_environment, write_project

from kamalpy.cli.base import KamalpyGroup, Run, current_run
from kamalpy.cli.options import GlobalOptions

H1, H2 = LOOPBACK_HOSTS
DEPLOY_YML = f"""\
service: app
image: dhh/app
servers:
  web: [{H1}, {H2}]
  workers:
    hosts: [{H2}]
    cmd: bin/jobs
ssh:
  port: {{port}}
registry:
  username: dhh
  password: secret
builder:
  arch: amd64
accessories:
  db:
    image: mysql:8.0
    host: {H2}
    port: "3306"
"""

# Commands that change servers, each as the user would type it after the global options.
COMMANDS = [
    ["deploy"],
    ["redeploy"],
    ["setup"],
    ["rollback", "122"],
    ["remove", "-y"],
    ["app", "boot"],
    ["app", "stop"],
    ["app", "remove"],
    ["server", "exec", "date"],
    ["server", "bootstrap"],
    ["proxy", "boot"],
    ["proxy", "reboot", "-y"],
    ["accessory", "boot", "db"],
    ["accessory", "remove", "db", "-y"],
    ["build", "pull"],
    ["build", "push"],
    ["lock", "acquire", "-m", "maintenance"],
    ["prune", "all"],
    ["registry", "login"],
]


class FakeStdin:
    def isatty(self) -> bool:
        return False


@pytest.fixture
def project(tmp_path, monkeypatch, listeners):
    write_project(tmp_path, DEPLOY_YML.format(port=listeners[0]), files={"Dockerfile": "FROM scratch\n"})
    monkeypatch.setattr(sys, "stdin", FakeStdin())
    dry_run_environment(monkeypatch, tmp_path, version="123", name="Dee Ployer", email="deployer@example.com")
    return tmp_path


def _placements(words: list[str]) -> dict[str, list[str]]:
    """``--dry-run`` before the command, after it, and (for a group's command) between group and command."""
    placed = {"first": ["--dry-run", *words], "last": [*words, "--dry-run"]}
    if len(words) > 1:
        placed["middle"] = [words[0], "--dry-run", *words[1:]]
    return placed


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_dry_run_connects_to_nothing(kamalpy, project, listeners, words):
    for place, args in _placements(words).items():
        result = kamalpy(*args)
        assert result.code == 0, f"{place}: {args}: {result.err}"
        # Printed, not run: commands for the servers and for this machine (build push) alike.
        assert any(line.startswith((f"{H1}\t", f"{H2}\t", "local\t")) for line in result.out.splitlines()), \
            f"{place}: {args}: no dry-run line"
        assert_no_connection(listeners[1])


def test_dry_run_with_other_global_options(kamalpy, project, listeners):
    """Options before and after the command name add up: role, version and dry-run all apply."""
    result = kamalpy("-r", "workers", "app", "boot", "--version", "77", "--dry-run")
    assert result.code == 0, result.err
    assert "app-workers-77" in result.out and "app-web-77" not in result.out
    assert_no_connection(listeners[1])


# Each global option with a value that differs from its default, as typed and as recorded.
GIVEN = [
    (["-v"], "verbose", True),
    (["-q"], "quiet", True),
    (["--version", "42"], "version", "42"),
    (["-p"], "primary", True),
    (["-h", "a,b"], "hosts", "a,b"),
    (["-r", "web"], "roles", "web"),
    (["-c", "other.yml"], "config_file", "other.yml"),
    (["-d", "staging"], "destination", "staging"),
    (["-H"], "skip_hooks", True),
    (["--lock-wait"], "lock_wait", True),
    (["--lock-wait-timeout", "5"], "lock_wait_timeout", 5.0),
    (["--lock-wait-interval", "2.5"], "lock_wait_interval", 2.5),
    (["--dry-run"], "dry_run", True),
    (["--disable-plugin", "x"], "disable_plugin", ("x",)),
]


def _options_after(args: list[str]) -> GlobalOptions:
    """Parse ``args`` with a root group, a group and a command, as kamalpy's do; the command's view."""
    seen: list[GlobalOptions] = []

    @click.group("kamalpy", cls=KamalpyGroup)
    def root() -> None:
        pass

    @root.group("grp")
    def grp() -> None:
        pass

    @grp.command("cmd", lifecycle=False)
    @click.argument("name", required=False)
    def cmd(name: str | None) -> None:
        seen.append(current_run().options)

    root.main(args, prog_name="kamalpy", standalone_mode=False, obj=Run(load_entry_points=False))
    assert seen, "the command did not run"
    return seen[0]


@pytest.mark.parametrize("typed, name, value", GIVEN, ids=[g[1] for g in GIVEN])
@pytest.mark.parametrize("place", ["root", "group", "command", "after argument"])
def test_each_global_option_is_recorded_wherever_it_is_given(typed, name, value, place):
    args = {"root": [*typed, "grp", "cmd"], "group": ["grp", *typed, "cmd"],
            "command": ["grp", "cmd", *typed], "after argument": ["grp", "cmd", "arg", *typed]}[place]
    options = _options_after(args)
    assert getattr(options, name) == value
    untouched = {f: v for f, v in vars(GlobalOptions()).items() if f != name}
    assert {f: getattr(options, f) for f in untouched} == untouched


def test_defaults_when_nothing_is_given():
    assert _options_after(["grp", "cmd"]) == GlobalOptions()


def test_the_innermost_value_wins_and_disable_plugin_adds_up():
    options = _options_after(["-d", "a", "--lock-wait-timeout", "9", "--disable-plugin", "x",
                              "grp", "-d", "b", "cmd", "-d", "c", "--lock-wait-timeout", "900",
                              "--disable-plugin", "y"])
    assert options.destination == "c"
    assert options.lock_wait_timeout == 900  # given explicitly, even though it equals the default
    assert options.disable_plugin == ("x", "y")


def test_global_options_stay_out_of_the_command_parameters():
    """Commands and plugin hooks see only their own parameters (as before: the globals are the run's)."""
    params: list[dict] = []

    @click.group("kamalpy", cls=KamalpyGroup)
    def root() -> None:
        pass

    @root.command("cmd", lifecycle=False)
    @click.option("--own")
    @click.pass_context
    def cmd(ctx: click.Context, own: str | None) -> None:
        params.append(dict(ctx.params))

    root.main(["--dry-run", "cmd", "--own", "x", "-d", "s"], prog_name="kamalpy", standalone_mode=False,
              obj=Run(load_entry_points=False))
    assert params == [{"own": "x"}]
