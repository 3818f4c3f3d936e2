"""``kamalpy config`` against the real ``kamal config`` (Kamal 2.11) on the corpus in tests/configs/.

Each case directory holds ``config/deploy.yml`` (and maybe a destination file, ``.kamal/secrets*``) and
``case.json``: ``destination``, ``env`` (a null value unsets the variable), ``args``, ``git`` (make the
directory a git repository with one commit) and ``kamal_bug`` (Kamal 2.11 fails there on purpose-fixed bugs).

Kamal's YAML uses Ruby symbols and objects; :func:`normalise_kamal` turns it into the plain form kamalpy
prints. Deliberate differences, applied to Kamal's side before comparing:
- ``ssh_options.key_data``: Kamal prints the private keys (secret values); kamalpy prints ``[REDACTED]``.
- Cases with ``kamal_bug``: Kamal 2.11 fails (see the reason in case.json), kamalpy gives the output.

Validation errors are compared too (ERRORS below): same message from both.

Kamal takes ~2 s of CPU per call, so its answers are cached by a hash of the inputs (files, arguments,
environment) in ``$KAMALPY_TEST_CACHE`` (default ``~/.cache/kamalpy/kamal-config``); a changed case runs
Kamal again, in parallel with the others. ``KAMALPY_TEST_CACHE=off`` always runs Kamal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from kamalpy.cli.main import main

pytestmark = pytest.mark.kamal

CONFIGS = Path(__file__).parent / "configs"
CASES = sorted(p.name for p in CONFIGS.iterdir() if (p / "case.json").is_file())
KAMAL = shutil.which("kamal")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
KAMAL_ERROR = re.compile(r"^\s*ERROR \(([\w:]+)\): (.*)$", re.MULTILINE)

if KAMAL is None:  # pragma: no cover
    pytest.skip("the reference kamal is not installed", allow_module_level=True)


# ----- Kamal's Ruby YAML -> plain data -----

class _RubyLoader(yaml.SafeLoader):
    pass


def _ruby_object(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    fields = loader.construct_mapping(node, deep=True)
    if suffix == "Net::SSH::Proxy::Jump":
        return fields["jump_proxies"]
    if suffix == "Net::SSH::Proxy::Command":
        return fields["command_line_template"]
    raise AssertionError(f"unexpected Ruby object {suffix}")


_RubyLoader.add_multi_constructor("!ruby/object:", _ruby_object)


def _plain(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r":[A-Za-z_][A-Za-z0-9_]*[?!]?", value):
        return value[1:]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def normalise_kamal(text: str) -> dict[str, Any]:
    """``:key:`` symbol keys and ``:fatal`` symbol values become plain strings, proxies their string form."""
    return _plain(yaml.load(text, Loader=_RubyLoader))


def deliberate_differences(data: dict[str, Any]) -> dict[str, Any]:
    ssh = data.get("ssh_options", {})
    if "key_data" in ssh:
        ssh["key_data"] = ["[REDACTED]"] * len(ssh["key_data"])
    return data


# ----- running both -----

def _prepare(name: str, root: Path) -> tuple[Path, dict[str, Any]]:
    work = root / name
    shutil.copytree(CONFIGS / name, work)
    meta = json.loads((work / "case.json").read_text())
    (work / "case.json").unlink()
    if meta.get("git"):
        # Fixed identity and dates: the same commit SHA on every run (so Kamal's answer can be cached).
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
               "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z"}
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
            subprocess.run(["git", *cmd], cwd=work, env=env, check=True, capture_output=True)
    return work, meta


def _args(meta: dict[str, Any]) -> list[str]:
    args = list(meta.get("args", []))
    if meta.get("destination"):
        args += ["-d", meta["destination"]]
    return args


def _env(meta: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VERSION", "KAMAL_DESTINATION")}
    for key, value in meta.get("env", {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


CACHE_SETTING = os.environ.get("KAMALPY_TEST_CACHE", "")
CACHE = None if CACHE_SETTING == "off" else Path(CACHE_SETTING or Path.home() / ".cache/kamalpy/kamal-config")


def _cache_key(work: Path, args: list[str], env: dict[str, str], meta: dict[str, Any]) -> str:
    digest = hashlib.sha256(b"kamal 2.11.0 v2\0")
    for path in sorted(p for p in work.rglob("*") if p.is_file() and ".git" not in p.relative_to(work).parts):
        digest.update(str(path.relative_to(work)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps([args, env.get("VERSION"), meta.get("env", {})], sort_keys=True).encode())
    digest.update(b"git" if (work / ".git").exists() else b"")
    return digest.hexdigest()


def run_kamal(work: Path, args: list[str], env: dict[str, str], meta: dict[str, Any]) -> tuple[int, str]:
    cached = CACHE / f"{_cache_key(work, args, env, meta)}.json" if CACHE else None
    if cached is not None and cached.is_file():
        code, out = json.loads(cached.read_text())
        return code, out
    proc = subprocess.run([KAMAL, "config", *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    # Kamal warns on stderr (e.g. inline key_data); its YAML and its errors are on stdout.
    result = (proc.returncode, ANSI.sub("", proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr))
    if cached is not None and (result[0] == 0 or KAMAL_ERROR.search(result[1])):  # a real answer, not a crash
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(result))
    return result


def run_kamalpy(work: Path, args: list[str], env: dict[str, str], monkeypatch, capsys) -> tuple[int, str, str]:
    saved = dict(os.environ)  # ERB's Dotenv.load adds variables, as it does to Kamal's process
    with monkeypatch.context() as patch:
        patch.chdir(work)
        for key in list(os.environ):
            if key not in env:
                patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        capsys.readouterr()
        code = main(["config", *args], standalone=False)
        captured = capsys.readouterr()
    os.environ.clear()
    os.environ.update(saved)
    return code, captured.out, captured.err


def kamal_message(output: str) -> str:
    match = KAMAL_ERROR.search(output)
    assert match, output
    return match.group(2).strip()


@pytest.fixture(scope="module")
def kamal_results(tmp_path_factory) -> dict[str, tuple[Path, dict, list[str], dict, int, str]]:
    """Every corpus case and error case run through Kamal, in parallel (each call takes ~1.5 s)."""
    root = tmp_path_factory.mktemp("kamal-configs")
    jobs = {}
    for name in CASES:
        work, meta = _prepare(name, root)
        jobs[name] = (work, meta, _args(meta), _env(meta))
    for name, (deploy, args, files) in ERRORS.items():
        work = root / f"error-{name}"
        (work / "config").mkdir(parents=True)
        (work / "config" / "deploy.yml").write_text(deploy)
        (work / ".kamal").mkdir()
        (work / ".kamal" / "secrets").write_text("PW=secret\n")
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        env = {k: v for k, v in os.environ.items() if k != "KAMAL_DESTINATION"}
        env["VERSION"] = "1"
        jobs[f"error-{name}"] = (work, {}, args, env)
    with ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 1))) as pool:
        futures = {name: pool.submit(run_kamal, job[0], job[2], job[3], job[1]) for name, job in jobs.items()}
        return {name: (*jobs[name], *future.result()) for name, future in futures.items()}


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 28


@pytest.mark.parametrize("name", CASES)
def test_config_matches_kamal(name, kamal_results, monkeypatch, capsys) -> None:
    work, meta, args, env, kamal_code, kamal_out = kamal_results[name]
    code, out, err = run_kamalpy(work, args, env, monkeypatch, capsys)
    assert code == 0, err
    ours = yaml.safe_load(out)
    if meta.get("kamal_bug"):
        assert kamal_code != 0, f"Kamal no longer fails ({meta['kamal_bug']}): {kamal_out}"
        return
    assert kamal_code == 0, kamal_out
    expected = deliberate_differences(normalise_kamal(kamal_out[kamal_out.index("---"):]))
    assert ours == expected
    assert list(ours) == list(expected)  # same keys in the same order


@pytest.mark.parametrize("name", CASES)
def test_json_matches_yaml(name, kamal_results, monkeypatch, capsys) -> None:
    work, meta, args, env, *_ = kamal_results[name]
    code, out, err = run_kamalpy(work, args, env, monkeypatch, capsys)
    code_json, out_json, err_json = run_kamalpy(work, [*args, "--json"], env, monkeypatch, capsys)
    assert code == code_json == 0, err + err_json
    as_json = json.loads(out_json)
    if meta.get("git"):  # the same commit, so the same version
        assert as_json["version"] == yaml.safe_load(out)["version"]
    assert as_json == json.loads(json.dumps(yaml.safe_load(out)))


S = """service: app
image: app
registry: {username: u, password: [PW]}
builder: {arch: amd64}
"""
LOCAL = """service: app
image: app
registry: {server: "localhost:5000"}
"""

# name: (deploy.yml, extra args, extra files)
ERRORS: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "no_service": ("image: app\nregistry: {username: u, password: [PW]}\nbuilder: {arch: amd64}\nservers: [1.1.1.1]\n",
                   [], {}),
    "no_image": ("service: app\nregistry: {username: u, password: [PW]}\nbuilder: {arch: amd64}\n"
                 "servers: [1.1.1.1]\n", [], {}),
    "no_registry": ("service: app\nimage: app\nbuilder: {arch: amd64}\nservers: [1.1.1.1]\n", [], {}),
    "registry_password": ("service: app\nimage: app\nregistry: {username: u}\nbuilder: {arch: amd64}\n"
                          "servers: [1.1.1.1]\n", [], {}),
    "registry_array": ("service: app\nimage: app\nregistry: {username: [A, B], password: x}\n"
                       "builder: {arch: amd64}\nservers: [1.1.1.1]\n", [], {}),
    "no_servers": (S, [], {}),
    "primary_undefined": (S + "servers: {job: [1.1.1.1]}\n", [], {}),
    "primary_empty": (S + "servers: {web: [], job: [1.1.1.1]}\n", [], {}),
    "role_empty": (S + "servers: {web: [1.1.1.1], job: []}\n", [], {}),
    "service_name": (S.replace("service: app", "service: my.app") + "servers: [1.1.1.1]\n", [], {}),
    "minimum_version": (S + "servers: [1.1.1.1]\nminimum_version: 2.12.0\n", [], {}),
    "retain": (S + "servers: [1.1.1.1]\nretain_containers: 0\n", [], {}),
    "require_destination": (S + "servers: [1.1.1.1]\nrequire_destination: true\n", [], {}),
    "restart_role": (S + "servers: {web: {hosts: [1.1.1.1], options: {restart: always}}}\n", [], {}),
    "restart_accessory": (S + "servers: [1.1.1.1]\naccessories: {db: {image: x, host: h, options: {restart: 'no'}}}\n",
                          [], {}),
    "label_role": (S + "servers: {web: {hosts: [1.1.1.1], labels: {role: x}}}\n", [], {}),
    "label_accessory": (S + "servers: [1.1.1.1]\naccessories: {db: {image: x, host: h, labels: {service: x}}}\n",
                        [], {}),
    "env_tags_in_role": (S + "servers: {web: {hosts: [1.1.1.1], env: {tags: {a: {B: c}}}}}\n", [], {}),
    "env_tags_in_accessory": (S + "servers: [1.1.1.1]\naccessories: {db: {image: x, host: h, env: {tags: {}}}}\n",
                              [], {}),
    "env_plain_with_secret": (S + "servers: [1.1.1.1]\nenv: {secret: [A], B: c}\n", [], {}),
    "env_tag_plain_with_secret": (S + "servers: [1.1.1.1]\nenv: {tags: {t: {secret: [X], C: d, E: f}}}\n", [], {}),
    "proxy_host_and_hosts": (S + "servers: [1.1.1.1]\nproxy: {host: a.com, hosts: [b.com]}\n", [], {}),
    "proxy_root_hosts_role_host": (S + "servers: {web: {hosts: [1.1.1.1], proxy: {host: b.com}}}\n"
                                   "proxy: {hosts: [a.com]}\n", [], {}),
    "ssl_without_host": (S + "servers: [1.1.1.1]\nproxy: {ssl: true}\n", [], {}),
    "ssl_role_without_host": (S + "servers: {web: {hosts: [1.1.1.1], proxy: {ssl: true}}}\nproxy: {host: a.com}\n",
                              [], {}),
    "ssl_two_servers": (S + "servers: [1.1.1.1, 1.1.1.2]\nproxy: {ssl: true, host: a.com}\n", [], {}),
    "ssl_shared_host": (S + "servers: {web: [1.1.1.1], api: {hosts: [1.1.1.2], proxy: {ssl: true, host: a.com}}}\n"
                        "proxy: {ssl: true, host: a.com}\n", [], {}),
    "ssl_missing_key": (S + "servers: [1.1.1.1]\nproxy: {host: a.com, ssl: {certificate_pem: C}}\n", [], {}),
    "ssl_missing_cert": (S + "servers: [1.1.1.1]\nproxy: {host: a.com, ssl: {private_key_pem: K}}\n", [], {}),
    "publish_false": (S + "servers: [1.1.1.1]\nproxy: {host: a.com, run: {publish: false, https_port: 1}}\n", [], {}),
    "accessory_proxy_ssl": (S + "servers: [1.1.1.1]\naccessories: {x: {image: y, host: h, proxy: {ssl: true}}}\n",
                            [], {}),
    "conflicting_runs": (S + "servers: {web: [1.1.1.1], api: {hosts: [1.1.1.1], proxy: {run: {http_port: 1}}}}\n"
                         "proxy: {host: a.com, run: {http_port: 2}}\n", [], {}),
    "accessory_no_placement": (S + "servers: [1.1.1.1]\naccessories: {db: {image: x}}\n", [], {}),
    "accessory_two_placements": (S + "servers: [1.1.1.1]\naccessories: {db: {image: x, host: a, tag: b}}\n", [], {}),
    "accessory_unknown_roles": (S + "servers: [1.1.1.1]\naccessories: {db: {image: x, roles: [web, a, b]}}\n",
                                [], {}),
    "accessory_unknown_role": (S + "servers: [1.1.1.1]\naccessories: {db: {image: x, role: a}}\n", [], {}),
    "hooks_output": (S + "servers: [1.1.1.1]\nhooks_output: loud\n", [], {}),
    "hooks_output_hook": (S + "servers: [1.1.1.1]\nhooks_output: {pre-deploy: verbose, post-deploy: x}\n", [], {}),
    "alias_name": (S + "servers: [1.1.1.1]\naliases: {Bad.Name: app details}\n", [], {}),
    "alias_builtin": (S + "servers: [1.1.1.1]\naliases: {rollback: app details}\n", [], {}),
    "traefik_hooks": (S + "servers: [1.1.1.1]\n", [], {".kamal/hooks/post-traefik-reboot": "#!/bin/sh\n"}),
    # Two arches: one is remote whatever the local Docker's arch is (Kamal asks Docker, kamalpy need not).
    "local_registry_tcp_builder": (LOCAL + "servers: [1.1.1.1]\n"
                                   "builder: {arch: [amd64, arm64], remote: tcp://b:2375}\n",
                                   [], {}),
    "builder_missing": (LOCAL + "servers: [1.1.1.1]\n", [], {}),
    "builder_cache_type": (LOCAL + "servers: [1.1.1.1]\nbuilder: {arch: amd64, cache: {type: s3}}\n", [], {}),
    "builder_local_false": (LOCAL + "servers: [1.1.1.1]\nbuilder: {arch: amd64, local: false}\n", [], {}),
    "builder_pack_arches": (LOCAL + "servers: [1.1.1.1]\nbuilder: {arch: [amd64, arm64], pack: {builder: b}}\n",
                            [], {}),
    "hosts_filter": (S + "servers: [1.1.1.1]\n", ["-h", "nope,1.1.1.9"], {}),
    "roles_filter": (S + "servers: [1.1.1.1]\n", ["-r", "w?b*x"], {}),
    "hosts_before_roles": (S + "servers: [1.1.1.1]\n", ["-r", "nope", "-h", "nope"], {}),
}


FILTER_ERRORS = {"hosts_filter", "roles_filter", "hosts_before_roles"}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_error_matches_kamal(name, kamal_results, monkeypatch, capsys) -> None:
    work, _meta, args, env, kamal_code, kamal_out = kamal_results[f"error-{name}"]
    assert kamal_code != 0, kamal_out
    if name in FILTER_ERRORS:
        # The filters belong to the command line; checked here through the model's helper.
        from kamalpy.config.loader import read_raw_config
        from kamalpy.config.model import Configuration
        from kamalpy.errors import KamalpyError

        monkeypatch.chdir(work)
        config = Configuration(read_raw_config("config/deploy.yml"), version="1")
        options = dict(zip(args[::2], args[1::2], strict=True))
        with pytest.raises(KamalpyError) as error:
            config.specifics(hosts=options.get("-h"), roles=options.get("-r"))
        assert str(error.value) == kamal_message(kamal_out)
        return
    code, out, err = run_kamalpy(work, args, env, monkeypatch, capsys)
    assert code == 1, out
    assert err.strip() == f"ERROR: {kamal_message(kamal_out)}"
