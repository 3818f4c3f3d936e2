"""``aliases:``: the Rails 8 template's aliases run (dry run: Kamal's lines, no connection), global options
given before an alias apply to it, and an alias that cannot run fails ``kamalpy config`` naming it."""

from __future__ import annotations

import sys

import pytest
from helpers import assert_no_connection, dry_run_environment, write_project

H1 = "127.0.0.2"
# Rails 8's generated config/deploy.yml (its aliases verbatim, its comments left out).
RAILS_8 = f"""\
service: my_app
image: your-user/my_app
servers:
  web:
    - {H1}
ssh:
  port: {{port}}
registry:
  username: your-user
  password: secret
builder:
  arch: amd64
aliases:
  console: app exec --interactive --reuse "bin/rails console"
  shell: app exec --interactive --reuse "bash"
  logs: app logs -f
  dbc: app exec --interactive --reuse "bin/rails dbconsole"
"""


class PipedStdin:
    def isatty(self) -> bool:
        return False


@pytest.fixture
def project(tmp_path, monkeypatch, listeners):
    write_project(tmp_path, RAILS_8.format(port=listeners[0]))
    dry_run_environment(monkeypatch, tmp_path, version="7", name="Dee", email="dee@example.com")
    monkeypatch.setattr(sys, "stdin", PipedStdin())
    return tmp_path


def local_lines(result) -> list[str]:
    return [line.split("\t", 1)[1] for line in result.out.splitlines() if line.startswith("local\t")]


def test_rails_8_config_loads(kamalpy, project):
    result = kamalpy("config")
    assert result.code == 0, result.err


@pytest.mark.parametrize("alias, command", [
    ("console", "bin/rails console"), ("shell", "bash"), ("dbc", "bin/rails dbconsole")])
def test_rails_8_exec_aliases(kamalpy, project, listeners, alias, command):
    result = kamalpy("--dry-run", alias)
    assert result.code == 0, result.err
    exec_line = f"ssh -t root@{H1} -p {listeners[0]} 'docker exec -i my_app-web-<version> {command}'"
    assert local_lines(result) == [exec_line]
    assert_no_connection(listeners[1])


def test_rails_8_logs_alias_follows(kamalpy, project, listeners):
    result = kamalpy("--dry-run", "logs")
    assert result.code == 0, result.err
    [line] = local_lines(result)
    assert line.startswith(f"ssh -t root@{H1} -p {listeners[0]} 'sh -c ")
    assert line.endswith("| head -1 | xargs docker logs --timestamps --tail 10 --follow 2>&1'")
    # Extra arguments go after the alias's words.
    result = kamalpy("--dry-run", "logs", "-g", "Completed")
    assert local_lines(result)[0].endswith('--follow 2>&1 | grep "Completed"\'')
    assert_no_connection(listeners[1])


def test_global_options_before_an_alias_apply_to_it(kamalpy, project, listeners):
    """``kamalpy --dry-run console`` must stay a dry run (and -r/-h select as for the command itself)."""
    result = kamalpy("--dry-run", "-r", "web", "console")
    assert result.code == 0, result.err
    assert len(local_lines(result)) == 1
    assert_no_connection(listeners[1])


@pytest.mark.parametrize("alias, message", [
    ("app logs -x", "aliases/bad: 'app logs -x': No such option '-x'."),
    ('app exec "unclosed', "aliases/bad: cannot parse 'app exec \"unclosed': No closing quotation"),
    ("nope", "aliases/bad: 'nope': Could not find command \"nope\"."),
    ("app nope", "aliases/bad: 'app nope': Could not find command \"nope\"."),
    ("-d world app logs -n x", "aliases/bad: '-d world app logs -n x': Invalid value for '-n' / '--lines': "
                               "'x' is not a valid integer."),
    ("app", "aliases/bad: 'app' names no command"),
])
def test_an_alias_that_cannot_run_fails_config(kamalpy, project, alias, message):
    config = project / "config/deploy.yml"
    config.write_text(config.read_text() + f"  bad: '{alias}'\n")
    result = kamalpy("config")
    assert (result.code, result.out, result.err) == (1, "", f"ERROR: {message}\n")


def test_alias_loops_are_named(kamalpy, project):
    config = project / "config/deploy.yml"
    config.write_text(config.read_text() + "  a: b --json\n  b: c -d x\n  c: a\n")
    expected = "ERROR: aliases/a: alias loop: a -> b -> c -> a\n"
    assert kamalpy("config").err == expected
    assert kamalpy("a").err == expected


def test_aliases_may_use_aliases_and_missing_arguments(kamalpy, project, listeners):
    config = project / "config/deploy.yml"
    config.write_text(config.read_text() + "  run: app exec --reuse\n  rails: run bin/rails\n")
    assert kamalpy("config").code == 0  # `app exec` gets its command at run time
    result = kamalpy("--dry-run", "rails", "db:migrate")
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == f"{H1}\tdocker exec my_app-web-<version> bin/rails db:migrate"
