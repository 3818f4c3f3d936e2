"""Config checks after the schema/model clean-up, and fuzz-found differences from Kamal 2.11 fixed since.

- Checks that moved to the schema alone still fire through ``Configuration`` (which runs the schema first).
- ``minimum_version`` follows ``Gem::Version``; role hosts keep only strings and hashes, as Kamal does;
  ``hooks_output`` tells a Ruby symbol (``:quiet``, a :class:`RubySymbol` from the loader) from the quoted
  string ``":quiet"``, and ignores values that are neither.

The expected outcomes are stored here (``None``: the configuration is valid), so the tests run without
Kamal; ``test_kamal_agrees`` (marked kamal) checks them against the real ``kamal config``, in parallel,
with Kamal's answers cached per document as in test_invalid_configs (``$KAMALPY_TEST_CACHE``, ``off``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers import ANSI, kamal_cache_dir, write_project

from kamalpy.config.gem_version import newer, segments
from kamalpy.config.loader import RubySymbol, load_yaml, read_raw_config
from kamalpy.config.model import Configuration
from kamalpy.errors import ConfigurationError

KAMAL = shutil.which("kamal")
CACHE = kamal_cache_dir("kamal-outcomes")

BASE = """\
service: app
image: a/b
registry: {username: u, password: p}
builder: {arch: amd64}
"""
ONE_SERVER = "servers: [1.1.1.1]\n"


def _builder(section: str) -> str:
    return BASE.replace("builder: {arch: amd64}", f"builder: {section}") + ONE_SERVER


# name -> (deploy.yml, Kamal's error message or None when Kamal accepts it)
CASES: dict[str, tuple[str, str | None]] = {
    "minimum_version_not_a_version": (BASE + ONE_SERVER + "minimum_version: a.com\n",
                                      "Malformed version number string a.com"),
    "minimum_version_leading_v": (BASE + ONE_SERVER + "minimum_version: v2\n", "Malformed version number string v2"),
    "minimum_version_empty_segment": (BASE + ONE_SERVER + 'minimum_version: "2..1"\n',
                                      "Malformed version number string 2..1"),
    "minimum_version_true": (BASE + ONE_SERVER + "minimum_version: true\n", "Malformed version number string true"),
    "minimum_version_space_inside": (BASE + ONE_SERVER + 'minimum_version: "2.11.0 1"\n',
                                     "Malformed version number string 2.11.0 1"),
    "minimum_version_prerelease_is_older": (BASE + ONE_SERVER + "minimum_version: 2.11.0.a\n", None),
    "minimum_version_dash_prerelease": (BASE + ONE_SERVER + "minimum_version: 2.11.0-rc1\n", None),
    "minimum_version_trailing_zeros": (BASE + ONE_SERVER + "minimum_version: 2.11.0.0.0\n", None),
    "minimum_version_padded": (BASE + ONE_SERVER + 'minimum_version: " 2.11 "\n', None),
    "minimum_version_false_is_unset": (BASE + ONE_SERVER + "minimum_version: false\n", None),
    "minimum_version_newer_prerelease": (BASE + ONE_SERVER + "minimum_version: 2.11.1.a\n",
                                         "Current version is 2.11.0, minimum required is 2.11.1.a"),
    "role_integer_hosts_x_role": (BASE + "servers: {web: {hosts: [1]}, x-foo: [2]}\n",
                                  "No servers specified for the web primary_role"),
    "role_integer_host_list": (BASE + "servers: [1]\n", "No servers specified for the web primary_role"),
    "role_integer_host_other_role": (BASE + "servers: {web: [1.1.1.1], workers: {hosts: [2]}}\n",
                                     "No servers specified for the workers role. "
                                     "You can ignore this with allow_empty_roles: true"),
    "role_symbol_host_dropped": (BASE + "servers:\n  web: [1.1.1.1]\n  jobs:\n    - :foo\n",
                                 "No servers specified for the jobs role. "
                                 "You can ignore this with allow_empty_roles: true"),
    "x_role_is_a_role": (BASE + "servers: {web: [1.1.1.1], x-foo: [2.2.2.2]}\n", None),
    "hooks_output_integer_ignored": (BASE + ONE_SERVER + "hooks_output: 1\n", None),
    "hooks_output_boolean_ignored": (BASE + ONE_SERVER + "hooks_output: true\n", None),
    "hooks_output_symbol": (BASE + ONE_SERVER + "hooks_output: :quiet\n", None),
    "hooks_output_quoted_colon": (BASE + ONE_SERVER + 'hooks_output: ":quiet"\n',
                                  "Invalid hooks_output ':quiet', must be one of: quiet, verbose"),
    "hooks_output_hook_quoted_colon": (BASE + ONE_SERVER + 'hooks_output:\n  pre-deploy: ":verbose"\n',
                                       "Invalid hooks_output ':verbose' for hook 'pre-deploy', "
                                       "must be one of: quiet, verbose"),
    "hooks_output_hook_symbol": (BASE + ONE_SERVER + "hooks_output:\n  pre-deploy: :verbose\n", None),
    "hooks_output_unknown_symbol": (BASE + ONE_SERVER + "hooks_output: :loud\n",
                                    "Invalid hooks_output 'loud', must be one of: quiet, verbose"),
    "proxy_publish_false_port_zero": (BASE + ONE_SERVER + "proxy: {host: a, run: {publish: false, http_port: 0}}\n",
                                      "proxy: Cannot set http_port, https_port or bind_ips when publish is false"),
    "proxy_publish_false_no_bind_ips": (BASE + ONE_SERVER + "proxy: {host: a, run: {publish: false, bind_ips: []}}\n",
                                        None),
}

# Kamal's outcome where kamalpy still differs: rules of schema/kamal.json (owned elsewhere) to change.
# Strict xfail, so each case reports when the schema is fixed.
SCHEMA_GAPS: dict[str, str] = {
    "restart_nil_accepted": "Kamal refuses only a truthy `restart` option (nil and false pass)",
    "restart_false_accepted": "Kamal refuses only a truthy `restart` option (nil and false pass)",
    "accessory_restart_nil_accepted": "Kamal refuses only a truthy `restart` option (nil and false pass)",
    "builder_cache_type_false_accepted": "Kamal checks the cache type only when it is truthy",
    "accessory_empty_registry_accepted": "Kamal builds an accessory registry only when it is present (not {})",
    "buildpacks_checked_before_local": "the one-arch buildpacks rule comes before local/remote in Kamal",
    "accessory_unknown_roles_before_aliases": "Kamal checks accessory roles while building accessories",
}
CASES.update({
    "alias_name_trailing_newline": (BASE + ONE_SERVER + 'aliases: {"abc\\n": app details}\n',
                                    "aliases/abc\n: Invalid alias name: 'abc\n'. Must only contain lowercase "
                                    "letters, alphanumeric, hyphens and underscores."),
    "restart_nil_accepted": (BASE + "servers: {web: {hosts: [1.1.1.1], options: {restart: }}}\n", None),
    "restart_false_accepted": (BASE + "servers: {web: {hosts: [1.1.1.1], options: {restart: false}}}\n", None),
    "accessory_restart_nil_accepted": (
        BASE + ONE_SERVER + "accessories: {db: {image: x, host: h, options: {restart: }}}\n", None),
    "builder_cache_type_false_accepted": (_builder("{arch: amd64, cache: {type: false}}"), None),
    "accessory_empty_registry_accepted": (
        BASE + ONE_SERVER + "accessories: {db: {image: x, host: h, registry: {}}}\n", None),
    "buildpacks_checked_before_local": (_builder("{arch: [amd64, arm64], pack: {builder: x}, local: false}"),
                                        "builder: buildpacks only support building for one arch"),
    "accessory_unknown_roles_before_aliases": (BASE + ONE_SERVER + "accessories: {db: {image: x, roles: [nope]}}\n"
                                               "aliases: {app: x}\n", "accessories/db: unknown roles nope"),
})


def _kamalpy_outcome(deploy_yml: str, root: Path) -> str | None:
    write_project(root, deploy_yml, secrets="")
    raw = read_raw_config(root / "config" / "deploy.yml")
    old = os.getcwd()
    os.chdir(root)  # the hooks directory is looked up relative to the project
    try:
        Configuration(raw, version="x")
    except ConfigurationError as error:
        return str(error)
    finally:
        os.chdir(old)
    return None


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=SCHEMA_GAPS[name])) if name in SCHEMA_GAPS else name
    for name in sorted(CASES)
])
def test_kamalpy_outcome(name: str, tmp_path: Path) -> None:
    deploy_yml, expected = CASES[name]
    assert _kamalpy_outcome(deploy_yml, tmp_path) == expected


def _kamal_outcome(deploy_yml: str) -> str | None:
    """Kamal's error message for one deploy.yml, None when it accepts it (cached)."""
    digest = hashlib.sha256(b"kamal 2.11.0 config VERSION=x\0" + deploy_yml.encode()).hexdigest()
    cached = CACHE / f"{digest}.json" if CACHE else None
    if cached and cached.exists():
        return json.loads(cached.read_text())
    outcome = _run_kamal(deploy_yml)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(outcome))
    return outcome


def _run_kamal(deploy_yml: str) -> str | None:
    with tempfile.TemporaryDirectory(prefix="kamal-") as work:
        write_project(Path(work), deploy_yml, secrets="")
        proc = subprocess.run([KAMAL, "config"], cwd=work, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "VERSION": "x"})
    output = ANSI.sub("", proc.stdout + proc.stderr)
    match = re.search(r"ERROR \([^)]*\): (.*)", output, re.DOTALL)  # a message may span lines
    if match:
        return match.group(1).strip()
    return None if proc.returncode == 0 else f"exit {proc.returncode}: {output.strip()[-200:]}"


@pytest.mark.kamal
@pytest.mark.skipif(KAMAL is None, reason="the reference kamal is not installed")
def test_kamal_agrees() -> None:
    """The stored outcomes are Kamal 2.11's."""
    names = sorted(CASES)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(_kamal_outcome, [CASES[name][0] for name in names]))
    wrong = {name: got for name, got in zip(names, results, strict=True) if got != CASES[name][1]}
    assert wrong == {}


# ----- checks that live in the schema only, still raised by Configuration -----

SCHEMA_ONLY = {
    "aliases: {Ab: app details}": "aliases/Ab: Invalid alias name: 'Ab'. Must only contain lowercase letters, "
                                  "alphanumeric, hyphens and underscores.",
    "aliases: {deploy: app details}": "aliases/deploy: Alias 'deploy' conflicts with a built-in command.",
    "builder: {arch: amd64, cache: {type: s3}}": "builder: Invalid cache type: s3",
    "builder: {arch: ' '}": "builder: Builder arch not set",
    "builder: {arch: amd64, local: false}": "builder: Cannot disable local builds, no remote is set",
    "env: {clear: {}, A: 1}": "env: unknown key: A",
    "env: {tags: {t: {tags: {}}}}": "env/tags/t: tags are only allowed in the root env",
    "servers: {web: {hosts: [1.1.1.1], env: {tags: {}}}}": "servers/web/env: tags are only allowed in the root env",
    "servers: {web: {hosts: [1.1.1.1], options: {restart: always}}}":
        "servers/web: Cannot set restart policy in docker options, unless-stopped is required",
    "servers: {web: {hosts: [1.1.1.1], labels: {role: x}}}":
        "servers/web/labels/role: invalid label. destination, role, and service are reserved labels",
    "servers: {web: {hosts: [{1.1.1.1: a, 1.1.1.2: b}]}}": "servers/web/hosts/0: multiple hosts found",
    "registry: {username: u}": "registry/password: is required",
    "registry: {username: [1], password: p}":
        "registry/username: should be a string or an array with one string (for secret lookup)",
    "accessories: {db: {image: x, host: h, hosts: [h]}}":
        "accessories/db: specify one of `host`, `hosts`, `role`, `roles`, `tag` or `tags`",
    "accessories: {db: {image: x, host: h, options: {restart: always}}}":
        "accessories/db: Cannot set restart policy in docker options, unless-stopped is required",
    "accessories: {db: {image: x, host: h, labels: {service: x}}}":
        "accessories/db/labels/service: invalid label. destination, role, and service are reserved labels",
    "accessories: {db: {image: x, host: h, registry: {server: r.io}}}": "accessories/db/registry/username: is required",
    "proxy: {ssl: true}": "proxy: Must set a host to enable automatic SSL",
    "proxy: {host: a, hosts: [b]}": "proxy: Specify one of 'host' or 'hosts', not both",
}


@pytest.mark.parametrize("extra", sorted(SCHEMA_ONLY))
def test_schema_only_checks_still_fire(extra: str) -> None:
    raw = yaml.safe_load(BASE + extra)
    raw.setdefault("servers", ["1.1.1.1"])
    with pytest.raises(ConfigurationError) as error:
        Configuration(raw, version="x")
    assert str(error.value) == SCHEMA_ONLY[extra]


def test_merged_role_proxy_is_still_checked() -> None:
    """Root ``host`` + role ``hosts``: only the merged proxy has both, which no one-section schema sees."""
    raw = yaml.safe_load(BASE + "proxy: {host: a}\nservers: {web: {hosts: [1.1.1.1], proxy: {hosts: [b]}}}")
    with pytest.raises(ConfigurationError, match=r"^proxy: Specify one of 'host' or 'hosts', not both$"):
        Configuration(raw, version="x")


def test_buildpacks_one_arch_is_still_checked() -> None:
    raw = yaml.safe_load(BASE.replace("builder: {arch: amd64}", "builder: {arch: [amd64, arm64], pack: {builder: x}}")
                         + ONE_SERVER)
    with pytest.raises(ConfigurationError, match=r"^builder: buildpacks only support building for one arch$"):
        Configuration(raw, version="x")


# ----- Gem::Version -----

@pytest.mark.parametrize(("version", "expected"), [
    ("2.11.0", [2, 11]), ("", []), (" 1.0 ", [1]), ("2.11.0-rc1", [2, 11, "pre", "rc", 1]),
    ("1.0.a.0", [1, "a"]), ("1.0b2", [1, "b", 2]), ("10", [10]),
])
def test_gem_version_segments(version: str, expected: list) -> None:
    assert segments(version) == expected


@pytest.mark.parametrize("version", ["a.com", "v1", "1..2", "1.", "-1", "1-", "1 2", "1.0\u00a0"])
def test_gem_version_malformed(version: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^Malformed version number string {re.escape(version)}$"):
        segments(version)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("2.12", "2.11.0", True), ("2.11.0", "2.11.0", False), ("2.11.0.0", "2.11", False),
    ("2.11.0.a", "2.11.0", False), ("2.11.1.a", "2.11.0", True), ("2.11.0", "2.11.0.a", True),
    ("1.0.b", "1.0.a", True), ("2.11.a.1", "2.11.0", False), ("10.a", "2.11.0", True),
])
def test_gem_version_newer(a: str, b: str, expected: bool) -> None:
    assert newer(a, b) is expected


# ----- RubySymbol -----

def test_loader_marks_symbols() -> None:
    data = load_yaml('a: :quiet\nb: ":quiet"\nc: :"two words"\nd: ":"\n', "x.yml")
    assert type(data["a"]) is RubySymbol and data["a"] == ":quiet" and data["a"].name == "quiet"
    assert type(data["b"]) is str and data["b"] == ":quiet"
    assert type(data["c"]) is RubySymbol and data["c"].name == "two words"
    assert type(data["d"]) is str


def test_symbols_dump_as_strings() -> None:
    data = load_yaml("a: :quiet\nb:\n  - :x\n", "x.yml")
    assert json.dumps(data) == '{"a": ":quiet", "b": [":x"]}'
    assert yaml.safe_dump(data) == "a: :quiet\nb:\n- :x\n"


def test_hooks_output_for() -> None:
    def config(setting: str) -> Configuration:
        raw = load_yaml(BASE + ONE_SERVER + f"hooks_output: {setting}\n", "deploy.yml")
        return Configuration(raw, version="x")

    assert config(":verbose").hooks_output_for("pre-deploy") == "verbose"
    assert config("quiet").hooks_output_for("pre-deploy") == "quiet"
    assert config("1").hooks_output_for("pre-deploy") is None
    assert config("\n  pre-deploy: :quiet").hooks_output_for("pre-deploy") == "quiet"
    assert config("\n  pre-deploy: :quiet").hooks_output_for("post-deploy") is None
