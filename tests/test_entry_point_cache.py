"""kamalpy.entry_points: the entry-point cache follows plugin distributions being installed and removed.

A real distribution is pip-installed into a ``--target`` directory on PYTHONPATH; kamalpy runs in a
subprocess with its own ``KAMALPY_CACHE_DIR``. The files are aged past the "racy" window so that the cache
is written, as it is for any install older than two seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import pip_install_target

# Runs `kamalpy plugins` in-process and says whether importlib.metadata was needed (no cache hit).
# Whether the run scanned the installed distributions (importlib.metadata itself is no sign: pluggy < 1.5
# imports it at start-up).
PROBE = ("import sys\nimport kamalpy.entry_points as ep\nscans = []\nreal = ep._scan\n"
         "ep._scan = lambda group: scans.append(group) or real(group)\n"
         "from kamalpy.cli.main import main\ncode = main(['plugins'], standalone=False)\n"
         "print('SCANNED' if scans else 'CACHED')\nsys.exit(code)\n")


def _distribution(root: Path, plugin: str) -> Path:
    """A plugin distribution whose entry point ``plugin`` registers module ``<plugin>_mod``."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(f"""\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "kamalpy-{plugin.replace('_', '-')}"
version = "1.2.3"

[project.entry-points.kamalpy]
{plugin} = "{plugin}_mod"

[tool.setuptools]
py-modules = ["{plugin}_mod"]
""")
    (root / f"{plugin}_mod.py").write_text("from kamalpy.plugin import hookimpl\n\n\n"
                                           "@hookimpl\ndef kamalpy_config_keys():\n    return []\n")
    return root


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """Each plugin's distribution pip-installed once into its own --target directory (tests copy them)."""
    root = tmp_path_factory.mktemp("entry-point-dists")
    return {plugin: pip_install_target(_distribution(root / plugin, plugin), root / f"{plugin}-target")
            for plugin in ("first_plugin", "second_plugin")}


def _site(installed: dict[str, Path], plugin: str, site: Path) -> Path:
    """``site`` with the installed files of ``plugin`` added (as pip adds them into site-packages)."""
    shutil.copytree(installed[plugin], site, dirs_exist_ok=True)
    return site


def _age(tree: Path, seconds: int = 60) -> None:
    """Date every file and directory below ``tree`` (and itself) ``seconds`` ago: an install made then."""
    past = time.time_ns() - seconds * 10**9
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, ns=(past, past))


def _plugins(cwd: Path, site: Path, cache: Path, **extra: str) -> tuple[str, str]:
    env = {**os.environ, "PYTHONPATH": str(site), "KAMALPY_CACHE_DIR": str(cache), "KAMALPY_PLUGINS": "",
           "KAMALPY_NO_CACHE": "", **extra}
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    listing, _, verdict = proc.stdout.rstrip("\n").rpartition("\n")
    return listing, verdict


def _first_plugin_installed(tmp_path: Path, installed: dict[str, Path], age: int = 60) -> tuple[Path, Path, Path]:
    """(cache directory, project directory, site with first_plugin installed ``age`` seconds ago)."""
    cache, cwd = tmp_path / "cache", tmp_path / "project"
    cwd.mkdir()
    _age(cwd)  # sys.path[0] of `python -c` (importlib.metadata looks for distributions there too)
    site = _site(installed, "first_plugin", tmp_path / "site")
    _age(site, age)
    return cache, cwd, site


def _cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("entry-points-*.json"))


def test_plugins_appear_and_disappear_with_their_distribution(tmp_path, installed):
    cache, cwd, site = _first_plugin_installed(tmp_path, installed)

    listing, verdict = _plugins(cwd, site, cache)
    assert "first_plugin  (kamalpy-first-plugin 1.2.3)" in listing
    assert verdict == "SCANNED"
    [cache_file] = _cache_files(cache)
    assert ["first_plugin", "first_plugin_mod", "kamalpy-first-plugin", "1.2.3"] in \
        json.loads(cache_file.read_text())["groups"]["kamalpy"]

    listing, verdict = _plugins(cwd, site, cache)  # nothing changed: no importlib.metadata at all
    assert "first_plugin  (kamalpy-first-plugin 1.2.3)" in listing
    assert verdict == "CACHED"

    # A second distribution installed into the same directory (as pip would into site-packages).
    _site(installed, "second_plugin", site)
    listing, verdict = _plugins(cwd, site, cache)
    assert "first_plugin  (" in listing and "second_plugin  (kamalpy-second-plugin 1.2.3)" in listing
    assert verdict == "SCANNED"

    # Removed as `pip uninstall` does: its dist-info directory and module go.
    for path in site.glob("kamalpy_first_plugin-*.dist-info"):
        shutil.rmtree(path)
    (site / "first_plugin_mod.py").unlink()
    _age(site)
    listing, verdict = _plugins(cwd, site, cache)
    assert "first_plugin  (" not in listing and "second_plugin  (" in listing
    assert verdict == "SCANNED"
    listing, verdict = _plugins(cwd, site, cache)
    assert "first_plugin  (" not in listing and "second_plugin  (" in listing
    assert verdict == "CACHED"


def test_entry_points_txt_changed_in_place_is_seen(tmp_path, installed):
    cache, cwd, site = _first_plugin_installed(tmp_path, installed)
    assert "first_plugin  (" in _plugins(cwd, site, cache)[0]
    assert _cache_files(cache)
    [entry_points_txt] = site.glob("*.dist-info/entry_points.txt")
    entry_points_txt.write_text(entry_points_txt.read_text().replace("first_plugin =", "renamed_plugin ="))
    listing, verdict = _plugins(cwd, site, cache)
    assert "renamed_plugin  (" in listing and "first_plugin  (" not in listing
    assert verdict == "SCANNED"


def test_fresh_installs_are_not_cached_and_the_cache_can_be_turned_off(tmp_path, installed):
    # Younger than the racy window: a change within the same clock tick could not be told apart.
    cache, cwd, site = _first_plugin_installed(tmp_path, installed, age=0)
    assert "first_plugin  (" in _plugins(cwd, site, cache)[0]
    assert _cache_files(cache) == []
    _age(site)
    listing, verdict = _plugins(cwd, site, cache, KAMALPY_NO_CACHE="1")
    assert "first_plugin  (" in listing and verdict == "SCANNED"
    assert _cache_files(cache) == []


def test_a_damaged_cache_file_is_a_miss(tmp_path, installed):
    cache, cwd, site = _first_plugin_installed(tmp_path, installed)
    _plugins(cwd, site, cache)
    [cache_file] = _cache_files(cache)
    for damage in ("{", '{"key": 1, "groups": []}', json.dumps({"key": json.loads(cache_file.read_text())["key"],
                                                                   "groups": {"kamalpy": [["x"]]}})):
        cache_file.write_text(damage)
        listing, verdict = _plugins(cwd, site, cache)
        assert "first_plugin  (" in listing and verdict == "SCANNED"
