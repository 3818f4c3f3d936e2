"""contrib/kamalpy-secrets-age: the ``age`` adapter, installed as a third-party distribution, against real age.

The distribution is pip-installed once into a temporary ``--target`` directory (from a copy, so the build
leaves nothing in the source tree; never into the venv). In-process tests put that directory on
``sys.path`` for the test only, so kamalpy finds the adapter through its entry point as it would once
installed; the last tests run the ``kamalpy`` script with ``PYTHONPATH``. Keys and encrypted files are
made with ``age-keygen`` and ``age``. Secret values contain ``sv`` so a test can check that none reaches
an error.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import MINIMAL, pip_install_target, run_kamalpy, write_project

from kamalpy.cli.main import main

CONTRIB = Path(__file__).resolve().parents[1] / "contrib" / "kamalpy-secrets-age"
HAS_AGE = shutil.which("age") is not None and shutil.which("age-keygen") is not None
needs_age = pytest.mark.skipif(not HAS_AGE,
                               reason="age is not installed (Debian package age; run scripts/secrets-deps)")
ENV_NAMES = ("KAMALPY_AGE_KEY", "KAMALPY_AGE_IDENTITY")

DOTENV = """\
# deploy secrets
DB_URL=postgres://app:sv-db@db/app   # a comment
export TOKEN='sv tok $HOME "q" $(not run)'
DOUBLE="sv a\\tb \\"c\\" \\\\ \\$x"
HASH=sv#1
EMPTY= # nothing
PEM="-----BEGIN sv-----
line
-----END-----"
"""
PARSED = {
    "DB_URL": "postgres://app:sv-db@db/app",
    "TOKEN": "sv tok $HOME \"q\" $(not run)",
    "DOUBLE": "sv a\tb \"c\" \\ \\$x",
    "HASH": "sv#1",
    "EMPTY": "",
    "PEM": "-----BEGIN sv-----\nline\n-----END-----",
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The distribution installed into its own directory (built from a copy of the source)."""
    return pip_install_target(CONTRIB, tmp_path_factory.mktemp("age-dist"))


@pytest.fixture
def plugin(installed: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The installed plugin visible to in-process runs, a clean environment, and tmp_path as cwd and HOME."""
    monkeypatch.syspath_prepend(str(installed))  # entry points are read from sys.path on each run
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with two identities, ``key.txt`` (the recipient of every file) and ``other.txt``."""
    if not HAS_AGE:
        pytest.skip("age is not installed")
    root = tmp_path_factory.mktemp("age-keys")
    for name in ("key.txt", "other.txt"):
        subprocess.run(["age-keygen", "-o", str(root / name)], check=True, capture_output=True)
    return root


def encrypt(keys: Path, text: str, path: Path) -> Path:
    recipient = subprocess.run(["age-keygen", "-y", str(keys / "key.txt")], check=True, capture_output=True,
                               text=True).stdout.strip()
    subprocess.run(["age", "-r", recipient, "-o", str(path)], input=text, check=True, capture_output=True, text=True)
    return path


def run(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capfd.readouterr()
    code = main(list(args), standalone=False)
    out, err = capfd.readouterr()
    return code, out, err


def fetch(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run(capfd, "secrets", "fetch", "-a", "age", *args)


def assert_error(result: tuple[int, str, str], message: str) -> None:
    code, out, err = result
    assert (code, out, err) == (1, "", f"ERROR: {message}\n")
    assert "sv" not in err


# --- fetch and extract --------------------------------------------------------------------------------

@needs_age
def test_fetch_dotenv(plugin: Path, keys: Path, capfd: pytest.CaptureFixture[str]) -> None:
    encrypt(keys, DOTENV, plugin / "secrets.env.age")
    key = str(keys / "key.txt")
    code, out, err = fetch(capfd, "--from", "secrets.env.age", "--account", key)
    assert (code, err) == (0, "")
    assert json.loads(out) == {f"secrets.env.age/{k}": v for k, v in PARSED.items()}
    assert list(json.loads(out)) == [f"secrets.env.age/{k}" for k in PARSED]  # file order

    code, out, err = fetch(capfd, "--from", "secrets.env.age", "--account", key, "PEM", "DB_URL")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"secrets.env.age/PEM": PARSED["PEM"], "secrets.env.age/DB_URL": PARSED["DB_URL"]}
    for name in ("PEM", "DB_URL"):
        assert run(capfd, "secrets", "extract", name, out) == (0, PARSED[name] + "\n", "")


@needs_age
def test_fetch_json(plugin: Path, keys: Path, capfd: pytest.CaptureFixture[str]) -> None:
    encrypt(keys, '\n  {"API": "sv-api", "PORT": 5432, "DEBUG": false}\n', plugin / "s.json.age")
    code, out, err = fetch(capfd, "--from", "s.json.age", "--account", str(keys / "key.txt"))
    assert (code, err) == (0, "")
    assert json.loads(out) == {"s.json.age/API": "sv-api", "s.json.age/PORT": "5432", "s.json.age/DEBUG": "false"}


@needs_age
def test_identity_sources(plugin: Path, keys: Path, monkeypatch: pytest.MonkeyPatch,
                          capfd: pytest.CaptureFixture[str]) -> None:
    encrypt(keys, "A=sv-a\n", plugin / "s.age")
    expected = (0, '{"s.age/A":"sv-a"}\n', "")
    default = plugin / ".config" / "age" / "keys.txt"  # HOME is tmp_path
    default.parent.mkdir(parents=True)
    shutil.copy(keys / "key.txt", default)
    assert fetch(capfd, "--from", "s.age", "A") == expected

    monkeypatch.setenv("KAMALPY_AGE_IDENTITY", str(keys / "other.txt"))  # wins over the default file
    assert fetch(capfd, "--from", "s.age", "A")[2].startswith("ERROR: Could not decrypt")
    monkeypatch.setenv("KAMALPY_AGE_KEY", (keys / "key.txt").read_text())  # wins over KAMALPY_AGE_IDENTITY
    assert fetch(capfd, "--from", "s.age", "A") == expected
    monkeypatch.setenv("KAMALPY_AGE_KEY", (keys / "other.txt").read_text())
    assert fetch(capfd, "--from", "s.age", "--account", str(keys / "key.txt"), "A") == expected  # --account first
    assert_error(fetch(capfd, "--from", "s.age", "A"),
                 "Could not decrypt s.age with the identity in KAMALPY_AGE_KEY: no identity matched any of the "
                 "recipients")


# --- errors -------------------------------------------------------------------------------------------

@needs_age
def test_errors(plugin: Path, keys: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    key = str(keys / "key.txt")
    encrypt(keys, "A=sv-a\nB=sv-b\n", plugin / "s.age")
    (plugin / "plain.env").write_text("DB=sv-plain\n")
    (plugin / "bad-key.txt").write_text("sv-not-a-key\n")
    cases = [
        (["--from", "s.age", "--account", key, "A", "NOPE", "ALSO"], "Could not find NOPE, ALSO in s.age"),
        (["--account", key, "A"], "Give the age-encrypted file with --from"),
        (["--from", "gone.age", "--account", key], "age-encrypted file not found: gone.age"),
        (["--from", "s.age", "--account", "nope.txt"], "age identity file not found: nope.txt"),
        (["--from", "s.age"], "age identity file not found: ~/.config/age/keys.txt"),
        (["--from", "s.age", "--account", str(keys / "other.txt")],
         f"Could not decrypt s.age with the identity in {keys / 'other.txt'}: no identity matched any of the "
         "recipients"),
        # age quotes the start of a file it cannot read, which here is a secret: it must not show.
        (["--from", "plain.env", "--account", key], "plain.env is not an age-encrypted file"),
        (["--from", "s.age", "--account", "bad-key.txt"],
         "Could not read the age identity in bad-key.txt: error at line 1: unknown identity type"),
    ]
    for args, message in cases:
        assert_error(fetch(capfd, *args), message)
    monkeypatch.setenv("KAMALPY_AGE_KEY", "sv-junk")
    assert_error(fetch(capfd, "--from", "s.age", "A"),
                 "Could not read the age identity in KAMALPY_AGE_KEY: error at line 1: unknown identity type")


@needs_age
def test_malformed_plaintext(plugin: Path, keys: Path, capfd: pytest.CaptureFixture[str]) -> None:
    key = str(keys / "key.txt")
    cases = [
        ("A=sv-a\nsv-no-equals\n", "line 2 is not KEY=value"),
        ("A=sv-a\nB='sv-open\nstill open\n", "the quote opened on line 2 is not closed"),
        ('A="sv-a" sv-tail\n', "unexpected text after the quoted value of A"),
        ('["sv-list"]', None),
        ('{"A": {"sv": 1}}', "the value of A is not a string, number or boolean"),
        ('{"A": "sv-a",}', None),
    ]
    for index, (text, reason) in enumerate(cases):
        name = f"m{index}.age"
        encrypt(keys, text, plugin / name)
        code, out, err = fetch(capfd, "--from", name, "--account", key)
        assert (code, out) == (1, ""), text
        assert "sv" not in err and len(err.splitlines()) == 1
        if reason is not None:
            assert err == f"ERROR: Could not parse {name}: {reason}\n"
    assert err == "ERROR: Could not parse m5.age as JSON: Expecting property name enclosed in double quotes (line 1)\n"


def test_cli_missing(plugin: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    (plugin / "s.age").write_text("x")
    monkeypatch.setenv("PATH", str(plugin / "empty"))  # no age anywhere
    assert_error(fetch(capfd, "--from", "s.age"), "age CLI is not installed")


def test_dotenv_dialect(plugin: Path) -> None:
    from kamalpy_secrets_age.plaintext import parse

    assert parse(DOTENV, "f") == PARSED
    assert parse("\ufeffA = 1\r\nexport B=2\n  # x\n\nA=3\n", "f") == {"A": "3", "B": "2"}
    assert parse("K='a # b' # c\nL=\"\"\nM=a\\nb\n", "f") == {"K": "a # b", "L": "", "M": "a\\nb"}
    assert parse("", "f") == {}


# --- .kamal/secrets and the installed distribution ----------------------------------------------------

SECRETS_FILE = """\
AGE=$(kamalpy secrets fetch -a age --from config/secrets.env.age --account {key} DB_URL TOKEN PEM)
DATABASE_URL=$(kamalpy secrets extract DB_URL $AGE)
API_TOKEN=$(kamalpy secrets extract TOKEN $AGE)
TLS_KEY=$(kamalpy secrets extract PEM $AGE)
"""
PRINTED = [f"DATABASE_URL={PARSED['DB_URL']}", f"API_TOKEN={PARSED['TOKEN']}", *f"TLS_KEY={PARSED['PEM']}".split("\n")]


@needs_age
def test_secrets_file(plugin: Path, keys: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """``$(kamalpy secrets fetch -a age ...)`` and ``extract`` in .kamal/secrets, resolved by ``secrets print``."""
    write_project(plugin, MINIMAL, secrets=SECRETS_FILE.format(key=keys / "key.txt"))
    encrypt(keys, DOTENV, plugin / "config" / "secrets.env.age")
    code, out, err = run(capfd, "secrets", "print")
    assert (code, err) == (0, "")
    assert [line for line in out.splitlines() if not line.startswith("AGE=")] == PRINTED


@needs_age
def test_installed_distribution(installed: Path, keys: Path, tmp_path: Path) -> None:
    """The ``kamalpy`` script finds the plugin through its entry point (PYTHONPATH, not the venv)."""
    env = {"PYTHONPATH": str(installed), "HOME": str(tmp_path), "KAMALPY_AGE_IDENTITY": str(keys / "key.txt")}
    write_project(tmp_path, MINIMAL, secrets=SECRETS_FILE.format(key=keys / "key.txt"))
    encrypt(keys, DOTENV, tmp_path / "config" / "secrets.env.age")

    listed = json.loads(run_kamalpy("plugins", "--json", cwd=tmp_path, env=env).out)
    mine = [p for p in listed if p["name"] == "secrets_age"]
    assert mine and (mine[0]["distribution"], mine[0]["version"]) == ("kamalpy-secrets-age", "0.1.0")
    assert mine[0]["hooks"] == ["kamalpy_secret_adapters"]

    fetched = run_kamalpy("secrets", "fetch", "-a", "age", "--from", "config/secrets.env.age", "HASH", cwd=tmp_path,
                          env=env)
    assert (fetched.code, fetched.out, fetched.err) == (0, '{"config/secrets.env.age/HASH":"sv#1"}\n', "")

    printed = run_kamalpy("secrets", "print", cwd=tmp_path, env=env)
    assert (printed.code, printed.err) == (0, "")
    assert [line for line in printed.out.splitlines() if not line.startswith("AGE=")] == PRINTED

    # Not installed in the venv: without PYTHONPATH kamalpy does not know the adapter.
    without = run_kamalpy("secrets", "fetch", "-a", "age", "--from", "x", cwd=tmp_path,
                          env={k: v for k, v in env.items() if k != "PYTHONPATH"})
    assert without.err == "ERROR: Unknown secrets adapter: age\n"
