"""The hook bus: every hook through pluggy's own call, misspelled hooks refused, built-ins independent of each other,
every built-in either used by the flows (disabling it changes or refuses them) or declared unused."""

from __future__ import annotations

import ast
import re
import stat
import sys
import types
from pathlib import Path

import click
import pytest
from helpers import assert_no_connection, dry_run_environment, write_project

from kamalpy.hooks import Hooks
from kamalpy.plugin import ConfigKey, HookContext, hookimpl
from kamalpy.plugins import BUILTIN_PLUGINS, PluginManager, build_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
H1, H2 = "127.0.0.2", "127.0.0.3"


# ----- pluggy's own call: wrappers, tryfirst/trylast -----

ARGUMENT = {"kamalpy_register_commands": "cli", "kamalpy_kamal_hook": "hook", "kamalpy_config_keys": ""}


def _plugin(hook: str, body: str, namespace: dict, **options) -> types.SimpleNamespace:
    """A plugin with one ``hook`` implementation whose body is ``body`` (names from ``namespace``)."""
    exec(f"def {hook}({ARGUMENT[hook]}):\n" + "".join(f"    {line}\n" for line in body.splitlines()), namespace)
    return types.SimpleNamespace(**{hook: hookimpl(**options)(namespace.pop(hook))})


def _call(hooks: Hooks, hook: str) -> object:
    if hook == "kamalpy_register_commands":
        return hooks.register_commands(click.Group("kamalpy"))
    if hook == "kamalpy_kamal_hook":
        return hooks.kamal_hook(HookContext(name="pre-deploy", commander=None))
    return hooks.config_keys()


@pytest.mark.parametrize("hook", list(ARGUMENT))
def test_wrappers_and_tryfirst_trylast_apply(hook):
    """The three hooks once called through impl.function: pluggy's order and wrappers apply to them now."""
    pm = PluginManager()
    record: list[str] = []
    seen: list[tuple[str, object]] = []
    names = {"record": record, "seen": seen, "ConfigKey": ConfigKey}
    answer = "return [ConfigKey(LABEL, {'type': 'string'})]" if hook == "kamalpy_config_keys" else "return None"
    for label, options in (("first", {"tryfirst": True}), ("plain", {}), ("last", {"trylast": True})):
        body = f"record.append({label!r})\n" + answer.replace("LABEL", repr(label))
        pm.register(_plugin(hook, body, names, **options), name=label)
    wrapper = _plugin(hook, "seen.append(('before', None))\nresult = yield\nseen.append(('after', result))\n"
                      "return result", names, wrapper=True)
    pm.register(wrapper, name="wrapper")
    result = _call(Hooks(pm), hook)
    assert record == ["first", "plain", "last"]
    assert [step for step, _ in seen] == ["before", "after"]
    if hook == "kamalpy_config_keys":
        assert [k.name for answer in seen[1][1] for k in answer] == ["first", "plain", "last"]
        assert list(result) == ["last", "plain", "first"]  # collected oldest answer first


def test_a_later_plugin_command_wins_and_trylast_extends_a_group():
    pm = build_plugin_manager(load_entry_points=False)

    class Extension:
        @hookimpl(trylast=True)
        def kamalpy_register_commands(self, cli):
            cli.commands["app"].add_command(click.Command("hello", callback=lambda: None))

    pm.register(Extension(), name="extension")
    group = click.Group("kamalpy")
    Hooks(pm).register_commands(group)
    try:
        assert "hello" in group.commands["app"].commands
    finally:  # the app group is the built-in plugin's own object: leave it as it was for later tests
        group.commands["app"].commands.pop("hello", None)


# ----- misspelled hooks, plugin bugs, wrong answers -----

@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """Write ``mod.py`` with the given source and load it through KAMALPY_PLUGINS."""
    def write(source: str, name: str = "my_plugin") -> str:
        (tmp_path / "mods").mkdir(exist_ok=True)
        (tmp_path / "mods" / f"{name}.py").write_text("from kamalpy.plugin import hookimpl\n\n" + source)
        monkeypatch.syspath_prepend(str(tmp_path / "mods"))
        monkeypatch.delitem(sys.modules, name, raising=False)  # another test's module of the same name
        monkeypatch.setenv("KAMALPY_PLUGINS", name)
        return name

    return write


def test_misspelled_hook_is_an_error_naming_plugin_and_hook(kamalpy, plugin_module):
    plugin_module("@hookimpl\ndef kamalpy_boot_ap(boot):\n    return True\n")
    result = kamalpy("plugins")
    assert result.code == 1
    assert result.err.strip() == ("ERROR: Plugin 'my_plugin' implements unknown hook 'kamalpy_boot_ap' "
                                  "(misspelled? see docs/hooks.md)")


def test_wrong_argument_name_is_an_error_naming_the_plugin(kamalpy, plugin_module):
    plugin_module("@hookimpl\ndef kamalpy_boot_app(bot):\n    return True\n")
    result = kamalpy("plugins")
    assert result.code == 1 and result.err.startswith("ERROR: Plugin 'my_plugin' (KAMALPY_PLUGINS) is invalid:")
    assert len(result.err.strip().splitlines()) == 1


def test_wrong_return_type_of_a_registry_hook_names_the_plugin(kamalpy, plugin_module, tmp_path, monkeypatch):
    plugin_module("@hookimpl\ndef kamalpy_registry_strategies():\n    return ['docker']\n")
    write_project(tmp_path, _deploy_yml(22))
    monkeypatch.chdir(tmp_path)
    result = kamalpy("registry", "login", "--dry-run")
    assert result.code == 1
    assert result.err.strip() == ("ERROR: plugin 'my_plugin' returned list from kamalpy_registry_strategies; "
                                  "expected a mapping {name: class}")


def test_wrong_return_type_of_a_hook_with_arguments_names_the_plugins(kamalpy, plugin_module, tmp_path, monkeypatch):
    plugin_module("@hookimpl\ndef kamalpy_load_config(options):\n    return ['service: app']\n", name="store")
    write_project(tmp_path, _deploy_yml(22))
    monkeypatch.chdir(tmp_path)
    result = kamalpy("config")
    assert result.code == 1
    assert result.err.strip() == ("ERROR: kamalpy_load_config returned list (['service: app']); expected a mapping "
                                  "or None (implemented by plugin 'store', 'config_loading')")


# ----- two plugins claiming one strategy name -----

def test_the_later_plugin_wins_a_strategy_name_and_plugins_shows_it(kamalpy, tmp_path, monkeypatch):
    for name in ("aaa_registry", "zzz_registry"):
        (tmp_path / f"{name}.py").write_text(
            "from kamalpy.plugin import RegistryStrategy, hookimpl\n\n"
            "class Mine(RegistryStrategy):\n    name = 'docker'\n\n"
            "@hookimpl\ndef kamalpy_registry_strategies():\n    return {'docker': Mine}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("aaa_registry", "zzz_registry"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setenv("KAMALPY_PLUGINS", "aaa_registry,zzz_registry")
    listed = kamalpy("plugins")
    assert listed.code == 0, listed.err
    blocks = listed.out.split("\n\n")
    assert "    provides kamalpy_registry_strategies: docker" in listed.out
    winner = [b for b in listed.out.split("\n") if b.startswith("zzz_registry")]
    assert winner
    text = listed.out[listed.out.index("zzz_registry"):]
    assert "provides kamalpy_registry_strategies: docker" in text
    between = listed.out[listed.out.index("registry_docker"):listed.out.index("registry_local")]
    assert "provides kamalpy_registry_strategies" not in between  # the built-in lost its name
    assert blocks


# ----- no built-in plugin imports another -----

def _module_of(path: Path) -> str:
    relative = path.relative_to(ROOT / "builtin_plugins").with_suffix("")
    parts = [p for p in relative.parts if p != "__init__"]
    return ".".join(["kamalpy", "builtin_plugins", *parts])


def _owner(module: str) -> str | None:
    """The registered built-in plugin a module belongs to (its own module or package), if any."""
    prefix = "kamalpy.builtin_plugins."
    if not module.startswith(prefix):
        return None
    name = module[len(prefix):]
    owners = [p for p in BUILTIN_PLUGINS if name == p or name.startswith(p + ".")]
    return max(owners, key=len) if owners else None


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names]
    return found


def import_violations() -> list[str]:
    violations = []
    for path in sorted((ROOT / "builtin_plugins").rglob("*.py")):
        module = _module_of(path)
        mine = _owner(module)
        for imported in _imports(path, module):
            owner = _owner(imported)
            if owner is not None and owner != mine:
                violations.append(f"{path.relative_to(ROOT)} imports {imported} (plugin {owner})")
    for path in sorted((ROOT / "core").rglob("*.py")):
        for imported in _imports(path, "kamalpy." + ".".join(path.relative_to(ROOT / "core").with_suffix("").parts)):
            if _owner(imported) is not None:
                violations.append(f"{path.relative_to(ROOT)} (core) imports the built-in plugin {imported}")
    return violations


def test_no_builtin_plugin_imports_another():
    assert import_violations() == []


def test_the_import_check_can_fail(tmp_path, monkeypatch):
    bad = ROOT / "builtin_plugins" / "_import_check_probe.py"
    bad.write_text("from kamalpy.builtin_plugins import prune_commands\n")
    try:
        assert import_violations() == ["builtin_plugins/_import_check_probe.py imports "
                                       "kamalpy.builtin_plugins.prune_commands (plugin prune_commands)"]
    finally:
        bad.unlink()


# ----- --disable-plugin for every built-in -----

# Built-ins that no flow uses with the test project: disabling them must leave every flow as it was.
UNUSED_BY_FLOWS = {
    "core_commands": "the config and plugins commands",
    "docs_init": "the docs and init commands",
    "secrets_commands": "the secrets commands",
    "lock_commands": "the lock commands (the flows take the lock themselves)",
    "registry_commands": "the registry commands (the flows use the registry strategy plugins)",
    "proxy_caddy": "a proxy driver the project does not choose",
    "sandbox": "the sandbox commands",
    "upgrade_commands": "the upgrade command (Kamal 1 to 2)",
    "transport_paramiko": "the transport: a dry run connects to nothing (a real run stops with 'Unknown transport')",
    "live_view": "the output on a terminal: a dry run (and a pipe) always uses the line log",
    **{name: "a secret adapter the project does not use" for name in BUILTIN_PLUGINS
       if name.startswith("secret_adapters.")},
}

FLOWS = [("deploy", "-P"), ("deploy",), ("redeploy", "-P"), ("setup", "-P"), ("rollback", "123"),
         ("remove", "-y"), ("details",)]


def _deploy_yml(port: int, registry: str = "hub.docker.com") -> str:
    auth = "  username: dhh\n  password: secret\n" if not registry.startswith("localhost") else ""
    return (f"service: app\nimage: dhh/app\nservers:\n  web:\n    - {H1}\n  workers:\n    hosts:\n      - {H2}\n"
            f"    cmd: bin/jobs\nssh:\n  port: {port}\nregistry:\n  server: {registry}\n{auth}"
            "builder:\n  arch: amd64\n  context: .\n"
            f"accessories:\n  db:\n    image: mysql:8\n    host: {H2}\n")


@pytest.fixture
def flows(kamalpy, tmp_path, monkeypatch, listeners):
    hook = tmp_path / ".kamal" / "hooks" / "pre-deploy"
    write_project(tmp_path, _deploy_yml(listeners[0]), files={"Dockerfile": "FROM scratch\n",
                                                                 ".kamal/hooks/pre-deploy": "#!/bin/sh\ntrue\n"})
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    dry_run_environment(monkeypatch, tmp_path, version="123", name="Dee Ployer", email="d@example.com")

    def run(registry: str, *args: str, disable: str | None = None) -> tuple[int, list[str], str]:
        write_project(tmp_path, _deploy_yml(listeners[0], registry))
        result = kamalpy("--dry-run", *args, *(["--disable-plugin", disable] if disable else []))
        assert_no_connection(listeners[1])
        text = re.sub(r'echo "[A-Za-z0-9+/=\\n]*" > \.kamal/lock', 'echo "<B64>" > .kamal/lock', result.out)
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|\[[0-9a-f]{8}\]|\d+\.\d+ seconds|-[0-9a-f]{12}\b", "<X>",
                      text)
        return result.code, text.splitlines(), result.err

    return run


def _touches_a_server(lines: list[str]) -> bool:
    return any(line.split("\t", 1)[0] in (H1, H2) for line in lines)


def test_disabling_each_builtin_changes_or_refuses_a_flow(flows):
    registries = ("hub.docker.com", "localhost:5555")
    baselines = {(reg, flow): flows(reg, *flow) for reg in registries for flow in FLOWS}
    for (reg, flow), (code, _, err) in baselines.items():
        assert code == 0, (reg, flow, err)
    for plugin in BUILTIN_PLUGINS:
        changed = []
        for (reg, flow), (_, base_out, _) in baselines.items():
            if plugin in UNUSED_BY_FLOWS and flow not in (("deploy", "-P"), ("details",)):
                continue
            code, out, err = flows(reg, *flow, disable=plugin)
            if code == 0 and out == base_out:
                continue
            changed.append((reg, flow))
            if code != 0:  # a refusal: one ERROR line, before any server was touched
                assert err.strip().startswith("ERROR: ") and len(err.strip().splitlines()) == 1, (plugin, flow, err)
                assert not _touches_a_server(out), (plugin, flow, out)
        if plugin in UNUSED_BY_FLOWS:
            assert changed == [], f"{plugin} is declared unused by the flows, but disabling it changed {changed}"
        else:
            assert changed, f"--disable-plugin {plugin} changed no flow: declare it in UNUSED_BY_FLOWS, or use it"


def test_deploy_without_the_prune_plugin_no_longer_prunes(flows):
    _, before, _ = flows("hub.docker.com", "deploy", "-P")
    code, after, err = flows("hub.docker.com", "deploy", "-P", disable="prune_commands")
    assert code == 0, err
    assert any("docker image prune" in line for line in before)
    assert not any("prune" in line.lower() for line in after)


def test_deploy_without_the_proxy_commands_refuses_before_touching_a_server(flows):
    code, out, err = flows("hub.docker.com", "deploy", "-P", disable="proxy_commands")
    assert code == 1 and not _touches_a_server(out)
    assert err.strip() == ("ERROR: deploy needs the step 'proxy.boot', which no plugin offers "
                           "(kamalpy_flow_steps; is a built-in plugin disabled?)")


# ----- a plugin that raises in a flow hook -----

def test_a_plugin_raising_in_a_flow_hook_is_named_and_the_lock_released(flows, plugin_module):
    plugin_module("@hookimpl\ndef kamalpy_boot_app(boot):\n    raise RuntimeError('canary exploded')\n",
                  name="exploding")
    code, out, err = flows("hub.docker.com", "deploy", "-P")
    assert code == 1
    assert [line for line in err.splitlines() if "ERROR" in line] == [
        "ERROR: plugin 'exploding' failed in kamalpy_boot_app: RuntimeError: canary exploded. Some hosts may run "
        "the new version and others the old one: deploy again, or roll back with `kamalpy rollback VERSION`. "
        "Hosts switched to 123 before the failure: none."]
    assert out[-1] == f"{H1}\t/usr/bin/env rm .kamal/lock-app/details && rm -r .kamal/lock-app"  # released


def test_a_plugin_raising_in_a_flow_step_is_named_with_the_recovery(flows, plugin_module):
    plugin_module("@hookimpl\ndef kamalpy_flow_steps():\n    return {'proxy.boot': lambda step: 1 / 0}\n",
                  name="broken_proxy")
    code, out, err = flows("hub.docker.com", "deploy", "-P")
    assert code == 1
    assert err.splitlines()[-1] == ("ERROR: plugin 'broken_proxy' failed in the deploy step 'proxy.boot': "
                                    "ZeroDivisionError: division by zero. The running version is unchanged; "
                                    "run `kamalpy proxy boot`, then deploy again.")
    assert out[-1] == f"{H1}\t/usr/bin/env rm .kamal/lock-app/details && rm -r .kamal/lock-app"


def test_a_boot_plugin_with_the_wrong_answer_is_named(flows, plugin_module):
    plugin_module("@hookimpl\ndef kamalpy_boot_app(boot):\n    return 'booted'\n", name="chatty")
    code, _, err = flows("hub.docker.com", "deploy", "-P")
    assert code == 1
    assert err.splitlines()[-1] == ("ERROR: kamalpy_boot_app returned str ('booted'); expected True or None "
                           "(implemented by plugin 'chatty', 'boot_rolling'); "
                           "hosts switched to 123 before the failure: none")
