"""Hostile configuration files: YAML alias bombs and deeply nested ERB end quickly with one clear line.

The bounds are measured on a real ``kamalpy config`` process: its CPU time and peak memory come from
``getrusage(RUSAGE_CHILDREN)`` in a small Python wrapper whose only child it is (Kamal 2.11 on the same
alias bomb: 0.8 s, 138 MB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kamalpy.config.loader import MAX_YAML_VALUES, load_yaml, read_raw_config
from kamalpy.errors import ConfigurationError

KAMALPY = Path(sys.executable).with_name("kamalpy")
HEAD = 'service: app\nimage: app\nregistry: {server: "localhost:5000"}\nbuilder: {arch: amd64}\nservers: [1.1.1.1]\n'

# The wrapper runs one command and reports its exit code, output, CPU seconds and peak memory (KB).
MEASURE = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps([proc.returncode, proc.stdout, proc.stderr, usage.ru_utime + usage.ru_stime, usage.ru_maxrss]))
"""


def billion_laughs(width: int = 9, depth: int = 9) -> str:
    lines = ["x-bomb:", f"  a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth + 1)]
    return HEAD + "\n".join(lines) + "\n"


def measure(tmp_path: Path, deploy: str) -> tuple[int, str, str, float, int]:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "deploy.yml").write_text(deploy)
    env = {**os.environ, "VERSION": "1"}
    env.pop("KAMAL_DESTINATION", None)
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(KAMALPY), "config"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    code, out, err, cpu, max_kb = json.loads(proc.stdout)
    return code, out, err, cpu, max_kb


def test_alias_bomb_is_refused_quickly_in_little_memory(tmp_path) -> None:
    code, out, err, cpu, max_kb = measure(tmp_path, billion_laughs())
    assert code == 1 and out == ""
    assert err == (f"ERROR: (config/deploy.yml): aliases expand the YAML to more than {MAX_YAML_VALUES:,} values "
                   "(at line 12); kamalpy refuses it as an alias bomb\n")
    assert cpu < 1.0, f"{cpu:.2f} s of CPU"
    assert max_kb < 200 * 1024, f"{max_kb / 1024:.0f} MB"


def test_deep_erb_is_refused_quickly_in_little_memory(tmp_path) -> None:
    deploy = HEAD + "x-deep: <%= " + "(" * 1_000_000 + "1" + ")" * 1_000_000 + " %>\n"
    code, out, err, cpu, max_kb = measure(tmp_path, deploy)
    assert code == 1 and out == ""
    assert err == ("ERROR: config/deploy.yml: ERB nests too deeply (at most 32 levels of parentheses, blocks "
                   "and interpolations)\n")
    assert cpu < 1.0, f"{cpu:.2f} s of CPU"
    assert max_kb < 200 * 1024, f"{max_kb / 1024:.0f} MB"


def test_expansion_just_under_the_bound_loads() -> None:
    # 10 ** 4 leaves (and their lists) through aliases: a big but legitimate document.
    data = load_yaml(billion_laughs(width=10, depth=3), "x.yml")
    assert len(data["x-bomb"]["a3"]) == 10 and data["x-bomb"]["a3"][9][9][9][9] == "lol"
    with pytest.raises(ConfigurationError, match=r"^\(x\.yml\): aliases expand the YAML to more than 100,000"):
        load_yaml(billion_laughs(width=10, depth=5), "x.yml")


def test_anchors_and_merge_keys_of_real_configs_still_load(tmp_path, monkeypatch) -> None:
    # 60 roles that each merge a shared block, plus accessories doing the same.
    roles = "\n".join(f"  role{i}:\n    <<: *role\n    hosts: [10.0.{i}.1, 10.0.{i}.2]" for i in range(60))
    deploy = textwrap.dedent("""\
        service: app
        image: app
        registry: {server: "localhost:5000"}
        builder: {arch: amd64}
        x-role: &role
          cmd: bin/jobs
          options: {memory: 1g, cpus: 2}
          labels: {team: core, tier: back}
          env: {clear: {A: "1", B: "2", C: "3"}}
        x-acc: &acc
          image: redis:7
          host: 10.9.0.1
          options: {restart: always}
        servers:
          web: [10.0.0.1]
        """) + roles + "\naccessories:\n" + "\n".join(f"  cache{i}:\n    <<: *acc\n    port: {6000 + i}"
                                                      for i in range(20)) + "\n"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(deploy)
    monkeypatch.chdir(tmp_path)
    raw = read_raw_config("config/deploy.yml")
    assert raw["servers"]["role59"]["cmd"] == "bin/jobs" and raw["servers"]["role59"]["hosts"][1] == "10.0.59.2"
    assert raw["accessories"]["cache19"] == {"image": "redis:7", "host": "10.9.0.1", "options": {"restart": "always"},
                                             "port": 6019}


def test_recursive_alias_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError) as error:
        load_yaml(HEAD + "x-loop: &a\n  - 1\n  - *a\n", "config/deploy.yml")
    assert str(error.value) == "(config/deploy.yml): found unconstructable recursive node at line 6 column 9"
