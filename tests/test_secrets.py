"""The secrets store (kamalpy.secrets.store.Secrets): files, destination, laziness, errors, inline commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import kamalpy.secrets.store as store
from kamalpy.errors import SecretsError
from kamalpy.hooks import Hooks
from kamalpy.plugin import SecretAdapter, hookimpl
from kamalpy.plugins import build_plugin_manager
from kamalpy.secrets import Secrets, shellescape, shellsplit


def write(path: str | Path, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def hooks() -> Hooks:
    return Hooks(build_plugin_manager(load_entry_points=False))


@pytest.fixture
def no_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process commands must not reach /bin/sh."""

    def refuse(command: str) -> str:
        raise AssertionError(f"ran a subprocess for {command!r}")

    monkeypatch.setattr(store, "run_shell_command", refuse)


# --- files -----------------------------------------------------------------------------------------


def test_common_then_main_later_wins(in_tmp: Path) -> None:
    write(".kamal/secrets-common", "A=common\nB=cb\n")
    write(".kamal/secrets", "A=main\nC=$B\n")
    write(".kamal/secrets.prod", "A=prod\n")
    secrets = Secrets()
    # Each file is parsed on its own: B of secrets-common is no variable in secrets.
    assert secrets.to_dict() == {"A": "main", "B": "cb", "C": ""}
    assert secrets.files == [".kamal/secrets-common", ".kamal/secrets"]


def test_destination_reads_common_and_destination_only(in_tmp: Path) -> None:
    write(".kamal/secrets-common", "A=common\nB=cb\n")
    write(".kamal/secrets", "A=main\nM=1\n")
    write(".kamal/secrets.prod", "A=prod\n")
    secrets = Secrets(destination="prod")
    assert secrets.to_dict() == {"A": "prod", "B": "cb"}
    assert secrets.files == [".kamal/secrets-common", ".kamal/secrets.prod"]
    assert Secrets(destination="nodest").to_dict() == {"A": "common", "B": "cb"}


def test_custom_path_and_missing_files(in_tmp: Path) -> None:
    write("custom/path/secrets.dest", "S=DEST\n")
    assert Secrets(Path("custom/path/secrets"), "dest").to_dict() == {"S": "DEST"}
    assert Secrets("custom/path/secrets").to_dict() == {}


def test_mapping_api(in_tmp: Path) -> None:
    write(".kamal/secrets", "A=1\nB=\n")
    secrets = Secrets()
    assert secrets["A"] == "1"
    assert secrets.get("B") == ""
    assert secrets.get("C") is None and secrets.get("C", "d") == "d"
    assert "A" in secrets and "C" not in secrets
    assert list(secrets) == ["A", "B"] and len(secrets) == 2
    copy = secrets.to_dict()
    copy["A"] = "changed"
    assert secrets["A"] == "1"
    assert "1" not in repr(secrets)


# --- errors ----------------------------------------------------------------------------------------


def test_not_found_messages(in_tmp: Path) -> None:
    with pytest.raises(SecretsError) as info:
        Secrets()["SECRET"]
    expected = "Secret 'SECRET' not found, no secret files (.kamal/secrets-common, .kamal/secrets) provided"
    assert str(info.value) == expected
    with pytest.raises(KeyError):  # also a KeyError
        Secrets(destination="dest")["SECRET"]
    with pytest.raises(SecretsError, match=re.escape("(.kamal/secrets-common, .kamal/secrets.dest) provided")):
        Secrets(destination="dest")["SECRET"]
    write(".kamal/secrets", "A=1\n")
    with pytest.raises(SecretsError) as info:
        Secrets()["SECRET"]
    assert str(info.value) == "Secret 'SECRET' not found in .kamal/secrets"
    write(".kamal/secrets-common", "B=1\n")
    with pytest.raises(SecretsError, match=r"^Secret 'SECRET' not found in .kamal/secrets-common, .kamal/secrets$"):
        Secrets()["SECRET"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("K=$(exit 3)", "the command exited with status 3"),
        ("K=$(kamal secrets extract nope ${SECRETS})", "Could not find secret nope"),
        ("K=$(kamalpy secrets fetch -a nope --account x a)", "Unknown secrets adapter: nope"),
        ("K=$(kamal secrets fetch -a test a)", "No value provided for required options '--account'"),
        ("K=$(kamal secrets fetch --account x a)", "No value provided for required options '--adapter'"),
        ("K=$(kamal secrets extract a ${SECRETS} extra)", "invalid command line for 'kamalpy secrets extract'"),
        ("K=$(kamal secrets extract a '${SECRETS})", "Unmatched quote in a 'secrets' command"),
        ("K=$(kamal secrets extract a not-json)", "Could not parse the secrets JSON (line 1 column 1)"),
    ],
)
def test_failures_name_file_and_key_never_a_value(in_tmp: Path, line: str, reason: str) -> None:
    write(".kamal/secrets", f"SECRETS=$(kamal secrets fetch -a test --account a hunter2)\n{line}\n")
    with pytest.raises(SecretsError) as info:
        Secrets()["K"]
    message = str(info.value)
    assert message.startswith(f"Could not resolve secret 'K' in .kamal/secrets: {reason}")
    assert "\n" not in message
    assert "2retnuh" not in message and "hunter2" not in message


def test_failed_load_is_retried(in_tmp: Path) -> None:
    write(".kamal/secrets", "K=$(exit 1)\n")
    secrets = Secrets()
    with pytest.raises(SecretsError):
        secrets.to_dict()
    write(".kamal/secrets", "K=ok\n")
    assert secrets["K"] == "ok"


def test_reentry_is_an_error_not_a_hang(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(".kamal/secrets", "K=$(anything)\n")
    secrets = Secrets()
    monkeypatch.setattr(secrets, "_run_command", lambda command: secrets["OTHER"])
    with pytest.raises(SecretsError, match="requested while being loaded"):
        secrets.to_dict()


# --- laziness and threads --------------------------------------------------------------------------


def test_lazy_and_loaded_once(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_parse = store.parse

    def counting_parse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(kwargs["source"])
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(store, "parse", counting_parse)
    secrets = Secrets()
    write(".kamal/secrets", "A=1\n")  # written after the constructor: nothing was read yet
    assert calls == []
    assert secrets["A"] == "1"
    assert secrets.get("A") == "1" and "A" in secrets
    assert calls == [".kamal/secrets"]


def test_threads_run_commands_once(in_tmp: Path) -> None:
    write(".kamal/secrets", "K=$(echo run >> count; sleep 0.2; echo value)\n")
    secrets = Secrets()
    barrier = threading.Barrier(8)

    def read(_: int) -> str:
        barrier.wait()
        return secrets["K"]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(read, range(8))) == ["value"] * 8
    assert Path("count").read_text() == "run\n"


# --- in-process `kamal secrets` commands -----------------------------------------------------------


def test_fetch_extract_chain_in_process(in_tmp: Path, hooks: Hooks, no_shell: None) -> None:
    write(".kamal/secrets", (
        "SECRETS=$(kamalpy secrets fetch -a test --account a --from V foo 'with space' LPARENzRPAREN)\n"
        "FOO=$(kamalpy secrets extract foo ${SECRETS})\n"
        "SPACE=$(kamal secrets extract 'with space' $SECRETS)\n"
        "PAREN=$(kamal  secrets extract V/LPARENzRPAREN ${SECRETS})\n"
    ))
    secrets = Secrets(hooks=hooks)
    assert secrets["FOO"] == "oof/V"
    assert secrets["SPACE"] == "ecaps htiw/V"
    assert secrets["PAREN"] == ")z(/V"
    expected = '{"V/foo":"oof/V","V/with space":"ecaps htiw/V","V/LPARENzRPAREN":")z(/V"}'
    assert shellsplit(secrets["SECRETS"]) == [expected]


def test_dollar_in_a_fetched_value_survives(in_tmp: Path, hooks: Hooks, no_shell: None) -> None:
    # Kamal 2.11 yields `two'secret` here (it expands `$x` in the command's output): fixed on purpose.
    write(".kamal/secrets", (
        "SECRETS=$(kamal secrets fetch -a test --account a 'x\\$terces'\"'\"'owt' foo)\n"
        "A=$(kamal secrets extract 'x\\$terces'\"'\"'owt' ${SECRETS})\n"
        "B=$(kamal secrets extract foo ${SECRETS})\n"
    ))
    secrets = Secrets(hooks=hooks)
    assert secrets["A"] == "two'secret$x"
    assert secrets["B"] == "oof"


def test_adapters_come_from_the_hooks(in_tmp: Path, no_shell: None) -> None:
    class Upper(SecretAdapter):
        def fetch(self, secrets: list[str], account: str | None = None, from_: str | None = None) -> dict[str, str]:
            return {name: name.upper() for name in secrets}

    class Plugin:
        @hookimpl
        def kamalpy_secret_adapters(self) -> dict[str, type[SecretAdapter]]:
            return {"Upper": Upper, "up": Upper}

    pm = build_plugin_manager(load_entry_points=False)
    pm.register(Plugin(), name="upper")
    write(".kamal/secrets", "S=$(kamalpy secrets fetch -a UPPER a)\nA=$(kamalpy secrets extract a $S)\n"
                            "B=$(kamalpy secrets fetch --adapter up b)\n")
    assert Secrets(hooks=Hooks(pm)).to_dict() == {"S": '\\{\\"a\\":\\"A\\"\\}', "A": "A", "B": '\\{\\"b\\":\\"B\\"\\}'}


def test_other_commands_run_in_a_shell(in_tmp: Path) -> None:
    write(".kamal/secrets", "A=$(echo kamal secrets)\nB=$(kamalx secrets fetch 2>/dev/null || echo shell)\n")
    assert Secrets().to_dict() == {"A": "kamal secrets", "B": "shell"}


def test_default_hooks_without_a_cli(in_tmp: Path) -> None:
    write(".kamal/secrets", "A=$(kamal secrets fetch -a test --account x abc)\n")
    assert Secrets()["A"] == '\\{\\"abc\\":\\"cba\\"\\}'


# --- Ruby shell quoting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("", "''"), ("abc-1.2,x:y+z/@", "abc-1.2,x:y+z/@"), ('{"a":"b c"}', '\\{\\"a\\":\\"b\\ c\\"\\}'),
     ("it's $x", "it\\'s\\ \\$x"), ("a\nb", "a'\n'b"), ("é", "\\é")],
)
def test_shellescape_round_trip(text: str, escaped: str) -> None:
    assert shellescape(text) == escaped
    assert shellsplit(shellescape(text)) == [text]


def test_shellsplit_like_ruby() -> None:
    assert shellsplit("a 'b c' \"d \\$e \\x\" f\\ g  ") == ["a", "b c", "d $e \\x", "f g"]
    assert shellsplit("a''b \"\"") == ["ab", ""]
    with pytest.raises(SecretsError, match="Unmatched quote"):
        shellsplit("a 'b")


# --- differential: the same files through Kamal 2.11 ---------------------------------------------------

DEPLOY_YML = ("service: app\nimage: app\nservers: [1.1.1.1]\nregistry:\n  username: u\n  password: p\n"
              "builder:\n  arch: amd64\n")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

CHAIN = (
    "SECRETS=$(kamal secrets fetch -a test --account a --from V foo 'with space' LPARENzRPAREN \"it's\")\n"
    "FOO=$(kamal secrets extract foo ${SECRETS})\n"
    "SPACE=$(kamal secrets extract 'with space' $SECRETS)\n"
    "PAREN=$(kamal secrets extract V/LPARENzRPAREN ${SECRETS})\n"
    "QUOTE=$(kamal secrets extract \"it's\" ${SECRETS})\n"
)
DOLLAR = (
    "SECRETS=$(kamal secrets fetch -a test --account a 'x\\$terces'\"'\"'owt')\n"
    "A=$(kamal secrets extract 'x\\$terces'\"'\"'owt' ${SECRETS})\n"
)
DESTINATION = {".kamal/secrets-common": "A=common\nB=cb\n", ".kamal/secrets": "A=main\nM=1\n",
               ".kamal/secrets.prod": "A=prod\nC=$B\n", "config/deploy.prod.yml": "servers: [1.1.1.2]\n"}


def kamal_print(root: Path, files: dict[str, str], *args: str) -> str:
    write(root / "config" / "deploy.yml", DEPLOY_YML)
    for name, text in files.items():
        write(root / name, text)
    result = subprocess.run(["kamal", "secrets", "print", *args], cwd=root, capture_output=True, text=True,
                            timeout=120, env=os.environ)
    assert result.returncode == 0, ANSI.sub("", result.stdout + result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def kamal_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("kamal") is None:
        pytest.skip("kamal is not installed")
    jobs = {
        "chain": ({".kamal/secrets": CHAIN},),
        "dollar": ({".kamal/secrets": DOLLAR},),
        "destination": (DESTINATION, "-d", "prod"),
        "no_destination": (DESTINATION,),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(kamal_print, tmp_path_factory.mktemp(name), *job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def parse_printed(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines())


@pytest.mark.kamal
def test_chain_same_as_kamal(kamal_outputs: dict[str, str], in_tmp: Path, hooks: Hooks) -> None:
    write(".kamal/secrets", CHAIN)
    ours = Secrets(hooks=hooks).to_dict()
    theirs = parse_printed(kamal_outputs["chain"])
    assert {k: v for k, v in ours.items() if k != "SECRETS"} == {k: v for k, v in theirs.items() if k != "SECRETS"}
    # The shell-escaped JSON itself: Kamal un-escapes `\$` in it afterwards (none here), so it is equal too.
    assert ours["SECRETS"] == theirs["SECRETS"]


@pytest.mark.kamal
def test_dollar_bug_is_fixed(kamal_outputs: dict[str, str], in_tmp: Path, hooks: Hooks) -> None:
    write(".kamal/secrets", DOLLAR)
    assert parse_printed(kamal_outputs["dollar"])["A"] == "two'secret"  # Kamal 2.11 drops `$x`
    assert Secrets(hooks=hooks)["A"] == "two'secret$x"


@pytest.mark.kamal
@pytest.mark.parametrize(("job", "destination"), [("destination", "prod"), ("no_destination", None)])
def test_files_same_as_kamal(kamal_outputs: dict[str, str], in_tmp: Path, job: str, destination: str | None) -> None:
    for name, text in DESTINATION.items():
        write(name, text)
    assert Secrets(destination=destination).to_dict() == parse_printed(kamal_outputs[job])
