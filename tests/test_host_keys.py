"""Host keys: kamalpy's verdict against the system ``ssh`` client's, on the same files, against a real sshd.

An sshd of our own (its own host key and host certificate) listens on a loopback port. For each case,
the same known_hosts files and StrictHostKeyChecking value are handed to ``ssh -F`` and to the paramiko
transport (one ssh config file for both), each on its own copy of the files; the verdict (connects or is
refused) and what gets recorded in the user file must be the same. The one accepted difference
(decisions.md): a host whose key is vouched for by a ``@cert-authority`` line is refused by kamalpy,
which cannot verify host certificates.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from local_sshd import Server, needs_sshd

from kamalpy.transport import SshSettings, TransportError
from kamalpy.transport import known_hosts as kh

pytestmark = needs_sshd


@pytest.fixture(scope="module")
def server(sshd: Server) -> Server:
    return sshd


@dataclass
class Case:
    id: str
    user: str  # the user known_hosts file ({name}, {key}, {other}, {ecdsa}, {ca}, {hashed} filled in)
    strict: str | None  # StrictHostKeyChecking, None: not set
    connects: bool
    recorded: bool = False  # a line is added to the user file
    glob: str = ""  # the global known_hosts file
    extra: str = ""  # more ssh config lines
    differs: bool = False  # the accepted difference: ssh connects, kamalpy refuses
    port22: bool = False  # against the sshd's port-22 address ({name} is then the bare host)


CASES = [
    Case("new-unset-is-accept-new", "", None, True, recorded=True),
    Case("new-accept-new", "", "accept-new", True, recorded=True),
    Case("new-yes", "", "yes", False),
    Case("new-no", "", "no", True, recorded=True),
    Case("new-off", "", "off", True, recorded=True),
    Case("new-ask-batch", "", "ask", False),
    Case("known", "{name} {key}\n", "yes", True),
    Case("known-in-global-only", "", "yes", True, glob="{name} {key}\n"),
    Case("changed-accept-new", "{name} {other}\n", "accept-new", False),
    Case("changed-unset", "{name} {other}\n", None, False),
    Case("changed-yes", "{name} {other}\n", "yes", False),
    Case("changed-no-connects", "{name} {other}\n", "no", True),
    Case("pinned-in-global-changed", "", "accept-new", False, glob="{name} {other}\n"),
    Case("user-and-global-either-matches", "{name} {other}\n", "yes", True, glob="{name} {key}\n"),
    Case("hashed", "{hashed} {key}\n", "yes", True),
    Case("hashed-changed", "{hashed} {other}\n", "accept-new", False),
    Case("bare-name-is-good-for-any-port", "127.0.0.1 {key}\n", "yes", True),
    Case("bare-name-changed-is-new", "127.0.0.1 {other}\n", "accept-new", True, recorded=True),
    Case("bare-name-revoked", "@revoked 127.0.0.1 {key}\n127.0.0.1 {key}\n", "yes", False),
    Case("wildcard", "[127.0.0.*]:* {key}\n", "yes", True),
    Case("question-mark", "[127.0.0.?]:{port} {key}\n", "yes", True),
    Case("negated", "!{name},[127.*]:* {key}\n", "yes", False),
    Case("negation-of-another-host", "!*.example.com,[127.0.0.1]:* {key}\n", "yes", True),
    Case("star-changed", "* {other}\n", "accept-new", False),
    Case("other-type-known-is-changed", "{name} {ecdsa}\n", "accept-new", False),
    Case("two-types-one-matches", "{name} {ecdsa}\n{name} {key}\n", "yes", True),
    Case("revoked", "@revoked {name} {key}\n{name} {key}\n", "yes", False),
    Case("revoked-no-connects", "@revoked {name} {key}\n{name} {key}\n", "no", True),
    Case("revoked-star", "@revoked * {key}\n", "accept-new", False),
    Case("revoked-for-another-host", "@revoked [10.9.9.9]:* {key}\n{name} {key}\n", "yes", True),
    Case("revoked-other-key", "@revoked * {other}\n{name} {key}\n", "yes", True),
    Case("ca-for-other-hosts", "@cert-authority *.example.com {ca}\n{name} {key}\n", "yes", True),
    Case("ca-for-other-hosts-new", "@cert-authority *.example.com {ca}\n", "accept-new", True, recorded=True),
    Case("ca-for-this-host", "@cert-authority [127.0.0.1]:* {ca}\n", "yes", True, differs=True),
    Case("corrupt-lines-skipped", "garbage\n@bogus {name} {key}\n{name} ssh-ed25519 !!notbase64\n"
                                  "{name} ssh-rsa {keyblob}\n|1|bad|hash {key}\n{name} {key}\n", "yes", True),
    Case("corrupt-lines-then-new", "garbage line here\n", "accept-new", True, recorded=True),
    Case("second-user-file", "", "yes", True, extra="UserKnownHostsFile {dir}/missing {dir}/second\n"),
    Case("hash-known-hosts", "", "accept-new", True, recorded=True, extra="HashKnownHosts yes\n"),
    Case("port-22-bare-name", "{name} {key}\n", "yes", True, port22=True),
    Case("port-22-bracketed-is-another-name", "[{host}]:22 {key}\n", "yes", False, port22=True),
    Case("port-22-new-recorded-bare", "", "accept-new", True, recorded=True, port22=True),
    Case("port-22-changed", "{name} {other}\n", "accept-new", False, port22=True),
    Case("global-none", "{name} {key}\n", "yes", True, glob="{name} {other}\n",
         extra="GlobalKnownHostsFile none\n"),
]


def _fill(text: str, server: Server, d: Path) -> str:
    hashed = kh.hash_name(server.name, b"0123456789abcdefghij")  # one salt: both copies alike
    return text.format(name=server.name, host=server.host, key=server.host_key, other=server.other_key,
                       ecdsa=server.ecdsa_key, ca=server.ca_key, hashed=hashed, port=server.port, dir=d,
                       keyblob=server.host_key.split()[1])


def _setup(case: Case, server: Server, d: Path) -> Path:
    d.mkdir()
    (d / "known_hosts").write_text(_fill(case.user, server, d))
    (d / "global").write_text(_fill(case.glob, server, d))
    (d / "second").write_text(f"{server.name} {server.host_key}\n")
    lines = ["Host *", f"  UserKnownHostsFile {d / 'known_hosts'}", f"  GlobalKnownHostsFile {d / 'global'}"]
    extra = [f"  {line}" for line in _fill(case.extra, server, d).splitlines()]
    # The first value wins (OpenSSH and kamalpy alike): case-specific lines go first.
    lines[1:1] = extra
    if case.strict is not None:
        lines.append(f"  StrictHostKeyChecking {case.strict}")
    (d / "ssh_config").write_text("\n".join(lines) + "\n")
    return d / "ssh_config"


def _ssh(server: Server, config: Path, strict: str | None) -> bool:
    # Unset, OpenSSH asks (refused in batch mode); kamalpy's default is accept-new (decisions.md).
    unset = ["-o", "StrictHostKeyChecking=accept-new"] if strict is None else []
    proc = subprocess.run(["ssh", "-F", str(config), *unset, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                           "-o", "IdentitiesOnly=yes", "-i", str(server.client_key), "-p", str(server.port),
                           f"root@{server.host}", "true"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0


def _kamalpy(server: Server, config: Path, warnings: list[str]) -> tuple[bool, str]:
    from kamalpy.builtin_plugins.ssh_paramiko import ParamikoTransport

    settings = SshSettings(port=server.port, keys=(str(server.client_key),), keys_only=True, config=(str(config),),
                           connect_timeout=10, warn=warnings.append)
    try:
        connection = ParamikoTransport().connect(server.host, settings)
    except TransportError as exc:
        return False, str(exc)
    try:
        assert connection.run("true").ok
    finally:
        connection.close()
    return True, ""


def _recorded(before: str, after: str, name: str) -> list[str]:
    """Lines added to a known_hosts file, hashed names shown as ``hashed:<matches name>``."""
    assert after.startswith(before)
    shown = []
    for line in after[len(before):].splitlines():
        host, rest = line.split(None, 1)
        if host.startswith("|1|"):
            host = f"hashed:{kh._hosts_match(name, host)}"
        shown.append(f"{host} {' '.join(rest.split()[:2])}")
    return shown


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_verdict_matches_openssh(case: Case, server: Server, tmp_path: Path) -> None:
    if case.port22:
        if server.host22 is None:
            pytest.skip("could not listen on port 22 of a loopback address")
        server = dataclasses.replace(server, host=server.host22, port=22)
    ssh_config = _setup(case, server, tmp_path / "ssh")
    ours = _setup(case, server, tmp_path / "kamalpy")
    before = (tmp_path / "ssh" / "known_hosts").read_text()

    ssh_connects = _ssh(server, ssh_config, case.strict)
    warnings: list[str] = []
    connects, error = _kamalpy(server, ours, warnings)

    assert ssh_connects == case.connects, "the system ssh client's verdict is not the expected one"
    assert connects == (case.connects and not case.differs), error
    ssh_added = _recorded(before, (tmp_path / "ssh" / "known_hosts").read_text(), server.name)
    our_added = _recorded(before, (tmp_path / "kamalpy" / "known_hosts").read_text(), server.name)
    assert our_added == ssh_added
    assert bool(our_added) == case.recorded
    if not connects:
        assert error.startswith(f"{server.host}: "), error
    if case.differs:
        assert "certificate authority" in error and "cannot verify host certificates" in error, error
    if case.id.startswith("corrupt"):
        assert warnings and all("skipping a corrupt known_hosts line" in w for w in warnings), warnings
        assert f"{tmp_path / 'kamalpy' / 'known_hosts'}:1:" in warnings[0]
    else:
        assert not [w for w in warnings if "corrupt" in w], warnings


def test_changed_key_hint_names_the_port(server: Server, tmp_path: Path) -> None:
    config = _setup(Case("x", "{name} {other}\n", "yes", False), server, tmp_path / "k")
    connects, error = _kamalpy(server, config, [])
    assert not connects
    known = tmp_path / "k" / "known_hosts"
    assert error.startswith("127.0.0.1: host key changed: the server offers ssh-ed25519 SHA256:"), error
    assert f"{known}:1 has ssh-ed25519 SHA256:" in error
    hint = f'ssh-keygen -R "[127.0.0.1]:{server.port}" -f {known}'
    assert error.endswith(hint), error
    # The hint works: the old key goes, and the next connection records the new one.
    subprocess.run(["ssh-keygen", "-R", f"[127.0.0.1]:{server.port}", "-f", str(known)], check=True,
                   capture_output=True)
    config.write_text(config.read_text().replace("StrictHostKeyChecking yes", "StrictHostKeyChecking accept-new"))
    assert _kamalpy(server, config, []) == (True, "")
    assert f"{server.name} {server.host_key}" in known.read_text()


def test_revoked_message(server: Server, tmp_path: Path) -> None:
    config = _setup(Case("x", "@revoked * {key}\n", "accept-new", False), server, tmp_path / "k")
    connects, error = _kamalpy(server, config, [])
    assert not connects
    shown = kh.fingerprint("ssh-ed25519", base64.b64decode(server.host_key.split()[1]))
    known = tmp_path / "k" / "known_hosts"
    assert error == f"127.0.0.1: host key {shown} is marked @revoked in {known}:1; refusing to connect"


# -- the parts, without a server ----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "patterns", "expected"), [
    ("web1.example.com", "*.example.com", 1),
    ("web1.example.com", "web?.example.com", 1),
    ("web10.example.com", "web?.example.com", 0),
    ("web1.example.com", "!web1.example.com,*.example.com", -1),
    ("web2.example.com", "!web1.example.com,*.example.com", 1),
    ("WEB1.Example.com", "web1.EXAMPLE.com", 1),
    ("[10.0.0.1]:2222", "[10.0.0.1]:2222", 1),
    ("[10.0.0.1]:2222", "10.0.0.1", 0),
    ("[10.0.0.1]:2222", "*", 1),
    ("10.0.0.1", "10.0.0.*,!10.0.0.2", 1),
])
def test_patterns_as_openssh(name: str, patterns: str, expected: int) -> None:
    assert kh.match_pattern_list(name, patterns) == expected


@settings(max_examples=300, deadline=None)
@given(st.text("ab*?.[]", max_size=8), st.text("ab*?.[]", max_size=10))
def test_wildcards_as_shell_patterns_without_classes(pattern: str, name: str) -> None:
    # OpenSSH's * and ? are fnmatch's, but [ is a literal character in known_hosts.
    assert kh.match_pattern(name, pattern) == fnmatch.fnmatchcase(name, pattern.replace("[", "[[]"))


def test_many_stars_stay_fast() -> None:
    started = time.monotonic()
    assert not kh.match_pattern("a" * 60, "*a" * 30 + "*b")
    assert time.monotonic() - started < 1


def test_openssh_reads_our_hashed_names(tmp_path: Path) -> None:
    blob = base64.b64decode("AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
    kh.record(str(tmp_path / "known_hosts"), "[web1.example.com]:2222", "ssh-ed25519", blob, hashed=True)
    found = subprocess.run(["ssh-keygen", "-F", "[web1.example.com]:2222", "-f", str(tmp_path / "known_hosts")],
                           capture_output=True, text=True)
    assert found.returncode == 0 and "|1|" in found.stdout


def test_policy_defaults_and_options(tmp_path: Path) -> None:
    default = kh.Policy.from_ssh_config({})
    home = os.path.expanduser("~")
    assert default.user_files == (f"{home}/.ssh/known_hosts", f"{home}/.ssh/known_hosts2")
    assert default.global_files == ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
    assert default.strict == "accept-new"
    assert default.name("Web1", 22) == "web1" and default.name("web1", 2222) == "[web1]:2222"
    policy = kh.Policy.from_ssh_config({"stricthostkeychecking": "Off", "userknownhostsfile": "%d/a ~/b",
                                        "globalknownhostsfile": "none", "hostkeyalias": "Alias"})
    assert policy.strict == "no" and policy.user_files == (f"{home}/a", f"{home}/b") and policy.global_files == ()
    assert policy.name("web1", 2222) == "alias"
    with pytest.raises(kh.HostKeyError, match="StrictHostKeyChecking 'maybe'"):
        kh.Policy.from_ssh_config({"stricthostkeychecking": "maybe"})


def test_unreadable_lines_warn_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    path.write_text(f"# comment\n\nhost ssh-ed25519\n@cert-authority\nhost ssh-rsa {key}\n")
    warnings: list[str] = []
    assert kh.read_entries(str(path), "host", warnings.append) == []
    assert [w.split(": skipping")[0] for w in warnings] == [f"{path}:3", f"{path}:4", f"{path}:5"]
