"""Shell completion (docs/completion.md): commands, doc sections, destinations, roles and accessories.

Values come from the configuration in the current directory (or ``-c``), read without evaluating ERB,
and a missing or broken configuration gives no values rather than an error.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from click.shell_completion import ShellComplete
from helpers import KAMALPY, write_project

from kamalpy.cli.base import Run
from kamalpy.cli.main import make_cli

DEPLOY_YML = """\
service: app
image: dhh/app
servers:
  web: [1.1.1.1]
  workers:
    hosts: [1.1.1.2]
    cmd: bin/jobs
env:
  clear:
    BUILT_BY: <%= `touch erb-ran` %>
registry: {username: dhh, password: secret}
builder: {arch: amd64}
accessories:
  mysql: {image: mysql:8, host: 1.1.1.3}
  redis: {image: redis:7, host: 1.1.1.3}
"""


def complete(*words: str) -> list[str]:
    """What ``kamalpy WORDS...<TAB>`` offers (the last word is the incomplete one)."""
    *args, incomplete = words
    completer = ShellComplete(make_cli(), {"obj": Run()}, "kamalpy", "_KAMALPY_COMPLETE")
    return [item.value for item in completer.get_completions(list(args), incomplete)]


@pytest.fixture
def project(tmp_path, monkeypatch):
    write_project(tmp_path, DEPLOY_YML, files={"config/deploy.staging.yml": "servers:\n  jobs: [1.1.1.9]\n",
                                                 "config/deploy.production.yml": "env: {}\n",
                                                 "other/site.yml": DEPLOY_YML.replace("mysql", "pg"),
                                                 "other/site.qa.yml": "{}\n"})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_commands_and_subcommands(project):
    assert complete("ap") == ["app"]
    assert "boot" in complete("accessory", "")
    assert complete("accessory", "re") == ["reboot", "remove", "restart"]


@pytest.mark.parametrize("words, expected", [
    (("docs", "pro"), ["proxy"]),
    (("docs", "acc"), ["accessories", "accessory"]),
    (("docs", "kamalpy-"), ["kamalpy-extensions"]),
])
def test_doc_sections(project, words, expected):
    assert complete(*words) == expected


def test_every_doc_section_is_offered(project, kamalpy):
    for name in complete("docs", ""):
        assert kamalpy("docs", name).code == 0, name


def test_destinations(project):
    assert complete("-d", "") == ["production", "staging"]
    assert complete("deploy", "-d", "st") == ["staging"]
    assert complete("-c", "other/site.yml", "config", "-d", "") == ["qa"]


def test_roles_with_the_destination_and_lists(project):
    assert complete("app", "boot", "-r", "") == ["web", "workers"]
    assert complete("-d", "staging", "app", "boot", "-r", "") == ["jobs", "web", "workers"]
    assert complete("app", "boot", "-r", "web,") == ["web,workers"]
    assert complete("-r", "w") == ["web", "workers"]
    assert not (project / "erb-ran").exists()  # ERB is dropped, never run


def test_accessories(project):
    assert complete("accessory", "boot", "") == ["all", "mysql", "redis"]
    assert complete("accessory", "logs", "r") == ["redis"]
    assert complete("-c", "other/site.yml", "accessory", "reboot", "") == ["all", "pg", "redis"]


@pytest.mark.parametrize("content", [None, "servers: [unclosed\n", "- a list\n", "\xff"])
def test_no_values_and_no_error_without_a_readable_configuration(tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "deploy.yml").write_text(content, encoding="latin-1")
    assert complete("-r", "") == []
    assert complete("accessory", "boot", "") == ["all"]
    assert complete("-d", "") == []


def test_the_shell_protocol(project):
    """What bash runs: ``_KAMALPY_COMPLETE=bash_complete`` gives ``TYPE,VALUE`` lines; ``bash_source``: the script."""
    env = {**os.environ, "_KAMALPY_COMPLETE": "bash_complete", "COMP_WORDS": "kamalpy accessory boot m",
           "COMP_CWORD": "3"}
    proc = subprocess.run([KAMALPY], env=env, cwd=project, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.split(), proc.stderr) == (0, ["plain,mysql"], "")
    env["_KAMALPY_COMPLETE"] = "bash_source"
    proc = subprocess.run([KAMALPY], env=env, cwd=project, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "_KAMALPY_COMPLETE=bash_complete" in proc.stdout
