"""`kamalpy docs [SECTION]`: the section files, the command, plugin keys, and the examples of docs/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from kamalpy.builtin_plugins import docs_init

ROOT = Path(__file__).resolve().parent.parent
SECTIONS_DIR = ROOT / "core" / "config" / "sections"
# The sections `kamal docs` knows in 2.11 (`configuration` is what it prints without an argument).
KAMAL_SECTIONS = ["configuration", "accessory", "alias", "boot", "builder", "env", "logging", "proxy", "registry",
                  "role", "servers", "ssh", "sshkit"]
ALL_SECTIONS = KAMAL_SECTIONS + ["kamalpy-extensions"]

needs_kamal = pytest.mark.skipif(shutil.which("kamal") is None, reason="the reference kamal is not installed")


def section_file(name: str) -> str:
    return (SECTIONS_DIR / f"{name}.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ALL_SECTIONS)
def test_every_section_has_a_file_with_keys_example_and_errors(name: str) -> None:
    text = section_file(name)
    assert text.startswith("# ") and f"`kamalpy docs {name}`" in text.splitlines()[0]
    assert "```yaml" in text
    assert "## Common errors" in text or name == "kamalpy-extensions"


def test_the_package_lists_exactly_these_sections() -> None:
    assert docs_init.section_names() == sorted(ALL_SECTIONS)


def test_docs_configuration_is_a_link_to_the_sections() -> None:
    link = ROOT / "docs" / "configuration"
    assert link.is_symlink() and link.resolve() == SECTIONS_DIR.resolve()


@pytest.mark.parametrize("name", KAMAL_SECTIONS)
def test_docs_prints_the_section(kamalpy, name: str) -> None:
    result = kamalpy("docs", name)
    assert (result.code, result.err) == (0, "")
    assert result.out == section_file(name)


def test_docs_without_section_prints_configuration(kamalpy) -> None:
    result = kamalpy("docs")
    assert result.code == 0
    assert result.out == section_file("configuration")


@pytest.mark.parametrize(("alias", "name"), [("accessories", "accessory"), ("aliases", "alias")])
def test_root_key_names_find_their_section(kamalpy, alias: str, name: str) -> None:
    assert kamalpy("docs", alias).out == section_file(name)


def test_unknown_section_is_an_error(kamalpy) -> None:
    result = kamalpy("docs", "nope")
    assert (result.code, result.out) == (1, "")
    assert result.err == "ERROR: No documentation found for nope\n"


@pytest.mark.parametrize("name", ["../sections/env", "env.md", "/etc/passwd", "ENV"])
def test_only_listed_names_are_read(kamalpy, name: str) -> None:
    result = kamalpy("docs", name)
    assert result.code == 1 and f"No documentation found for {name}" in result.err


def test_extensions_page_lists_no_plugin_keys_by_default(kamalpy) -> None:
    result = kamalpy("docs", "kamalpy-extensions")
    assert result.code == 0
    assert result.out.startswith(section_file("kamalpy-extensions").rstrip("\n"))
    assert "## Keys declared by the loaded plugins\n\nNone.\n" in result.out


# --- plugin keys, with the example plugin of docs/plugins.md ------------------------------------------

def example_plugin_source() -> str:
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(# kamalpy_change_freeze/plugin.py\n.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/plugins.md should hold one complete example plugin"
    return blocks[0]


@pytest.fixture
def change_freeze(tmp_path, monkeypatch):
    """The example plugin of docs/plugins.md, loaded through KAMALPY_PLUGINS."""
    package = tmp_path / "plugins" / "kamalpy_change_freeze"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(example_plugin_source())
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    monkeypatch.setenv("KAMALPY_PLUGINS", "kamalpy_change_freeze.plugin")
    for name in [m for m in sys.modules if m.startswith("kamalpy_change_freeze")]:
        monkeypatch.delitem(sys.modules, name)
    import importlib

    return importlib.import_module("kamalpy_change_freeze.plugin")


def test_docs_shows_a_plugin_key(kamalpy, change_freeze) -> None:
    result = kamalpy("docs", "change_freeze")
    assert result.code == 0, result.err
    assert result.out.startswith("# change_freeze (a plugin's root key)\n")
    assert "Declare a change freeze" in result.out
    assert '"enabled": false' in result.out  # the default
    assert '"additionalProperties": false' in result.out  # the schema


def test_extensions_page_lists_plugin_keys(kamalpy, change_freeze) -> None:
    out = kamalpy("docs", "kamalpy-extensions").out
    assert "- `change_freeze`: Declare a change freeze" in out and "(see `kamalpy docs change_freeze`)" in out


def test_disabled_plugin_key_is_unknown(kamalpy, change_freeze) -> None:
    result = kamalpy("docs", "change_freeze", "--disable-plugin", "kamalpy_change_freeze.plugin")
    assert result.code == 1 and "No documentation found for change_freeze" in result.err


def test_example_plugin_registers_its_command(kamalpy, change_freeze) -> None:
    assert kamalpy("--help").out.count("freeze-status") == 1
    plugins = kamalpy("plugins").out
    assert "kamalpy_change_freeze.plugin" in plugins and "kamalpy_before_command" in plugins


FREEZE_PROJECT = """\
service: app
image: user/app
servers:
  - 1.1.1.1
registry:
  server: localhost:5555
builder:
  arch: amd64
"""


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("change_freeze:\n  enabled: true\n  reason: audit week\n", "Change freeze in effect: audit week\n"),
        ("", "No change freeze\n"),
    ],
)
def test_example_plugin_command_reads_its_key(kamalpy, change_freeze, tmp_path, monkeypatch, block, expected) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(FREEZE_PROJECT + block)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VERSION", "v1")
    result = kamalpy("freeze-status")
    assert (result.code, result.out, result.err) == (0, expected, "")


def test_example_plugin_key_is_validated(kamalpy, change_freeze, tmp_path, monkeypatch) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(FREEZE_PROJECT + "change_freeze:\n  enabled: maybe\n")
    monkeypatch.chdir(tmp_path)
    result = kamalpy("freeze-status")
    assert result.code == 1 and result.err.startswith("ERROR: change_freeze")


class _Config:
    """Stands in for a loaded Configuration (the deploy commands the policy guards do not exist yet)."""

    def __init__(self, raw: dict) -> None:
        self.raw = raw

    def extension(self, name: str):
        return self.raw.get(name, {"enabled": False, "reason": "", "allow": []})


@pytest.mark.parametrize(
    ("path", "raw", "refused"),
    [
        (("deploy",), {"change_freeze": {"enabled": True, "reason": "audit"}}, True),
        (("app", "boot"), {"change_freeze": {"enabled": True}}, True),
        (("rollback",), {"change_freeze": {"enabled": True, "allow": ["rollback"]}}, False),
        (("deploy",), {"change_freeze": {"enabled": False}}, False),
        (("deploy",), {}, False),
        (("config",), None, False),  # not guarded: the configuration is not even loaded
    ],
)
def test_example_policy(change_freeze, path, raw, refused) -> None:
    from kamalpy.plugin import CommandContext

    def load():
        if raw is None:
            raise AssertionError("the policy loaded the configuration for an unguarded command")
        return _Config(raw)

    context = CommandContext(path=path, options=None, _config_loader=load)
    answer = change_freeze.kamalpy_before_command(context)
    assert bool(answer) is refused
    if refused:
        assert answer.startswith(f"Change freeze in effect, '{' '.join(path)}' is not allowed")


# --- the section pages cover Kamal's keys --------------------------------------------------------

# Every key `kamal docs SECTION` (Kamal 2.11) shows, as `parent.key` below a sub-mapping.
KAMAL_KEYS = {
    "configuration": "service image labels volumes registry servers env asset_path hooks_path hooks_output "
                     "secrets_path error_pages_path require_destination primary_role allow_empty_roles "
                     "retain_containers minimum_version readiness_delay deploy_timeout drain_timeout run_directory "
                     "ssh builder accessories proxy sshkit boot logging aliases",
    "accessory": "service image registry host hosts role roles tag tags cmd port labels options env files "
                 "directories volumes network proxy",
    "boot": "limit wait parallel_roles",
    "builder": "arch remote local pack cache context dockerfile target args secrets ssh driver provenance sbom "
               "builder buildpacks type options image",
    "env": "clear secret tags",
    "logging": "driver options",
    "proxy": "host hosts app_port ssl ssl_redirect forward_headers response_timeout path_prefix path_prefixes "
             "strip_path_prefix healthcheck.interval healthcheck.path healthcheck.timeout buffering.requests "
             "buffering.responses buffering.max_request_body buffering.max_response_body buffering.memory "
             "logging.request_headers logging.response_headers run.http_port run.https_port run.metrics_port "
             "run.debug run.log_max_size run.publish run.bind_ips run.registry run.repository run.version run.options",
    "registry": "server username password",
    "role": "hosts cmd options logging proxy labels env asset_path",
    "ssh": "user port proxy proxy_command log_level keys_only keys key_data config",
    "sshkit": "max_concurrent_starts pool_idle_timeout dns_retries",
}


@pytest.mark.parametrize("name", sorted(KAMAL_KEYS))
def test_every_key_kamal_documents_is_documented(name: str) -> None:
    text = section_file(name)
    missing = [key for key in KAMAL_KEYS[name].split() if f"`{key}`" not in text]
    assert not missing, f"{name}.md does not document: {missing}"


# --- the YAML examples of the docs are valid for the real Kamal ------------------------------------

BASE_CONFIG = {"service": "app", "image": "user/app", "servers": {"web": ["1.1.1.1"]},
               "registry": {"server": "localhost:5555"}, "builder": {"arch": "amd64"}}


def overlay_examples() -> list[tuple[str, dict]]:
    """(where, YAML mapping) for each example that can be laid over a minimal configuration."""
    examples = []
    for name in KAMAL_SECTIONS:
        for index, block in enumerate(re.findall(r"```yaml\n(.*?)```", section_file(name), re.S)):
            examples.append((f"{name}.md example {index + 1}", yaml.safe_load(block)))
    configuration_md = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    anchors = re.findall(r"```yaml\n(x-backend: .*?)```", configuration_md, re.S)
    examples.append(("docs/configuration.md anchors example", yaml.safe_load(anchors[0])))
    return examples


# Root keys whose checks involve each other (hosts per role and SSL, accessory roles; local registry
# and remote builder): examples touching the same family are not combined.
KEY_FAMILIES = {"servers": "hosts", "proxy": "hosts", "accessories": "hosts", "registry": "build", "builder": "build"}


def _families(keys) -> set[str]:
    return {KEY_FAMILIES.get(key, key) for key in keys}


def example_groups() -> list[tuple[list[str], dict]]:
    """Examples packed into few configurations (examples of a group share no key family): each
    `kamal config` call costs over a second."""
    groups: list[tuple[list[str], dict]] = []
    for where, example in overlay_examples():
        for names, merged in groups:
            if not _families(example) & _families(merged):
                names.append(where)
                merged.update(example)
                break
        else:
            groups.append(([where], dict(example)))
    return [(names, {**BASE_CONFIG, **merged}) for names, merged in groups]


def kamal_config(workdir: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    for name, text in files.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(text)
    return subprocess.run(["kamal", "config", *args], cwd=workdir, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "VERSION": "docs-test"})


@pytest.mark.kamal
@needs_kamal
def test_doc_examples_are_accepted_by_kamal(tmp_path) -> None:
    configuration_md = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    erb = re.findall(r"```yaml\n(service: shop\n.*?<% end -%>\n)```", configuration_md, re.S)[0]
    base = re.findall(r"```yaml\n# config/deploy.yml\n(.*?)```", configuration_md, re.S)[0]
    staging = re.findall(r"```yaml\n# config/deploy.staging.yml\n(.*?)```", configuration_md, re.S)[0]
    tail = "registry:\n  server: localhost:5555\nbuilder:\n  arch: amd64\n"

    runs = [(f"group {i}: {', '.join(names)}", {"config/deploy.yml": yaml.safe_dump(config, sort_keys=False)}, ())
            for i, (names, config) in enumerate(example_groups())]
    runs.append(("docs/configuration.md ERB example", {"config/deploy.yml": erb + tail}, ()))
    runs.append(("docs/configuration.md destination example",
                 {"config/deploy.yml": base, "config/deploy.staging.yml": staging}, ("-d", "staging")))

    def check(item: tuple[int, tuple[str, dict, tuple]]) -> str | None:
        number, (where, files, args) = item
        proc = kamal_config(tmp_path / str(number), files, *args)
        return None if proc.returncode == 0 else f"{where}: {proc.stdout.strip()[-300:]}"

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        failures = [failure for failure in pool.map(check, enumerate(runs)) if failure]
    assert not failures, "\n".join(failures)


def test_relative_links_in_docs_resolve() -> None:
    broken = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.name} -> {target}")
    assert not broken, broken
