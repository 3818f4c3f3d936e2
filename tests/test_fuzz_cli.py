"""Fuzz: random command lines, configuration values and secrets files never crash kamalpy.

Every run is ``kamalpy`` in-process (``main``) on a throwaway project, always with ``--dry-run`` (nothing
connects anywhere). A run passes when it exits 0 without an ``ERROR`` line, or exits 1 with exactly one
``ERROR: <message>`` line, the last one; never a traceback, ``ERROR (SomeError)`` or a message marked
``internal error`` (an exception no check foresaw). The one test counts the runs and asserts at least
5,000 of them, all passing.

Generated text never contains ``<%``, ``$(`` or a backquote: ERB and secrets files run those as
commands on this machine, by design.

Building the plugin manager is most of an in-process run's time; runs share one (each still gets
its own ``Run``, configuration and command line), which is how an alias's inner run shares it too.

Deeply nested ERB is fuzzed on its own (``test_fuzz_deep_erb``): a known crash until ERB nesting is
bounded, so that test is an expected failure until then, and a failure again if it ever comes back.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kamalpy.plugins
from kamalpy.cli.main import INTERNAL_ERROR, main

RUNS: Counter[str] = Counter()
FUZZ_SETTINGS = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}

# ----- the project -----

BASE = {
    "service": "app",
    "image": "dhh/app",
    "servers": {"web": {"hosts": ["1.1.1.1", "1.1.1.2"], "labels": {"team": "a"}},
                "workers": {"hosts": ["1.1.1.3"], "cmd": "bin/jobs", "env": {"clear": {"Q": "1"}}}},
    "registry": {"server": "registry.example.com", "username": "u", "password": ["REGISTRY_PASSWORD"]},
    "builder": {"arch": "amd64"},
    "env": {"clear": {"RAILS_ENV": "production"}, "secret": ["DB_PASSWORD"]},
    "volumes": ["data:/data"],
    "labels": {"backup": "true"},
    "ssh": {"user": "deploy", "port": 22},
    "boot": {"limit": "50%", "wait": 2},
    "proxy": {"host": "app.example.com", "app_port": 3000, "run": {"http_port": 80, "bind_ips": ["0.0.0.0"]}},
    "accessories": {"db": {"image": "mysql:8.0", "host": "1.1.1.5", "port": "127.0.0.1:3306:3306",
                           "env": {"secret": ["DB_PASSWORD"]}, "files": ["my.cnf:/etc/mysql/my.cnf"],
                           "directories": ["data:/var/lib/mysql"], "options": {"memory": "1g"}}},
    "asset_path": "/rails/public/assets",
    "retain_containers": 3,
}
SECRETS = "REGISTRY_PASSWORD=secret\nDB_PASSWORD=pw\n"


def _paths(node, prefix=()):
    """Every key path of ``node`` (mappings and list items), for mutations."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


PATHS = list(_paths(BASE))


@contextlib.contextmanager
def project():
    """A throwaway project as the working directory (``VERSION`` set, no hooks), for all runs of a fuzzer."""
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="kamalpy-fuzz-") as work:
        root = Path(work)
        (root / "config").mkdir()
        (root / ".kamal").mkdir()
        (root / "my.cnf").write_text("[mysqld]\n")
        (root / "Dockerfile").write_text("FROM scratch\n")
        (root / "config" / "deploy.staging.yml").write_text("servers: [1.1.1.9]\n")
        os.chdir(root)
        for name in ("KAMAL_LOCK", "KAMALPY_DISABLE_PLUGINS", "KAMALPY_PLUGINS", "KAMAL_DESTINATION"):
            os.environ.pop(name, None)
        try:
            yield root
        finally:
            os.chdir(old_cwd)
            os.environ.clear()
            os.environ.update(old_env)


DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: the pure-Python one costs more than a run


def _dump(config: dict) -> str:
    try:
        return yaml.dump(config, Dumper=DUMPER, sort_keys=False, allow_unicode=True)
    except UnicodeEncodeError:  # libyaml cannot write a lone surrogate; the file then holds its raw byte
        return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def write(root: Path, config: dict | str, secrets: str | bytes = SECRETS) -> None:
    text = config if isinstance(config, str) else _dump(config)
    (root / "config" / "deploy.yml").write_text(text, encoding="utf-8", errors="surrogateescape")
    (root / ".kamal" / "secrets").write_bytes(secrets if isinstance(secrets, bytes) else
                                              secrets.encode("utf-8", "surrogateescape"))


def run(kind: str, args: list[str]) -> None:
    """One in-process run, judged: exit 0 quietly, or exit 1 with one ``ERROR:`` line last."""
    out, err = io.StringIO(), io.StringIO()
    os.environ["VERSION"] = "abc123"
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--dry-run", *args], standalone=False)
    os.environ.pop("KAMAL_DESTINATION", None)  # set by a run with -d
    RUNS[kind] += 1
    text = err.getvalue()
    lines = text.removesuffix("\n").split("\n")  # not splitlines(): a value may hold \x1e or \x85
    errors = [line for line in lines if line.startswith("ERROR")]
    where = f"kamalpy --dry-run {args!r} -> {code}: {text[-2000:]}"
    assert "Traceback" not in text and "ERROR (" not in text and INTERNAL_ERROR not in text, where
    if code == 0:
        assert not errors, where
    else:
        assert code == 1 and errors == [lines[-1]] and lines[-1].startswith("ERROR: "), where


# ----- values -----

WORDS = ["", " ", "-", "--", "-x", "a/b", "../../etc", "a;id", "$HOME", "${HOME}", "x" * 300, ":", "a:b", "a:b:c:d",
         "25%", "0", "-1", "1.5", "true", "nil", "~", "\n", "\x00", "\udcff", "é", "web", "db", "1.1.1.1", "[::1]",
         "/", ".", "my.cnf", "data:/data", "quiet", ":verbose", "%", "a b", "staging"]


def _no_commands(text: str) -> bool:
    """No ERB tag, command substitution or backquote (they run on this machine by design)."""
    return "<%" not in text and "$(" not in text and "`" not in text


texts = (st.sampled_from(WORDS) | st.text(max_size=12)).filter(_no_commands)
# Text is what breaks type assumptions most (`port: x`), so it is drawn as often as the other scalars together.
scalars = st.one_of(texts, texts, texts, st.none(), st.booleans(), st.integers(-(2**33), 2**33),
                    st.floats(allow_nan=False))
values = scalars | st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                                | st.dictionaries(texts, inner, max_size=3), max_leaves=6)


def mutate(base: dict, changes: list[tuple[tuple, object]]) -> dict:
    """``base`` with each path set to a value (or deleted when the value is the string ``<delete>``)."""
    config = copy.deepcopy(base)
    for path, value in changes:
        node = config
        for part in path[:-1]:
            node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
            if node is None:
                break
        if isinstance(node, (dict, list)) and _has(node, path[-1]):
            if value == "<delete>" and isinstance(node, dict):
                del node[path[-1]]
            else:
                node[path[-1]] = value
    return config


def _has(node, part) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and part < len(node)


# ----- the three fuzzers -----

GLOBAL_OPTIONS = ["-d", "--destination", "--version", "-h", "--hosts", "-r", "--roles", "-c", "--config-file",
                  "--lock-wait-timeout", "--lock-wait-interval", "--disable-plugin"]
FLAGS = ["-p", "--primary", "-q", "--quiet", "-H", "--skip-hooks", "--lock-wait", "--help", "-y", "--unknown"]
COMMANDS = [["config"], ["version"], ["docs"], ["app", "details"], ["app", "containers"], ["app", "version"],
            ["app", "boot"], ["app", "stop"], ["lock", "status"], ["lock", "release"], ["audit"],
            ["accessory", "details", "all"], ["accessory", "boot", "all"], ["proxy", "details"], ["proxy", "boot"],
            ["prune", "containers"], ["nosuch"], ["secrets", "print"], ["rollback"]]
# Not here: commands that can run a local program interactively (`logs -f`, `exec -i`: ssh -t).
argument = st.one_of(
    st.tuples(st.sampled_from(GLOBAL_OPTIONS), texts).map(list),
    st.sampled_from(FLAGS).map(lambda flag: [flag]),
    texts.map(lambda text: [text]),
)
command_lines = st.tuples(st.sampled_from(COMMANDS), st.lists(argument, max_size=4)).map(
    lambda parts: [*parts[0], *(word for arg in parts[1] for word in arg)])


@settings(max_examples=1200, **FUZZ_SETTINGS)
@given(command_lines)
def fuzz_command_lines(args):
    write(Path.cwd(), BASE)
    run("command lines", args)


CONFIG_COMMANDS = [["config"], ["app", "boot"], ["app", "details"], ["accessory", "boot", "all"], ["proxy", "boot"]]
changes = st.lists(st.tuples(st.sampled_from(PATHS), values | st.just("<delete>")), min_size=1, max_size=2)


@settings(max_examples=2800, **FUZZ_SETTINGS)
@given(changes, st.sampled_from(CONFIG_COMMANDS))
def fuzz_configuration_values(found_changes, command):
    write(Path.cwd(), mutate(BASE, found_changes))
    run("configuration values", command)


secrets_lines = st.lists(
    st.sampled_from(["REGISTRY_PASSWORD=x", "DB_PASSWORD=y", "export A=1", "B='q'", 'C="a\\nb"', "D=$A",
                     "E=${A}", "# c", "F: g", "=", "G", "H=\"", "I='", "J=a#b", "K=\\"]) | texts,
    max_size=6).map("\n".join)
secrets_files = secrets_lines | st.binary(max_size=40).filter(lambda data: b"$(" not in data and b"`" not in data)


@settings(max_examples=1200, **FUZZ_SETTINGS)
@given(secrets_files, st.sampled_from([["config"], ["secrets", "print"], ["app", "boot"]]))
def fuzz_secrets_files(secrets, command):
    write(Path.cwd(), BASE, secrets)
    run("secrets files", command)


NESTINGS = {"parentheses": ("(", "1", ")"), "arrays": ("[", "1", "]"), "interpolation": ('"#{', "1", '}"'),
            "ternaries": ("true ? ", "1", " : 2")}


@settings(max_examples=150, **FUZZ_SETTINGS)
@given(st.sampled_from(sorted(NESTINGS)), st.integers(1, 3000))
def fuzz_deep_erb(nesting, depth):
    opening, inner, closing = NESTINGS[nesting]
    expression = opening * depth + inner + closing * depth
    write(Path.cwd(), _dump(BASE) + f"x-deep: <%= {expression} %>\n")
    run("deep ERB", ["config"])


def _erb_nesting_bounded() -> bool:
    """Whether ERB nesting is bounded yet (the erb branch's change); until then deep ERB is a known crash."""
    from kamalpy.config.erb import render
    from kamalpy.errors import KamalpyError

    try:
        render("<%= " + "(" * 3000 + "1" + ")" * 3000 + " %>", "deep.yml")
    except KamalpyError:
        return True
    except RecursionError:
        return False
    return True


@pytest.fixture
def shared_plugins(monkeypatch):
    build = kamalpy.plugins.build_plugin_manager
    shared = functools.cache(lambda disabled, entry_points: build(disabled, entry_points))
    monkeypatch.setattr(kamalpy.plugins, "build_plugin_manager",
                        lambda disabled=(), load_entry_points=True: shared(frozenset(disabled), load_entry_points))


@pytest.mark.xfail(not _erb_nesting_bounded(), reason="deep ERB nesting is bounded by the erb branch", strict=True)
def test_fuzz_deep_erb(shared_plugins):
    with project():
        fuzz_deep_erb()


def test_fuzz_at_least_5000_runs_without_a_crash(shared_plugins):
    RUNS.clear()
    for fuzz in (fuzz_command_lines, fuzz_configuration_values, fuzz_secrets_files):
        with project():
            fuzz()
    assert sum(RUNS.values()) >= 5000, RUNS
    assert min(RUNS.values()) >= 1000, RUNS


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
