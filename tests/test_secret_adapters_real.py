"""The ``keepassxc`` and ``pass`` adapters against the real tools (Debian: scripts/secrets-deps).

Each tool gets a throwaway store made with the tool itself: a ``.kdbx`` database built with
``keepassxc-cli``, and a password store encrypted to a fresh gpg key in a temporary GNUPGHOME. Tests
that need a tool skip, saying which package to install, when it is missing. Secret values contain
``sv`` so a test can check that no value reaches an error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamalpy.builtin_plugins.secret_adapters import keepassxc
from kamalpy.cli.main import main
from kamalpy.errors import SecretsError

HAS_KEEPASSXC = shutil.which("keepassxc-cli") is not None
HAS_PASS = shutil.which("pass") is not None and shutil.which("gpg") is not None
needs_keepassxc = pytest.mark.skipif(not HAS_KEEPASSXC, reason="keepassxc-cli is not installed "
                                     "(Debian package keepassxc; run scripts/secrets-deps)")
needs_pass = pytest.mark.skipif(not HAS_PASS, reason="pass or gpg is not installed "
                                "(Debian packages pass, gnupg; run scripts/secrets-deps)")

DB_PASSWORD = "db pass'word"
REGISTRY = "sv-reg 'quoted' \"double\" $(not run) \\n"
ENV_NAMES = ("KEEPASSXC_DATABASE", "KEEPASSXC_PASSWORD", "KEEPASSXC_KEY_FILE", "PASSWORD_STORE_DIR", "GNUPGHOME")


def run(argv: list[str], stdin: str = "", env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, input=stdin, env={**os.environ, **(env or {})}, check=True, text=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


@pytest.fixture(scope="module")
def kdbx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with ``Shop/registry`` (user alice), ``Shop/db`` and ``top`` (multi-line notes)."""
    if not HAS_KEEPASSXC:
        pytest.skip("keepassxc-cli is not installed")
    db = tmp_path_factory.mktemp("kdbx") / "test.kdbx"
    run(["keepassxc-cli", "db-create", "-p", "-t", "100", str(db)], f"{DB_PASSWORD}\n{DB_PASSWORD}\n")
    run(["keepassxc-cli", "mkdir", str(db), "Shop"], f"{DB_PASSWORD}\n")
    for path, password, extra in [("Shop/registry", REGISTRY, ["-u", "alice"]), ("Shop/db", "sv-db", []),
                                  ("top", "sv-top", ["--notes", "line one\nline two", "--url", "https://x.test"])]:
        run(["keepassxc-cli", "add", "-p", *extra, str(db), path], f"{DB_PASSWORD}\n{password}\n")
    return db


@pytest.fixture(scope="module")
def store() -> Iterator[dict[str, str]]:
    """``PASSWORD_STORE_DIR`` and ``GNUPGHOME`` of a store with ``Shop/db``, ``Shop/api/token``, ``top``."""
    if not HAS_PASS:
        pytest.skip("pass or gpg is not installed")
    # A short path: gpg-agent's socket lives in GNUPGHOME and socket paths are limited to ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix="kp-pass-"))
    env = {"GNUPGHOME": str(root / "g"), "PASSWORD_STORE_DIR": str(root / "s")}
    os.mkdir(env["GNUPGHOME"], 0o700)
    try:
        run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "kamalpy test <test@example.invalid>",
             "future-default", "default", "never"], env=env)
        run(["pass", "init", "test@example.invalid"], env=env)
        for name, text in [("Shop/db", "sv-db\nuser: bob\n"), ("Shop/api/token", "sv-token"),
                           ("top", "sv top $HOME 'q'\n")]:
            run(["pass", "insert", "-m", name], text, env=env)
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, **env}, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fetch(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capfd.readouterr()
    code = main(["secrets", "fetch", *args], standalone=False)
    out, err = capfd.readouterr()
    return code, out, err


def assert_error(result: tuple[int, str, str], message: str) -> None:
    code, out, err = result
    assert (code, out, err) == (1, "", f"ERROR: {message}\n")
    assert "sv" not in err


# --- keepassxc ----------------------------------------------------------------------------------------

@needs_keepassxc
def test_keepassxc_fetch(kdbx: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                         capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KEEPASSXC_PASSWORD", DB_PASSWORD)
    code, out, err = fetch(capfd, "-a", "keepassxc", "--from", str(kdbx), "Shop/registry", "Shop/db", "top",
                           "Shop/registry/UserName", "top/Notes", "top/url", "/top")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"Shop/registry": REGISTRY, "Shop/db": "sv-db", "top": "sv-top",
                               "Shop/registry/UserName": "alice", "top/Notes": "line one\nline two",
                               "top/url": "https://x.test", "/top": "sv-top"}


@needs_keepassxc
def test_keepassxc_database_from_environment(kdbx: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KEEPASSXC_PASSWORD", DB_PASSWORD)
    monkeypatch.setenv("KEEPASSXC_DATABASE", str(kdbx))
    assert fetch(capfd, "-a", "keepassxc", "Shop/db") == (0, '{"Shop/db":"sv-db"}\n', "")


@needs_keepassxc
def test_keepassxc_errors(kdbx: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                          capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(keepassxc, "has_terminal", lambda: False)
    assert_error(fetch(capfd, "-a", "keepassxc", "--from", str(kdbx), "top"),
                 "Set KEEPASSXC_PASSWORD to unlock the KeePassXC database (no terminal to ask on)")
    monkeypatch.setenv("KEEPASSXC_PASSWORD", "wrong")
    assert_error(fetch(capfd, "-a", "keepassxc", "--from", str(kdbx), "top"),
                 f"Wrong password or key file for the KeePassXC database {kdbx}")
    monkeypatch.setenv("KEEPASSXC_PASSWORD", DB_PASSWORD)
    assert_error(fetch(capfd, "-a", "keepassxc", "--from", str(kdbx), "Shop/nope", "top", "Shop", "top/nope"),
                 "Could not find Shop/nope, Shop, top/nope in the KeePassXC database")
    assert_error(fetch(capfd, "-a", "keepassxc", "top"),
                 "Give the path of the KeePassXC database with --from or KEEPASSXC_DATABASE")
    assert_error(fetch(capfd, "-a", "keepassxc", "--from", str(clean_env / "none.kdbx"), "top"),
                 f"KeePassXC database not found: {clean_env / 'none.kdbx'}")
    (clean_env / "bad.kdbx").write_text("not a database\n")
    assert_error(fetch(capfd, "-a", "keepassxc", "--from", "bad.kdbx", "top"),
                 "Could not open the KeePassXC database bad.kdbx")


def test_keepassxc_entries_from_xml() -> None:
    """Group paths, History skipped, custom attributes, a path two entries share (no tool needed)."""
    def entry(title: str, password: str, *extra: tuple[str, str], history: str = "") -> str:
        strings = "".join(f"<String><Key>{k}</Key><Value>{v}</Value></String>"
                          for k, v in [("Title", title), ("Password", password), *extra])
        return f"<Entry>{strings}<History>{history}</History></Entry>"

    xml = ("<KeePassFile><Root><Group><Name>Root</Name>"
           + entry("a", "sv1", ("API key", "sv2"), history=entry("a", "old"))
           + "<Group><Name>G</Name>" + entry("b", "sv3") + entry("b", "sv4") + entry("c", "") + "</Group>"
           + "</Group></Root></KeePassFile>")
    entries = keepassxc.read_entries(xml)
    assert keepassxc.lookup(entries, "a") == "sv1"
    assert keepassxc.lookup(entries, "a/API key") == "sv2"
    assert keepassxc.lookup(entries, "a/api KEY") == "sv2"
    assert keepassxc.lookup(entries, "G/c") == ""
    assert keepassxc.lookup(entries, "G") is None
    with pytest.raises(SecretsError, match="^G/b matches more than one entry in the KeePassXC database$"):
        keepassxc.lookup(entries, "G/b")


# --- pass ---------------------------------------------------------------------------------------------

@needs_pass
def test_pass_fetch(store: dict[str, str], clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                    capfd: pytest.CaptureFixture[str]) -> None:
    for name, value in store.items():
        monkeypatch.setenv(name, value)
    code, out, err = fetch(capfd, "-a", "pass", "top", "Shop/db")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"top": "sv top $HOME 'q'", "Shop/db": "sv-db"}  # the first line only
    assert fetch(capfd, "-a", "pass", "--from", "Shop", "db", "api/token") == (
        0, '{"Shop/db":"sv-db","Shop/api/token":"sv-token"}\n', "")


@needs_pass
def test_pass_errors(store: dict[str, str], clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                     capfd: pytest.CaptureFixture[str]) -> None:
    for name, value in store.items():
        monkeypatch.setenv(name, value)
    # A folder is not a secret (pass show would print its tree).
    assert_error(fetch(capfd, "-a", "pass", "top", "Shop", "nope"), "Could not find Shop, nope in the password store")
    assert_error(fetch(capfd, "-a", "pass", "--from", "Shop", "db", "x"),
                 "Could not find Shop/x in the password store")
    # A keyring without the secret key: gpg cannot decrypt.
    other = Path(tempfile.mkdtemp(prefix="kp-gpg-"))
    other.chmod(0o700)
    monkeypatch.setenv("GNUPGHOME", str(other))
    try:
        assert_error(fetch(capfd, "-a", "pass", "top"),
                     "Could not decrypt top from the password store (gpg: decryption failed: No secret key)")
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(other, ignore_errors=True)


# --- both ---------------------------------------------------------------------------------------------

def test_clis_missing(clean_env: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(clean_env))  # an empty directory: no CLI at all
    assert_error(fetch(capfd, "-a", "keepassxc", "--from", "x.kdbx", "top"), "KeePassXC CLI is not installed")
    assert_error(fetch(capfd, "-a", "pass", "top"), "pass CLI is not installed")


@needs_keepassxc
@needs_pass
def test_secrets_file(kdbx: Path, store: dict[str, str], clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                      capfd: pytest.CaptureFixture[str]) -> None:
    """``$(kamalpy secrets fetch ...)`` and ``extract`` in .kamal/secrets, resolved by ``secrets print``."""
    for name, value in store.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KEEPASSXC_PASSWORD", DB_PASSWORD)
    (clean_env / ".kamal").mkdir()
    (clean_env / ".kamal" / "secrets").write_text(
        f"KP=$(kamalpy secrets fetch --adapter keepassxc --from {kdbx} Shop/registry Shop/registry/UserName)\n"
        "REGISTRY_PASSWORD=$(kamalpy secrets extract Shop/registry $KP)\n"
        "REGISTRY_USER=$(kamalpy secrets extract UserName $KP)\n"
        "PS=$(kamalpy secrets fetch -a pass --from Shop db api/token)\n"
        "DB_PASSWORD=$(kamalpy secrets extract db $PS)\n"
        "API_TOKEN=$(kamalpy secrets extract token $PS)\n")
    capfd.readouterr()
    assert main(["secrets", "print"], standalone=False) == 0
    out, err = capfd.readouterr()
    lines = [line for line in out.splitlines() if not line.startswith(("KP=", "PS="))]
    assert (err, lines) == ("", [f"REGISTRY_PASSWORD={REGISTRY}", "REGISTRY_USER=alice", "DB_PASSWORD=sv-db",
                                 "API_TOKEN=sv-token"])
