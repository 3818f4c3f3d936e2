"""The CLI skeleton: global options on every command, errors, lifecycle hooks, aliases."""

from __future__ import annotations

import textwrap

import pytest
from helpers import MINIMAL, write_project

from kamalpy.cli.main import make_cli

GLOBAL_FLAGS = ["-v", "--verbose", "-q", "--quiet", "--version", "-p", "--primary", "-h", "--hosts", "-r",
                "--roles", "-c", "--config-file", "-d", "--destination", "-H", "--skip-hooks", "--lock-wait",
                "--lock-wait-timeout", "--lock-wait-interval", "--help"]


def _all_commands(group, ctx, prefix=()):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield prefix + (name,), cmd
        if hasattr(cmd, "list_commands"):
            yield from _all_commands(cmd, ctx, prefix + (name,))


def test_every_command_has_every_global_option():
    import click

    from kamalpy.cli.base import Run

    cli = make_cli()
    with click.Context(cli, obj=Run()) as ctx:
        commands = list(_all_commands(cli, ctx))
        assert len(commands) >= 3
        for path, cmd in [((), cli), *commands]:
            opts = {opt for param in cmd.get_params(ctx) for opt in param.opts}
            missing = [flag for flag in GLOBAL_FLAGS if flag not in opts]
            assert not missing, f"{' '.join(path) or 'kamalpy'} lacks {missing}"


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    """A plugin module (through KAMALPY_PLUGINS) that records lifecycle calls and refuses on demand."""
    module = tmp_path / "recording_plugin.py"
    module.write_text(textwrap.dedent("""
        from kamalpy.plugin import hookimpl
        CALLS = []
        REFUSE = set()

        @hookimpl
        def kamalpy_before_command(command):
            CALLS.append(("before", command.name, command.options.destination, command.options.hosts))
            if command.name in REFUSE:
                return f"not now: {command.name}"

        @hookimpl
        def kamalpy_after_command(command, error):
            CALLS.append(("after", command.name, type(error).__name__ if error else None))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KAMALPY_PLUGINS", "recording_plugin")
    import importlib

    import recording_plugin

    importlib.reload(recording_plugin)
    return recording_plugin


def test_global_options_before_and_after_command(kamalpy, recorder):
    assert kamalpy("-d", "staging", "plugins", "-h", "a,b").code == 0
    assert recorder.CALLS[0] == ("before", "plugins", "staging", "a,b")
    assert recorder.CALLS[-1] == ("after", "plugins", None)


def test_policy_refuses_with_its_message(kamalpy, recorder):
    recorder.REFUSE.add("plugins")
    result = kamalpy("plugins")
    assert result.code == 1
    assert result.err == "ERROR: not now: plugins\n"
    assert result.out == ""
    assert ("after", "plugins", None) not in recorder.CALLS


def test_after_command_sees_the_error(kamalpy, recorder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no config here
    result = kamalpy("config")
    assert result.code == 1
    assert recorder.CALLS[-1] == ("after", "config", "ConfigurationError")  # the error that ended the command


def test_version_loads_no_plugin(kamalpy, recorder):
    result = kamalpy("version")
    assert result.code == 0 and result.out.strip()
    assert recorder.CALLS == []


def test_unknown_command_and_option_are_one_line(kamalpy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["nope"], ["plugins", "--nope"], ["plugins", "--lock-wait-timeout", "soon"]):
        result = kamalpy(*args)
        assert result.code == 1
        assert len(result.err.splitlines()) == 1 and result.err.startswith("ERROR: "), result.err


ALIASES = MINIMAL + textwrap.dedent("""\
    aliases:
      cfg: config --json
      other: config -c config/other.yml
""")


def test_alias_runs_with_extra_args_and_inner_options(kamalpy, tmp_path, monkeypatch):
    write_project(tmp_path, ALIASES, files={"config/other.yml": MINIMAL.replace("service: app", "service: other")})
    monkeypatch.chdir(tmp_path)
    import json

    result = kamalpy("cfg", "--version", "v9")
    assert result.code == 0, result.err
    assert json.loads(result.out)["version"] == "v9"
    other = kamalpy("other", "--version", "v9", "--json")
    assert other.code == 0, other.err
    assert json.loads(other.out)["service_with_version"] == "other-v9"


def test_alias_from_destination_file(kamalpy, tmp_path, monkeypatch):
    write_project(tmp_path, MINIMAL, files={"config/deploy.staging.yml": "aliases:\n  cfg: config --json\n"})
    monkeypatch.chdir(tmp_path)
    assert kamalpy("cfg", "-d", "staging", "--version", "v1").code == 0
    assert kamalpy("cfg", "--version", "v1").code == 1


def test_alias_loop_is_an_error(kamalpy, tmp_path, monkeypatch):
    write_project(tmp_path, ALIASES + "  loop: loop\n")
    monkeypatch.chdir(tmp_path)
    result = kamalpy("loop")
    assert result.code == 1
    assert result.err == "ERROR: aliases/loop: alias loop: loop -> loop\n"


def test_shell_completion_lists_commands(tmp_path):
    import os
    import subprocess

    from helpers import KAMALPY

    env = {**os.environ, "_KAMALPY_COMPLETE": "bash_complete", "COMP_WORDS": "kamalpy pl", "COMP_CWORD": "1"}
    proc = subprocess.run([KAMALPY], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert "plugins" in proc.stdout
