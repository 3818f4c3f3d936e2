"""kamalpy and the contrib plugins build as real distributions: no warning, every package file shipped.

The builds call setuptools' PEP 517 hooks in a subprocess with the installed setuptools (no build
isolation, so no download), on a copy of the tree so that build/ and egg-info never land in the checkout.
The dependency matrix (scripts/dep-matrix) runs this with the lowest setuptools the build allows too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = sorted(path.parent for path in (ROOT / "contrib").glob("*/pyproject.toml"))
# Source directory -> import package, as [tool.setuptools] package-dir maps them.
PACKAGE_DIRS = {"core": "kamalpy", "builtin_plugins": "kamalpy/builtin_plugins"}
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
BUILD = """\
import sys
from setuptools import build_meta
out, sdist = sys.argv[1], len(sys.argv) > 2  # read first: the hooks rewrite sys.argv
print("BUILT", build_meta.build_wheel(out))
if sdist:
    print("BUILT", build_meta.build_sdist(out))
"""


def _build(source: Path, out: Path, sdist: bool = True) -> tuple[list[Path], str]:
    """Build ``source`` into ``out``: the files made, and everything the build printed."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    # Every warning setuptools gives about the project (its warnings are UserWarnings), each time; not the
    # DeprecationWarnings that some setuptools releases raise about their own internals.
    command = [sys.executable, "-W", "always::UserWarning", "-c", BUILD, str(out), *(["sdist"] if sdist else [])]
    proc = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    built = [out / line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("BUILT ")]
    return built, output


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if "warn" in line.lower()]


def _shipped_files() -> set[str]:
    """Every file of the package directories, at its path inside the wheel."""
    files = set()
    for directory, package in PACKAGE_DIRS.items():
        for path in (ROOT / directory).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.add(f"{package}/{path.relative_to(ROOT / directory).as_posix()}")
    return files


@pytest.fixture(scope="module")
def kamalpy_dists(tmp_path_factory) -> tuple[Path, Path, str]:
    source = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for directory in PACKAGE_DIRS:
        shutil.copytree(ROOT / directory, source / directory, ignore=IGNORED)
    (wheel, sdist), output = _build(source, tmp_path_factory.mktemp("dist"))
    return wheel, sdist, output


def test_kamalpy_builds_without_warnings(kamalpy_dists):
    wheel, sdist, output = kamalpy_dists
    assert wheel.name == "kamalpy-0.1.0-py3-none-any.whl" and sdist.name == "kamalpy-0.1.0.tar.gz"
    assert _warnings(output) == []


def test_the_wheel_holds_every_package_file(kamalpy_dists):
    """Modules and package data alike: section texts, schema, init templates and hooks, sandbox files."""
    wheel, _, _ = kamalpy_dists
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _shipped_files()
    assert {"kamalpy/config/schema/kamal.json", "kamalpy/config/sections/proxy.md",
            "kamalpy/builtin_plugins/templates/deploy.yml", "kamalpy/builtin_plugins/templates/hooks/pre-deploy.sample",
            "kamalpy/builtin_plugins/sandbox/files/server-init.sh"} <= expected
    assert sorted(expected - names) == []


def test_the_wheel_metadata(kamalpy_dists):
    wheel, _, _ = kamalpy_dists
    archive = zipfile.ZipFile(wheel)
    metadata = archive.read("kamalpy-0.1.0.dist-info/METADATA").decode()
    headers = [line for line in metadata.split("\n\n", 1)[0].splitlines()]
    assert "License-Expression: MIT" in headers
    assert "License-File: LICENSE" in headers
    assert "Classifier: Programming Language :: Python :: 3.11" in headers
    assert not [line for line in headers if line.startswith("Classifier: License ::")]  # the expression says it
    assert [line for line in headers if line.startswith("Project-URL: ")]
    assert {"Requires-Dist: click>=8.1", "Requires-Dist: pluggy>=1.3"} <= set(headers)
    assert archive.read("kamalpy-0.1.0.dist-info/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    entry_points = archive.read("kamalpy-0.1.0.dist-info/entry_points.txt").decode()
    assert "kamalpy = kamalpy.cli.main:main" in entry_points


def test_the_sdist_builds_the_same_wheel(kamalpy_dists, tmp_path):
    """An sdist that lacks a file would build a wheel that lacks it."""
    wheel, sdist, _ = kamalpy_dists
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    unpacked = tmp_path / "kamalpy-0.1.0"
    assert (unpacked / "LICENSE").is_file() and (unpacked / "README.md").is_file()
    (rebuilt,), output = _build(unpacked, tmp_path / "dist", sdist=False)
    assert _warnings(output) == []
    assert sorted(zipfile.ZipFile(rebuilt).namelist()) == sorted(zipfile.ZipFile(wheel).namelist())


@pytest.mark.parametrize("plugin", CONTRIB, ids=lambda path: path.name)
def test_contrib_plugins_build_without_warnings_and_require_kamalpy(plugin, tmp_path):
    source = tmp_path / plugin.name
    shutil.copytree(plugin, source, ignore=IGNORED)
    (wheel,), output = _build(source, tmp_path / "dist", sdist=False)
    assert _warnings(output) == []
    archive = zipfile.ZipFile(wheel)
    metadata = next(archive.read(name).decode() for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
    requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    assert [req for req in requires if req.split(">")[0].split("=")[0].strip() == "kamalpy"] == ["kamalpy>=0.1"]
    assert "License-Expression: MIT" in metadata.splitlines()
