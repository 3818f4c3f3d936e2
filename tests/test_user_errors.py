"""Failures a user can cause: one ``ERROR: <message>`` line naming the key, file or option, before anything runs.

Kamal accepts several of these when the configuration loads and fails midway through the deploy (or
prints an internal exception); kamalpy refuses them when it loads the configuration, so ``deploy``
prints nothing else (no build, no lock, no host command).
"""

from __future__ import annotations

import pytest
from helpers import MINIMAL, write_project

ACCESSORY = "accessories:\n  db:\n    image: mysql:8.0\n    host: 1.1.1.1\n"


def _refused(result, *fragments: str) -> None:
    assert result.code == 1, result
    lines = result.err.removesuffix("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), result.err
    assert "internal error" not in result.err and "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VERSION", "abc123")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")

    def write(extra: str = "", secrets: str | bytes = "", files: dict[str, bytes] | None = None):
        write_project(tmp_path, MINIMAL + extra, secrets="")
        (tmp_path / ".kamal" / "secrets").write_bytes(secrets if isinstance(secrets, bytes) else secrets.encode())
        for name, data in (files or {}).items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
        return tmp_path

    return write


@pytest.mark.parametrize(("extra", "fragments"), [
    ("ssh:\n  port: x\n", ["ssh/port", "'x'"]),
    ("ssh:\n  port: 70000\n", ["ssh/port"]),
    ("boot:\n  limit: x\n", ["boot/limit", "'x'"]),
    ("boot:\n  limit: 0\n", ["boot/limit"]),
    ("servers:\n  web:\n    hosts: [1.1.1.1]\n    cmd: false\n", ["servers/web/cmd", "should be a string"]),
    (ACCESSORY + "    cmd: [a]\n", ["accessories/db/cmd", "should be a string"]),
    (ACCESSORY + "    files: [nocolon]\n", ["accessories/db/files/0", "local:remote"]),
    (ACCESSORY + "    files: [{local: a}]\n", ["accessories/db/files/0", "local:remote"]),
    (ACCESSORY + "    files: ['adir:/etc/x']\n", ["accessories/db/files/0", "adir is a directory"]),
])
def test_wrong_values_are_refused_when_the_configuration_loads(kamalpy, project, extra, fragments):
    root = project(extra.replace("servers:\n  - 1.1.1.1\n", ""))
    (root / "adir").mkdir()
    if extra.startswith("servers:"):
        (root / "config" / "deploy.yml").write_text(MINIMAL.replace("servers:\n  - 1.1.1.1\n", "") + extra)
    for command in (["config"], ["deploy", "--dry-run"], ["accessory", "boot", "all", "--dry-run"]):
        result = kamalpy(*command)
        _refused(result, *fragments)
        assert result.out == "", result.out  # nothing ran before the refusal


def test_template_with_invalid_utf8_names_the_file(kamalpy, project):
    project(ACCESSORY + "    files: ['my.cnf.erb:/etc/my.cnf']\n", files={"my.cnf.erb": b"a=\xff\n"})
    result = kamalpy("accessory", "boot", "db", "--dry-run")
    _refused(result, "accessories/db/files", "my.cnf.erb", "UTF-8")
    assert "docker run" not in result.out


def test_secrets_with_invalid_utf8_are_refused_before_anything_runs(kamalpy, project):
    project("env:\n  secret: [A]\n", secrets=b"A=\xff\n")
    for command in (["config"], ["deploy", "--dry-run"]):
        result = kamalpy(*command)
        _refused(result, ".kamal/secrets", "UTF-8")
        assert result.out == ""


@pytest.mark.parametrize("destination", ["a/b", "../../etc", "a" * 300, "a;b", "-x", "", "\udcff"])
def test_bad_destinations_name_the_option(kamalpy, project, destination):
    project()
    for command in (["config"], ["deploy", "--dry-run"]):
        _refused(kamalpy(*command, "-d", destination), "-d/--destination")


@pytest.mark.parametrize("version", ["\udcff\udcfe", "1.0 ; touch x", "$(id)", "-x", "a" * 129])
def test_bad_versions_name_the_option(kamalpy, project, version):
    project()
    for command in (["config"], ["deploy", "--dry-run"]):
        result = kamalpy(*command, "--version", version)
        _refused(result, "--version")
        assert result.out == ""


def test_bad_version_from_the_environment_names_it(kamalpy, project, monkeypatch):
    project()
    monkeypatch.setenv("VERSION", "a`id`")
    _refused(kamalpy("config"), "VERSION")


def test_valid_values_still_load(kamalpy, project):
    root = project()
    (root / "config" / "deploy.yml").write_text(
        MINIMAL.replace("servers:\n  - 1.1.1.1\n", "")
        + "ssh:\n  port: '2222'\nboot:\n  limit: 25%\n"
        + "servers:\n  web:\n    hosts: [1.1.1.1]\n    cmd: bin/jobs --queue=a && echo $HOME\n")
    assert kamalpy("config", "--version", "v1.2.3_rc-1").code == 0
    result = kamalpy("config", "-d", "eu-west_1.a")
    assert result.code == 1 and "deploy.eu-west_1.a.yml" in result.err  # a good name: its file is looked for


def test_an_unforeseen_exception_is_one_error_line(kamalpy, project, monkeypatch):
    """A kamalpy bug still ends as one ``ERROR:`` line, marked as internal, never ``ERROR (Type)``."""
    project()
    from kamalpy.config import model

    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(model.Configuration, "_ensure_safe_values", broken)
    result = kamalpy("config")
    assert result.code == 1
    assert result.err == "ERROR: boom (internal error: RuntimeError; -v shows the traceback)\n"


@pytest.mark.parametrize("command", [["rollback"], ["app", "remove_container"]])
@pytest.mark.parametrize("version", ["\udcff", "v1;id", "a'b"])
def test_version_arguments_are_checked_like_the_option(kamalpy, project, command, version):
    """Found by tests/test_fuzz_cli.py: a VERSION argument reached the lock and the shell unchecked."""
    project()
    result = kamalpy("--dry-run", *command, version)
    _refused(result, "VERSION: ")
    assert "Acquiring the deploy lock" not in result.err + result.out
