"""The plugin manager: registration order, the override rule, disabling, listing, a real third-party plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from helpers import MINIMAL, run_kamalpy, write_project

from kamalpy.errors import PluginError
from kamalpy.hooks import Hooks
from kamalpy.plugin import ConfigKey, hookimpl
from kamalpy.plugins import BUILTIN_PLUGINS, build_plugin_manager

FIXTURE = Path(__file__).parent / "fixtures" / "kamalpy-example-policy"


def test_builtins_registered_in_order_and_named():
    pm = build_plugin_manager(load_entry_points=False)
    names = [info.name for info in pm.plugin_infos()]
    assert names == list(BUILTIN_PLUGINS)
    assert all(info.distribution == "kamalpy" for info in pm.plugin_infos())


class _Adapter:
    requires_account = False


class _Override:
    @hookimpl
    def kamalpy_secret_adapters(self):
        return {"test": _Adapter}


def test_later_plugin_wins_a_strategy_name():
    pm = build_plugin_manager(load_entry_points=False)
    hooks = Hooks(pm)
    builtin = hooks.secret_adapters().get("test")
    assert builtin is not None  # there is a built-in of that name to override
    pm.register(_Override(), name="override")
    assert hooks.secret_adapters()["test"] is _Adapter
    assert builtin is not _Adapter


def test_later_plugin_command_replaces_earlier(capsys):
    pm = build_plugin_manager(load_entry_points=False)
    group = click.Group("kamalpy")
    Hooks(pm).register_commands(group)
    builtin = group.commands["config"]
    replacement = click.Command("config", callback=lambda: click.echo("replaced"))

    class Replacement:
        @hookimpl
        def kamalpy_register_commands(self, cli):
            cli.add_command(replacement)

    pm.register(Replacement(), name="replacement")
    group = click.Group("kamalpy")
    Hooks(pm).register_commands(group)
    # Only the replacement is this object and prints "replaced"; the built-in `config` shows the config.
    assert group.commands["config"] is replacement and builtin is not replacement
    with click.Context(group) as ctx:
        ctx.invoke(group.commands["config"])
    assert capsys.readouterr().out == "replaced\n"


def test_duplicate_config_key_is_an_error():
    pm = build_plugin_manager(load_entry_points=False)

    class A:
        @hookimpl
        def kamalpy_config_keys(self):
            return [ConfigKey("shared", {"type": "string"})]

    class B(A):
        pass

    pm.register(A(), name="a")
    pm.register(B(), name="b")
    with pytest.raises(PluginError, match="Config key 'shared' is declared by both a and b"):
        Hooks(pm).config_keys()


def test_disable_builtin_by_option_and_env(kamalpy, monkeypatch, capsys):
    listed = json.loads(kamalpy("plugins", "--json").out)
    assert "secret_adapters.test" in [p["name"] for p in listed]
    listed = json.loads(kamalpy("plugins", "--json", "--disable-plugin", "secret_adapters.test").out)
    assert "secret_adapters.test" not in [p["name"] for p in listed]
    monkeypatch.setenv("KAMALPY_DISABLE_PLUGINS", "secret_adapters.test,secrets_commands")
    from kamalpy.cli.main import main

    # In-process, without the fixture (it clears the variable): both named plugins are gone, the rest stay.
    capsys.readouterr()
    assert main(["plugins", "--json"], standalone=False) == 0
    names = [p["name"] for p in json.loads(capsys.readouterr().out)]
    assert "secret_adapters.test" not in names and "secrets_commands" not in names
    assert "core_commands" in names and "secret_adapters.one_password" in names


def test_plugins_lists_hooks(kamalpy):
    result = kamalpy("plugins")
    assert result.code == 0
    assert "core_commands  (kamalpy " in result.out
    assert "    kamalpy_register_commands" in result.out


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """Build and install the example third-party distribution into its own directory."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(FIXTURE)],
        check=True, capture_output=True, text=True,
    )
    return target


def test_third_party_plugin_key_command_and_policy(installed_plugin, tmp_path):
    env = {"PYTHONPATH": str(installed_plugin)}
    listed = json.loads(run_kamalpy("plugins", "--json", cwd=tmp_path, env=env).out)
    mine = [p for p in listed if p["name"] == "example_policy"]
    assert mine and mine[0]["distribution"] == "kamalpy-example-policy" and mine[0]["version"] == "1.2.3"
    assert "kamalpy_before_command" in mine[0]["hooks"]

    write_project(tmp_path, MINIMAL + "example_policy:\n  greeting: bonjour\n  refuse: [config]\n"
                  "  message: Config is off limits\n")
    hello = run_kamalpy("example-hello", "--version", "v1", cwd=tmp_path, env=env)
    assert (hello.code, hello.out.strip()) == (0, "bonjour"), hello.err

    refused = run_kamalpy("config", "--version", "v1", cwd=tmp_path, env=env)
    assert refused.code == 1
    assert refused.err.strip() == "ERROR: Config is off limits: config"
    assert refused.out == ""

    # The plugin's schema applies to its key.
    write_project(tmp_path, MINIMAL + "example_policy:\n  refuse: config\n")
    bad = run_kamalpy("config", "--version", "v1", cwd=tmp_path, env=env)
    assert bad.code == 1 and bad.err.startswith("ERROR: example_policy/refuse") and len(bad.err.splitlines()) == 1

    # Its whole-config validation hook runs too.
    write_project(tmp_path, MINIMAL + "example_policy:\n  refuse: [version]\n")
    invalid = run_kamalpy("config", "--version", "v1", cwd=tmp_path, env=env)
    assert invalid.err.strip() == "ERROR: example_policy/refuse: 'version' cannot be refused"


def test_third_party_plugin_disabled(installed_plugin, tmp_path):
    env = {"PYTHONPATH": str(installed_plugin)}
    write_project(tmp_path, MINIMAL)
    for extra_env, args in (({}, ["--disable-plugin", "example_policy"]),
                            ({"KAMALPY_DISABLE_PLUGINS": "example_policy"}, [])):
        listed = json.loads(run_kamalpy("plugins", "--json", *args, cwd=tmp_path, env={**env, **extra_env}).out)
        assert "example_policy" not in [p["name"] for p in listed]
        gone = run_kamalpy("example-hello", *args, cwd=tmp_path, env={**env, **extra_env})
        assert gone.code == 1 and "Could not find command \"example-hello\"" in gone.err
