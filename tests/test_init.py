"""`kamalpy init`: the files it writes, re-runs that keep existing files, and Kamal accepting the result."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

HOOKS = ["docker-setup", "post-app-boot", "post-deploy", "post-proxy-reboot", "pre-app-boot", "pre-build",
         "pre-connect", "pre-deploy", "pre-proxy-reboot"]
CREATED = [
    "Created configuration file in config/deploy.yml",
    "Created .kamal/secrets file",
    "Created sample hooks in .kamal/hooks",
]
EXISTS = "Config file already exists in config/deploy.yml (remove first to create a new one)"
HOOK_VARIABLES = ["KAMAL_RECORDED_AT", "KAMAL_PERFORMER", "KAMAL_VERSION", "KAMAL_SERVICE_VERSION", "KAMAL_SERVICE",
                  "KAMAL_DESTINATION", "KAMAL_HOSTS", "KAMAL_ROLES", "KAMAL_LOCK", "KAMAL_COMMAND",
                  "KAMAL_SUBCOMMAND"]

needs_kamal = pytest.mark.skipif(shutil.which("kamal") is None, reason="the reference kamal is not installed")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def expected_files() -> list[str]:
    return sorted(["config/deploy.yml", ".kamal/secrets"] + [f".kamal/hooks/{h}.sample" for h in HOOKS])


def test_init_creates_the_files(kamalpy, project) -> None:
    result = kamalpy("init")
    assert (result.code, result.out.splitlines(), result.err) == (0, CREATED, "")
    assert files_below(project) == expected_files()


def test_samples_are_executable_shell_scripts(kamalpy, project) -> None:
    kamalpy("init")
    for hook in HOOKS:
        sample = project / ".kamal" / "hooks" / f"{hook}.sample"
        mode = sample.stat().st_mode
        assert mode & stat.S_IXUSR and mode & stat.S_IXGRP and mode & stat.S_IXOTH, hook
        assert sample.read_text().startswith("#!/bin/sh\n"), hook


@pytest.mark.parametrize("hook", HOOKS)
def test_sample_prints_the_variables_it_gets(kamalpy, project, hook) -> None:
    kamalpy("init")
    env = {"PATH": os.environ["PATH"], "KAMAL_VERSION": "abc123", "KAMAL_HOSTS": "1.1.1.1,1.1.1.2",
           "KAMAL_ROLES": "", "KAMAL_RUNTIME": "42", "KAMAL_REGISTRY_PASSWORD": "hunter2"}
    proc = subprocess.run([str(project / ".kamal" / "hooks" / f"{hook}.sample")], env=env, capture_output=True,
                          text=True, timeout=30)
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{hook}: ")
    assert "  KAMAL_VERSION=abc123" in lines and "  KAMAL_HOSTS=1.1.1.1,1.1.1.2" in lines
    assert "  KAMAL_ROLES=" in lines  # set but empty is still shown
    assert not any(line.startswith("  KAMAL_DESTINATION") for line in lines)  # unset ones are not
    assert ("  KAMAL_RUNTIME=42" in lines) is (hook == "post-deploy")
    assert "hunter2" not in proc.stdout  # secrets in the environment are never printed


def test_samples_list_the_hook_variables() -> None:
    from importlib import resources

    hooks_dir = resources.files("kamalpy.builtin_plugins").joinpath("templates", "hooks")
    assert sorted(entry.name for entry in hooks_dir.iterdir()) == [f"{h}.sample" for h in HOOKS]
    for hook in HOOKS:
        text = hooks_dir.joinpath(f"{hook}.sample").read_text()
        assert all(name in text for name in HOOK_VARIABLES), hook


def test_rerun_keeps_existing_files(kamalpy, project) -> None:
    kamalpy("init")
    edited = {path: f"# edited {path}\n" for path in expected_files()}
    for path, text in edited.items():
        (project / path).write_text(text)
    result = kamalpy("init")
    assert (result.code, result.out.splitlines()) == (0, [EXISTS])
    assert {path: (project / path).read_text() for path in expected_files()} == edited


def test_rerun_fills_in_only_what_is_missing(kamalpy, project) -> None:
    kamalpy("init")
    (project / ".kamal" / "secrets").write_text("MINE=1\n")
    (project / "config" / "deploy.yml").unlink()
    shutil.rmtree(project / ".kamal" / "hooks")
    result = kamalpy("init")
    assert result.out.splitlines() == [CREATED[0], CREATED[2]]
    assert (project / ".kamal" / "secrets").read_text() == "MINE=1\n"
    assert files_below(project) == expected_files()


def test_existing_hooks_directory_gets_no_samples(kamalpy, project) -> None:
    (project / ".kamal" / "hooks").mkdir(parents=True)
    (project / ".kamal" / "hooks" / "pre-deploy").write_text("#!/bin/sh\n")
    result = kamalpy("init")
    assert result.out.splitlines() == CREATED[:2]
    assert os.listdir(project / ".kamal" / "hooks") == ["pre-deploy"]


def test_config_and_destination_options_do_not_move_the_files(kamalpy, project) -> None:
    result = kamalpy("init", "-c", "other/deploy.yml", "-d", "staging")
    assert result.code == 0
    assert files_below(project) == expected_files()


def test_template_mirrors_kamals_defaults(kamalpy, project) -> None:
    kamalpy("init")
    text = (project / "config" / "deploy.yml").read_text()
    assert "<%" not in text  # ERB is evaluated even inside YAML comments
    assert yaml.safe_load(text) == {
        "service": "my-app",
        "image": "my-user/my-app",
        "servers": {"web": ["192.168.0.1"]},
        "proxy": {"ssl": True, "host": "app.example.com"},
        "registry": {"server": "localhost:5555"},
        "builder": {"arch": "amd64"},
    }


def test_secrets_template_has_no_active_line(kamalpy, project) -> None:
    kamalpy("init")
    lines = (project / ".kamal" / "secrets").read_text().splitlines()
    assert all(not line.strip() or line.startswith("#") for line in lines)


def test_generated_config_is_accepted_by_kamalpy(kamalpy, project, monkeypatch) -> None:
    kamalpy("init")
    monkeypatch.setenv("VERSION", "init-test")
    result = kamalpy("config", "--json")
    assert (result.code, result.err) == (0, "")
    assert '"absolute_image": "localhost:5555/my-user/my-app:init-test"' in result.out


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "VERSION": "init-test"})


@pytest.mark.kamal
@needs_kamal
def test_kamal_accepts_the_generated_files_and_inits_the_same_way(kamalpy, project, tmp_path_factory) -> None:
    kamalpy("init")
    kamal_dir = tmp_path_factory.mktemp("kamal-init")
    with ThreadPoolExecutor(max_workers=2) as pool:
        config = pool.submit(_run, ["kamal", "config"], project)
        first = pool.submit(_run, ["kamal", "init"], kamal_dir)
        config, first = config.result(), first.result()
    second = _run(["kamal", "init"], kamal_dir)
    assert config.returncode == 0, config.stdout
    assert "localhost:5555/my-user/my-app:init-test" in config.stdout
    # Same messages, same file names as Kamal's own init.
    assert first.stdout.splitlines() == CREATED
    assert second.stdout.splitlines() == [EXISTS]
    assert files_below(kamal_dir) == files_below(project)
