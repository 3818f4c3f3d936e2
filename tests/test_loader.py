"""Reading the configuration (kamalpy.config.loader): Psych-compatible YAML, destinations, errors.

Tests marked ``kamal`` compare with the real Kamal 2.11: each case is a small project; Kamal's
``kamal config`` output (or error) is compared with what ``read_raw_config`` reads.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kamalpy.config.loader import (
    RubySymbol,
    deep_merge,
    destination_file,
    load_yaml,
    read_raw_config,
)
from kamalpy.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _restore_kamal_destination():
    saved = os.environ.get("KAMAL_DESTINATION")
    yield
    if saved is None:
        os.environ.pop("KAMAL_DESTINATION", None)
    else:
        os.environ["KAMAL_DESTINATION"] = saved


def load(text: str) -> Any:
    return load_yaml(textwrap.dedent(text), "config/deploy.yml")


def load_error(text: str) -> str:
    with pytest.raises(ConfigurationError) as info:
        load(text)
    return str(info.value)


# --- YAML typing like Psych (YAML.unsafe_load) ----------------------------------------------------------

# Each value was checked against `kamal config` (see test_scalar_typing_matches_kamal).
SCALARS = [
    (":quiet", RubySymbol(":quiet")),
    (':"a b"', RubySymbol(":a b")),
    ("1_000", 1000),
    ("1,000", 1000),
    ("yes", True),
    ("oN", True),
    ("Off", False),
    ("y", "y"),
    ("n", "n"),
    ("NULL", None),
    ("~", None),
    ("", None),
    ("2024-01-01", datetime.date(2024, 1, 1)),
    ("2024-02-30", "2024-02-30"),
    ("2024-01-01 10:00:00", datetime.datetime(2024, 1, 1, 10, 0, tzinfo=datetime.timezone.utc)),
    ("2024-01-01T10:00:00+01:00", datetime.datetime(2024, 1, 1, 9, 0, tzinfo=datetime.timezone.utc)),
    ("0o17", "0o17"),
    ("017", 15),
    ("08", "08"),
    ("0x1F", 31),
    ("0b101", 5),
    ("1.5", 1.5),
    ("1.", 1.0),
    (".5", 0.5),
    (".", "."),
    ("1.5e3", "1.5e3"),
    ("1.5e+3", 1500.0),
    ("-.inf", float("-inf")),
    ("1:20", 4800),  # Psych's base-60 weights (60 ** |i - 2|), not 80
    ("22:22", 80520),
    ("8080:80", "8080:80"),
    ("1.2.3", "1.2.3"),
    ("=", "="),
    ("<<", "<<"),
    ("!!str 12", "12"),
    ("!foo bar", "bar"),
    ("'12'", "12"),
    ('"yes"', "yes"),
    ("-a", "-a"),
    ("latest", "latest"),
]


@pytest.mark.parametrize(("source", "expected"), SCALARS)
def test_scalar_typing(source: str, expected: Any) -> None:
    value = load(f"v: {source}\n")["v"]
    assert value == expected and type(value) is type(expected)


def test_keys_are_typed_like_values() -> None:
    assert load("2: a\nyes: b\n'2': c\n") == {2: "a", True: "b", "2": "c"}


def test_anchors_aliases_and_merge_keys() -> None:
    data = load("""\
        x-base: &base
          image: app
          env: {A: "1"}
        servers:
          web: &web
            <<: *base
            hosts: [1.1.1.1]
          job:
            <<: *web
            image: other
        """)
    assert data["servers"]["web"] == {"image": "app", "env": {"A": "1"}, "hosts": ["1.1.1.1"]}
    assert data["servers"]["job"] == {"image": "other", "env": {"A": "1"}, "hosts": ["1.1.1.1"]}
    assert data["servers"]["job"]["env"] is data["x-base"]["env"]  # aliases share, like Ruby


def test_merge_keys_follow_psych_not_the_yaml_spec() -> None:
    # Psych: a merge overrides keys before it; in a list the earlier mapping wins; quoted "<<" merges too.
    data = load("""\
        x-a: &a {X: 1, Y: 1}
        x-b: &b {Y: 2, Z: 2}
        args:
          X: 5
          A: 0
          <<: [*a, *b]
          B: 0
          Z: 9
          "<<": *b
        """)
    assert list(data["args"].items()) == [("X", 1), ("A", 0), ("Y", 2), ("Z", 2), ("B", 0)]
    assert load("x: &x 1\na: {<<: *x, b: 2}\n")["a"] == {"<<": 1, "b": 2}  # not a mapping: a plain key
    assert load("a: {!!str <<: {b: 1}}\n")["a"] == {"<<": {"b": 1}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: {[1]: 2}\n",
         "(config/deploy.yml): found an unhashable key while constructing a mapping at line 1 column 4"),
        ("a: &a [*a]\n", "(config/deploy.yml): found unconstructable recursive node at line 1 column 4"),
        ("a: !!int x\n", "(config/deploy.yml): invalid value for tag:yaml.org,2002:int: 'x' "
                         "(invalid literal for int() with base 10: 'x') at line 1 column 4"),
        ("a: !!map [1]\n", "(config/deploy.yml): expected a mapping node, but found sequence at line 1 column 4"),
    ],
)
def test_construction_errors_are_one_line(text: str, message: str) -> None:
    assert load_error(text) == message


def test_unknown_tags_give_plain_data() -> None:
    assert load("a: !ruby/object:Foo {x: 1}\nb: !foo [yes]\nc: !bar '1'\n") == {"a": {"x": 1}, "b": [True], "c": "1"}


def test_only_the_first_document_is_read() -> None:
    assert load("a: 1\n---\nb: 2\n") == {"a": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("service: app\nimage: [a\nx: 1\n",
         "(config/deploy.yml): did not find expected ',' or ']' while parsing a flow sequence at line 2 column 8"),
        ("service: app\n  image: a\n",
         "(config/deploy.yml): mapping values are not allowed in this context at line 2 column 8"),
        ("service: app\nimage: *nope\n",
         "(config/deploy.yml): An alias referenced an unknown anchor: nope at line 2 column 8"),
        ('service: "app\n',
         "(config/deploy.yml): found unexpected end of stream while scanning a quoted scalar at line 1 column 10"),
        ("a: b\nc\n",
         "(config/deploy.yml): could not find expected ':' while scanning a simple key at line 2 column 1"),
    ],
)
def test_yaml_errors_use_psychs_wording_with_the_file(text: str, message: str) -> None:
    assert load_error(text) == message


# --- files, destinations, merging -----------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_destination_file_is_sub_ext() -> None:
    assert destination_file(Path("config/deploy.yml"), "staging") == Path("config/deploy.staging.yml")
    assert destination_file(Path("/a/b/other.yaml"), "prod") == Path("/a/b/other.prod.yml")
    assert destination_file(Path("deploy.prod.yml"), "eu") == Path("deploy.prod.eu.yml")
    assert destination_file(Path("config/deploy"), "x") == Path("config/deploy.x.yml")


def test_deep_merge() -> None:
    base = {"a": {"b": 1, "c": [1, 2], "d": {"e": 1}}, "f": 1, "g": {"h": 1}}
    over = {"a": {"c": [3], "d": {"x": 2}}, "f": {"new": 1}, "g": None, "z": 0}
    merged = deep_merge(base, over)
    assert merged == {"a": {"b": 1, "c": [3], "d": {"e": 1, "x": 2}}, "f": {"new": 1}, "g": None, "z": 0}
    assert base["a"]["d"] == {"e": 1}  # inputs untouched
    assert list(merged) == ["a", "f", "g", "z"]


def test_read_raw_config_merges_destination_and_sets_kamal_destination(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {
        "config/deploy.yml": """\
            service: app
            servers: [1.1.1.1]
            env:
              clear:
                DEST: <%= ENV["KAMAL_DESTINATION"] || "none" %>
                KEEP: "1"
            builder: {arch: amd64, args: {A: 1}}
            """,
        "config/deploy.staging.yml": """\
            servers: [2.2.2.2, 3.3.3.3]
            env:
              clear:
                STAGE: <%= `printf "$KAMAL_DESTINATION"` %>
            builder: {args: {B: 2}}
            """,
    })
    monkeypatch.setenv("KAMAL_DESTINATION", "stale")
    assert read_raw_config("config/deploy.yml") == {
        "service": "app", "servers": ["1.1.1.1"], "env": {"clear": {"DEST": "none", "KEEP": "1"}},
        "builder": {"arch": "amd64", "args": {"A": 1}},
    }
    assert "KAMAL_DESTINATION" not in os.environ
    raw = read_raw_config(Path("config/deploy.yml"), "staging")
    assert os.environ["KAMAL_DESTINATION"] == "staging"
    assert raw == {
        "service": "app", "servers": ["2.2.2.2", "3.3.3.3"],
        "env": {"clear": {"DEST": "staging", "KEEP": "1", "STAGE": "staging"}},
        "builder": {"arch": "amd64", "args": {"A": 1, "B": 2}},
    }


def test_missing_files(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=r"^Configuration file not found in /.*/config/deploy\.yml$"):
        read_raw_config("config/deploy.yml")
    write(tmp_path, {"config/deploy.yml": "service: app\n"})
    with pytest.raises(ConfigurationError) as info:
        read_raw_config("config/deploy.yml", "staging")
    assert str(info.value) == f"Configuration file not found in {tmp_path}/config/deploy.staging.yml"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "config/deploy.yml: the configuration file is empty"),
        ("# only a comment\n", "config/deploy.yml: the configuration file is empty"),
        ("<% if false %>\nservice: app\n<% end %>\n", "config/deploy.yml: the configuration file is empty"),
        ("- a\n", "config/deploy.yml: the configuration must be a mapping of keys to values, not a list"),
        ("foo\n", "config/deploy.yml: the configuration must be a mapping of keys to values, not the string 'foo'"),
    ],
)
def test_empty_or_non_mapping_files(tmp_path, monkeypatch, text: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {"config/deploy.yml": text})
    with pytest.raises(ConfigurationError) as info:
        read_raw_config("config/deploy.yml")
    assert str(info.value) == message


def test_erb_errors_name_the_destination_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {"config/deploy.yml": "service: app\n", "config/deploy.prod.yml": "a: 1\nb: <%= Foo %>\n"})
    with pytest.raises(ConfigurationError, match=r"^config/deploy\.prod\.yml:2: unsupported ERB: Foo$"):
        read_raw_config("config/deploy.yml", "prod")


def test_loader_module_imports_no_yaml() -> None:
    code = "import sys, kamalpy.config.loader, kamalpy.config.erb; print('yaml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- differential tests against the real Kamal ----------------------------------------------------------

BASE = """\
service: app
image: user/app
servers:
  - 1.1.1.1
registry:
  username: u
  password: p
"""


@dataclass
class Case:
    files: dict[str, str]
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    compare: tuple[str, ...] = ("builder",)  # keys of `kamal config` compared with the raw config


# Few cases, each covering much: Kamal takes 1.5 s or more per call.
CASES: dict[str, Case] = {
    "erb-and-typing": Case({"config/deploy.yml": BASE + textwrap.dedent("""\
        builder:
          arch: <%= ENV.fetch("ARCH", "amd64") %>
          args:
            DEST: "<%= ENV['KAMAL_DESTINATION'] %>"
            HOME: <%= ENV["KAMALPY_T_HOME"] %>
            MISSING: <%= ENV["KAMALPY_T_NOPE"] %>
            NUM: <%= ENV.fetch("KAMALPY_T_NOPE", 22) %>
            SH: "<%= `printf 'a b'` %>|<%= %x(echo x).strip %>|<%= `echo out; exit 3` %>"
            OPS: "<%= ENV['KAMALPY_T_HOME'] == '/h' && 'eq' %>|<%= !ENV['KAMALPY_T_NOPE'] %>|<%= ENV['X1'] || 'd' %>"
            MORE: "<%= ENV['KAMALPY_T_HOME'] ? 'y' : 'n' %>|<%= ENV.fetch('NOPE') { 'blk' } %>|<%= 1e20 %>|<%= -3 %>"
            EQ: "<%= true == 1 %>|<%= 1 == 1.0 %>|<%= "a\\tb" %>|<%= ENV['KAMALPY_T_HOME'].present? %>"
            <%- if ENV["KAMALPY_T_HOME"] == "/h" -%>
            IF: taken
            <%- elsif true -%>
            IF: elsif
            <%- end -%>
            <%- unless ENV["KAMALPY_T_HOME"] -%>
            UNLESS: taken
            <%- else -%>
            UNLESS: else
            <%- end -%>
            T1: |
              a
                <%- if true -%>
              b
                <%- end -%>
              c
            T2: |
              a
              <% if true %>
              b
              <% end %>
              c
            T3: "x <%- if true %>y<% end %>|<%= 1 -%>  |"
            T4: "a -%> b %> c <%# comment %>"
            T5: "<%%= not erb %> <%% x %%> %>"
            T6: "<% if(ENV['KAMALPY_T_HOME']) then %>t<% end %>"
        """) + "".join(f"    v{i}: {source}\n" for i, (source, _) in enumerate(SCALARS))},
        env={"KAMALPY_T_HOME": "/h", "KAMAL_DESTINATION": "stale"}),
    "anchors": Case({"config/deploy.yml": textwrap.dedent("""\
        x-host: &host 1.1.1.1
        x-opts: &opts
          cpus: 1
          memory: 1g
        service: app
        image: user/app
        servers:
          web: [*host]
          job:
            hosts: [*host, 2.2.2.2]
            cmd: bin/job
        registry: {username: u, password: p}
        builder:
          arch: amd64
          args:
            <<: *opts
            memory: 2g
        accessories:
          db:
            image: mysql
            host: *host
            options:
              <<: *opts
              cpus: 2
              list: [1, {a: b}]
        """)}, compare=("builder", "accessories", "hosts")),
    "destination": Case({
        "config/deploy.yml": BASE + textwrap.dedent("""\
            builder:
              arch: [amd64]
              args: {A: base, B: base, DEST: "<%= ENV['KAMAL_DESTINATION'] %>"}
              cache: {type: gha}
            accessories:
              db: {image: mysql, host: 2.2.2.2, options: {a: 1, list: [1, 2]}}
            """),
        "config/deploy.staging.yml": textwrap.dedent("""\
            servers: [2.2.2.2, 3.3.3.3]
            builder:
              arch: arm64
              args: {B: staging, C: "<%= `printf $KAMAL_DESTINATION` %>"}
            accessories:
              db: {options: {list: [3], b: 2}}
            """),
    }, args=["-d", "staging"], env={"KAMAL_DESTINATION": "stale"}, compare=("builder", "accessories", "hosts")),
    "custom-config-file": Case({
        "config/other.yml": BASE + "builder:\n  arch: amd64\n  args: {A: base}\n",
        "config/other.eu.yml": "builder:\n  args: {A: eu}\n",
    }, args=["-c", "config/other.yml", "-d", "eu"]),
    # Errors: Kamal's message, compared after putting the file name where Psych says <unknown>.
    "err-missing-destination": Case({"config/deploy.yml": BASE}, args=["-d", "nope"]),
    "err-fetch": Case({"config/deploy.yml": BASE + 'builder:\n  arch: <%= ENV.fetch("KAMALPY_T_MISSING") %>\n'}),
    "err-syntax": Case({"config/deploy.yml": BASE + "builder: {arch: amd64\nx: 1\n"}),
    "err-alias": Case({"config/deploy.yml": BASE + "builder: *nope\n"}),
    "err-enoent": Case({"config/deploy.yml": BASE + "builder:\n  arch: <%= `nonexistent-kamalpy-cmd` %>\n"}),
}

ANSI = re.compile(r"\x1b\[[0-9;]*m")
needs_kamal = pytest.mark.skipif(shutil.which("kamal") is None, reason="the real Kamal is not installed")


def _kamal_env(case: Case) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAMAL_DESTINATION"}
    env.update({"VERSION": "abc", **case.env})
    return env


def _run_kamal(root: Path, case: Case) -> tuple[int, str]:
    proc = subprocess.run(["kamal", "config", *case.args], cwd=root, env=_kamal_env(case),
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, ANSI.sub("", proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def kamal_results(tmp_path_factory) -> dict[str, tuple[Path, int, str]]:
    """All cases run through `kamal config` at once, in parallel (about 1.5 s each)."""
    if shutil.which("kamal") is None:
        pytest.skip("the real Kamal is not installed")
    roots = {}
    for name, case in CASES.items():
        root = tmp_path_factory.mktemp(name)
        write(root, {**case.files, ".kamal/secrets": ""})
        roots[name] = root
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {name: pool.submit(_run_kamal, roots[name], case) for name, case in CASES.items()}
        return {name: (roots[name], *future.result()) for name, future in futures.items()}


def _ours(root: Path, case: Case, monkeypatch) -> dict[str, Any]:
    monkeypatch.chdir(root)
    for key, value in _kamal_env(case).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KAMAL_DESTINATION", raising=False)
    config_file, destination = "config/deploy.yml", None
    args = list(case.args)
    while args:
        flag, value = args.pop(0), args.pop(0)
        if flag == "-c":
            config_file = value
        elif flag == "-d":
            destination = value
    return read_raw_config(config_file, destination)


def _strict(value: Any) -> Any:
    """Comparable form that tells 1, 1.0 and True apart."""
    if isinstance(value, dict):
        return {(type(k).__name__, k): _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return (type(value).__name__, value)


@needs_kamal
@pytest.mark.kamal
@pytest.mark.parametrize("name", [name for name in CASES if not name.startswith("err-")])
def test_raw_config_matches_kamal(name: str, kamal_results, monkeypatch) -> None:
    root, code, output = kamal_results[name]
    case = CASES[name]
    assert code == 0, output
    # Psych's output read back the Psych way (PyYAML would choke on e.g. an unquoted 2024-02-30).
    theirs = {str(key).lstrip(":"): value for key, value in load_yaml(output, "kamal-output").items()}
    raw = _ours(root, case, monkeypatch)
    for key in case.compare:
        if key == "hosts":
            servers = raw["servers"]
            hosts = servers if isinstance(servers, list) else [
                host for role in sorted(servers)
                for host in (servers[role] if isinstance(servers[role], list) else servers[role]["hosts"])]
            assert list(dict.fromkeys(hosts)) == theirs["hosts"]
        else:
            assert _strict(raw[key]) == _strict(theirs[key]), key


@needs_kamal
@pytest.mark.kamal
@pytest.mark.parametrize("name", [name for name in CASES if name.startswith("err-")])
def test_errors_match_kamal(name: str, kamal_results, monkeypatch) -> None:
    root, code, output = kamal_results[name]
    assert code == 1
    match = re.search(r"ERROR \([\w:]+\): (.*)", output)
    assert match, output
    theirs = match.group(1).strip().replace("(<unknown>)", "(config/deploy.yml)")
    with pytest.raises(ConfigurationError) as info:
        _ours(root, CASES[name], monkeypatch)
    ours = str(info.value)
    # We add where: "file:line: " before Ruby's messages from ERB, the position to an unknown anchor.
    assert theirs in ours, (ours, theirs)
