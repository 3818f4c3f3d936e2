"""The secrets-file parser (kamalpy.secrets.dotenv): unit tests and differential tests against Kamal."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kamalpy.cli.main import main
from kamalpy.errors import SecretsError
from kamalpy.secrets.dotenv import parse
from kamalpy.secrets.store import run_shell_command

ENV = {"A": "envA", "PENV": "penv"}


def no_commands(command: str) -> str:
    raise AssertionError(f"unexpected command {command!r}")


def echo(command: str) -> str:
    return f"<{command}>\n"


def p(text: str, env: dict[str, str] | None = None, substitute=no_commands) -> dict[str, str]:
    return parse(text, ENV if env is None else env, substitute)


# --- unit tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("K=value\n", {"K": "value"}),
        ("export K=1\n", {"K": "1"}),
        ("  K = spaced  \n", {"K": "spaced"}),
        ("K: v\n", {"K": "v"}),
        ("K:v\n", {}),
        ("a.b=1\n", {"a.b": "1"}),
        ("K=\n", {"K": ""}),
        ('K=""\n', {"K": ""}),
        ("FOO\nBAR # c\n", {"FOO": "", "BAR": ""}),
        ("# comment\n\n   # indented\nK=1\n", {"K": "1"}),
        ("bad line here\nK=1\n", {"K": "1"}),
        ("K=a#b\n", {"K": "a"}),
        ("K=a #b\n", {"K": "a"}),
        ("K=#x\n", {"K": ""}),
        ("K='a#b'\n", {"K": "a#b"}),
        ('K="a#b" # c\n', {"K": "a#b"}),
        ('K="a\\nb"\n', {"K": "a\\nb"}),  # dotenv 3: not a newline
        ("K='a\\nb'\n", {"K": "a\\nb"}),
        ("K=a\\nb\n", {"K": "anb"}),
        ('K="a\\tb\\"c"\n', {"K": 'atb"c'}),
        ('K="a" b\n', {"K": '"a" b'}),
        ("K='a\\'b'\n", {"K": "a\\'b"}),
        ('K="x\\"y" z"\n', {"K": 'x"y" z'}),
        ('K="multi\n# not a comment\nline" # c\nL=2\n', {"K": "multi\n# not a comment\nline", "L": "2"}),
        ("K='x\ny'z\nL=2\n", {"K": "'x", "L": "2"}),
        ('K="unterminated\nL=2\n', {"K": '"unterminated', "L": "2"}),
        ("K=1\r\nL=2\r\n", {"K": "1", "L": "2"}),
        ("export\nK=1\n", {"K": "1"}),
        ("K=1\nexport K\n", {"K": "1"}),
        ("K=é=ü\n", {"K": "é=ü"}),
    ],
)
def test_syntax(text: str, expected: dict[str, str]) -> None:
    assert p(text) == expected


def test_legacy_linebreak_mode() -> None:
    assert p('DOTENV_LINEBREAK_MODE=legacy\nK="a\\nb"\n')["K"] == "a\nb"
    assert p('K="a\\nb"\n', env={"DOTENV_LINEBREAK_MODE": "legacy"})["K"] == "a\nb"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("K=$A\n", "envA"),
        ("A=file\nK=$A\n", "file"),  # earlier keys of the file win over the environment
        ("A=1\nK=$A-${A}-$PENV-$NOPE-x\n", "1-1-penv--x"),
        ("K=\\$A\n", "$A"),
        ("K='$A'\n", "$A"),
        ('K="\\$A"\n', "$A"),
        ("K=\\${A}\n", "${A}"),
        ("K=$A}\n", "envA"),
        ("K=${A\n", "envA"),
        ("K=$\n", "$"),
        ("K=a$ b\n", "a$ b"),
        ("K=$a\n", ""),
        ("K=${}x\n", "${}x"),
        ('K="${A}_x"\n', "envA_x"),
        ('K="a\\\\$A"\n', "a$A"),
    ],
)
def test_variables(text: str, expected: str) -> None:
    assert p(text)["K"] == expected


def test_variable_value_is_not_scanned_again() -> None:
    # Kamal would not run it either; nor expand a `$` in it.
    assert p("K=$X\n", env={"X": "$(echo pwned) $A"})["K"] == "$(echo pwned) $A"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("K=$(cmd)\n", "<cmd>"),
        ("K=$(echo $(echo nested))\n", "<echo $(echo nested)>"),
        ("A=zz\nK=$(echo $A ${PENV} \\$A)\n", "<echo zz penv $A>"),
        ("K=$(a)$(b)\n", "<a><b>"),
        ("K=x$(a (b) c)y\n", "x<a (b) c>y"),
        ("K=\\$(echo hi)\n", "$(echo hi)"),
        ("A=v\nK=\\$(echo $A)\n", "$(echo v)"),
        ('K="a\\\\$(echo x)"\n', "a$(echo x)"),
        ("K=$(echo \\( x)\n", "$(echo ( x)"),  # `\(` is unescaped before: unbalanced, so text
        ("K=$()\n", "$()"),
        ("K=$(echo ())\n", "$(echo ())"),
        ("K='$(cmd)'\n", "$(cmd)"),
        ('K="$(cmd)"\n', "<cmd>"),
        ("K=$(printf 'x\\n')\n", "<printf 'xn'>"),  # unquoted: backslashes go first
        ('K="$(printf \'x\\n\')"\n', "<printf 'x\\n'>"),
    ],
)
def test_command_substitution(text: str, expected: str) -> None:
    assert p(text, substitute=echo)["K"] == expected


def test_command_output_is_not_expanded() -> None:
    # Kamal expands `$x` in a command's output (dropping it): kamalpy keeps the output as it is.
    assert p("K=$(cmd)\n", substitute=lambda c: "two'secret$x $(echo no)\n")["K"] == "two'secret$x $(echo no)"


def test_chomp_removes_one_trailing_newline() -> None:
    assert p("K=$(c)\n", substitute=lambda c: "x\n\n")["K"] == "x\n"
    assert p("K=$(c)\n", substitute=lambda c: "x\r\n")["K"] == "x"
    assert p("K=$(c)\n", substitute=lambda c: "x")["K"] == "x"


def test_export_of_unset_variable() -> None:
    with pytest.raises(SecretsError, match=r'Line "export NOPE" in f has an unset variable'):
        parse("export NOPE\n", {}, no_commands, source="f")


def test_failing_command_names_file_and_key_not_value() -> None:
    text = "A=hunter2\nK=$(exit 3 $A)\n"
    with pytest.raises(SecretsError) as info:
        parse(text, {}, run_shell_command, source=".kamal/secrets")
    assert str(info.value) == "Could not resolve secret 'K' in .kamal/secrets: the command exited with status 3"
    assert "hunter2" not in str(info.value)


def test_shell_commands() -> None:
    out = parse("A=zz\nK=$(echo $A)\nL=$(printf 'a b\\\\n\\\\n')\nM=$(false || echo ok)\n", {}, run_shell_command)
    assert out == {"A": "zz", "K": "zz", "L": "a b\n", "M": "ok"}


# --- differential tests against Kamal 2.11 `kamal secrets print` -------------------------------------

DEPLOY_YML = ("service: app\nimage: app\nservers: [1.1.1.1]\nregistry:\n  username: u\n  password: p\n"
              "builder:\n  arch: amd64\n")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

DIFF_FILES = {
    "quoting": (
        "K1=a#b\nK2=a #b\nK3='a#b'\nK4=\"a#b\" # c\nK5=\"a\\nb\"\nK6='a\\nb'\nK7=a\\nb\nK8=\"a\\\\nb\"\n"
        "K9=\"a\\tb\\\"c\"\nK10=\"a\" b\nK11=\"a'b\"\nK12='a\\'b'\nK13=a b c\nK14=\"  pad  \"\n  K15=1\n"
        "export K16=1 # c\nK17: v\nK18:v\na.b=1\nK19 = spaced \nK20=\nK21=\"\"\nK22=\"a\\\\\"\nK23=x\\ y\n"
        "K24=é=ü\nK25=\"\\u00e9\"\nFOO\nBAR # c\nK26=#x\nK27=\"x\\\"y\" z\"\n"
        "K28=\"multi\n# not a comment\nline\" # c\nK29='multi\nline'\nK30='x\ny'z\nK31=\"x\\ry\"\n"
        "bad line\nK32=\"unterminated\nK33=end\n"
    ),
    "variables": (
        "V1=$A\nA=fileA\nV2=$A-${A}-$PENV-$NOPE-x\nV3=\\$A\nV4='$A'\nV5=\"\\$A\"\nV6=$A}\nV7=${A\nV8=$\n"
        "V9=a$ b\nV10=$a\nV11=${}x\nV12=$A$A\nV13=\"${A}_x\"\nV14=\\${A}\nV15=\"$A $PENV\"\nV16=\"a\\\\$A\"\nV17=$X\n"
    ),
    "commands": (
        "C1=$(echo hi)\nC2=$(printf 'a\\n\\n')\nC3=\"$(printf 'a\\nb')\"\nC4=\\$(echo hi)\n"
        "C5=$(echo $(echo nested))\nC6=$(echo \\( x)\nA=zz\nC7=$(echo $A)\nC8='$(echo hi)'\n"
        "C9=\"$(echo hi)\"\nC10=$(echo a)$(echo b)\nC11=\\$(echo $A)\nC12=$()\nC13=$(echo ())\n"
        "C14=\"a\\\\$(echo x)\"\nC15=$(printf 'x\\r\\n')\nC16=\"$(printf 'x\\n\\n')\"\nC17=$(echo \"$PENV\")\n"
        "C18=$(echo $X)\nC19=$(echo 'a (b) c')\n"
    ),
    "legacy_crlf": "DOTENV_LINEBREAK_MODE=legacy\r\nL1=\"a\\nb\"\r\nL2=2\r\n",
}
DIFF_ENV = {"A": "envA", "PENV": "penv", "X": "$(echo not-run)"}


def kamal_print(directory: Path, env: dict[str, str]) -> str:
    result = subprocess.run(["kamal", "secrets", "print"], cwd=directory, capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=120)
    assert result.returncode == 0, ANSI.sub("", result.stdout + result.stderr)
    return result.stdout


def project(root: Path, secrets: str) -> Path:
    (root / ".kamal").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "config" / "deploy.yml").write_text(DEPLOY_YML)
    (root / ".kamal" / "secrets").write_bytes(secrets.encode())
    return root


@pytest.fixture(scope="module")
def kamal_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("kamal") is None:
        pytest.skip("kamal is not installed")
    dirs = {name: project(tmp_path_factory.mktemp(name), text) for name, text in DIFF_FILES.items()}
    with ThreadPoolExecutor(len(dirs)) as pool:
        futures = {name: pool.submit(kamal_print, d, DIFF_ENV) for name, d in dirs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.kamal
@pytest.mark.parametrize("name", sorted(DIFF_FILES))
def test_same_as_kamal(name: str, kamal_outputs: dict[str, str], tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in DIFF_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(project(tmp_path, DIFF_FILES[name]))
    assert main(["secrets", "print"], standalone=False) == 0
    assert capsys.readouterr() == (kamal_outputs[name], "")
