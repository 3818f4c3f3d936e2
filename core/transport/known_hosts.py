"""Host keys checked as OpenSSH checks them: known_hosts files, patterns, hashes, markers, StrictHostKeyChecking.

Pure (no SSH library): a transport hands over the server's public key blob and the ssh config options
that apply to the host, and gets a :class:`Decision` back. Our own rather than paramiko's ``HostKeys``,
which keeps one key per host and type (so ``@revoked`` / ``@cert-authority`` lines are read as plain keys
for hosts named "@revoked"), matches names only literally (no ``*``/``?``/``!`` patterns), knows
no global file, and raises on a corrupt line, which then breaks every connection.

The rules follow OpenSSH's ``sshconnect.c``/``hostfile.c`` (9.x):

- the name looked up is ``HostKeyAlias``, else the host (after ``HostName``) in lower case, as
  ``[host]:port`` when the port is not 22;
- every ``UserKnownHostsFile`` then every ``GlobalKnownHostsFile`` is read (defaults
  ``~/.ssh/known_hosts ~/.ssh/known_hosts2`` and ``/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2``);
- a line matches when one of its comma-separated patterns matches and no ``!`` pattern does
  (``|1|salt|hash`` lines are compared by HMAC-SHA1);
- a matching ``@revoked`` key is refused; a matching plain key accepts it; another plain key (of any
  type) means the key changed; a key recorded for the bare host name accepts it on any port; otherwise
  the host is new: recorded in the first user file (``accept-new``, ``no``), refused (``yes``, ``ask``:
  OpenSSH in batch mode cannot ask either);
- a changed or revoked key is refused, except with ``StrictHostKeyChecking no``: OpenSSH then warns and
  connects without forwarding, and so does kamalpy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

DEFAULT_USER_FILES = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_FILES = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
# When nothing is configured OpenSSH asks; a deploy cannot, so kamalpy accepts new keys (decisions.md).
DEFAULT_STRICT = "accept-new"
_STRICT_VALUES = {"yes": "yes", "true": "yes", "no": "no", "false": "no", "off": "no",
                  "accept-new": "accept-new", "ask": "ask"}
_MARKERS = {"@cert-authority": "cert-authority", "@revoked": "revoked"}
_HASH_MAGIC = "|1|"
_WRITE_LOCK = threading.Lock()

Warn = Callable[[str], None]


class HostKeyError(Exception):
    """The host key is refused; the message is one line for the user (without the host name)."""


@dataclass(frozen=True)
class Entry:
    path: str
    line: int
    marker: str | None  # None, "cert-authority" or "revoked"
    key_type: str
    blob: bytes

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Policy:
    """The ssh config options that decide: built with :meth:`from_ssh_config`."""

    user_files: tuple[str, ...] = DEFAULT_USER_FILES
    global_files: tuple[str, ...] = DEFAULT_GLOBAL_FILES
    strict: str = DEFAULT_STRICT
    hash_names: bool = False
    alias: str | None = None

    @classmethod
    def from_ssh_config(cls, options: dict, default_user_files: str | None = None) -> Policy:
        """From paramiko-style lookup results (lower-case keys); an unknown StrictHostKeyChecking is an error."""
        strict_raw = str(options.get("stricthostkeychecking", DEFAULT_STRICT)).strip().lower()
        if strict_raw not in _STRICT_VALUES:
            raise HostKeyError(f"StrictHostKeyChecking {strict_raw!r} is not one of "
                               f"yes, accept-new, no, off, ask")
        user = options.get("userknownhostsfile") or default_user_files
        return cls(user_files=_file_list(user, DEFAULT_USER_FILES),
                   global_files=_file_list(options.get("globalknownhostsfile"), DEFAULT_GLOBAL_FILES),
                   strict=_STRICT_VALUES[strict_raw],
                   hash_names=str(options.get("hashknownhosts", "no")).strip().lower() in ("yes", "true"),
                   alias=options.get("hostkeyalias") or None)

    def name(self, host: str, port: int) -> str:
        """The name looked up and recorded: ``host``, ``[host]:port``, or the ``HostKeyAlias``."""
        if self.alias:
            return self.alias.lower()
        host = host.lower()
        return host if int(port) == 22 else f"[{host}]:{port}"


def _file_list(value: object, default: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        value = default
    words = value.split() if isinstance(value, str) else [str(v) for part in value for v in str(part).split()]
    if [w.lower() for w in words] == ["none"]:
        return ()
    home = os.path.expanduser("~")
    return tuple(os.path.expanduser(w.replace("%d", home).replace("%%", "%")) for w in words)


# -- matching ----------------------------------------------------------------------------------------

def match_pattern(name: str, pattern: str) -> bool:
    """OpenSSH's ``match_pattern``: ``*`` any run of characters, ``?`` one character, the rest literal.

    The greedy scan that backs up to the last ``*``: at most len(name) x len(pattern) steps, where
    OpenSSH's recursion (and a regular expression) can take exponential time on many stars.
    """
    n = p = 0
    star, mark = -1, 0
    while n < len(name):
        if p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, n, p + 1
        elif p < len(pattern) and pattern[p] in ("?", name[n]):
            n, p = n + 1, p + 1
        elif star >= 0:
            mark += 1
            n, p = mark, star + 1
        else:
            return False
    return pattern[p:].strip("*") == ""


def match_pattern_list(name: str, patterns: str) -> int:
    """1: a pattern matched and no negated one; -1: a negated pattern matched; 0: none matched."""
    name = name.lower()
    found = 0
    for pattern in patterns.lower().split(","):
        negated = pattern.startswith("!")
        if match_pattern(name, pattern[1:] if negated else pattern):
            if negated:
                return -1
            found = 1
    return found


def hash_name(name: str, salt: bytes | None = None) -> str:
    """``|1|salt|hash`` for ``name`` (OpenSSH's HashKnownHosts form)."""
    salt = salt if salt is not None else os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"{_HASH_MAGIC}{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _hosts_match(name: str, field: str) -> bool:
    """Raises ValueError for a malformed hash."""
    if field.startswith("|"):
        parts = field.split("|")
        if len(parts) != 4 or parts[1] != "1":
            raise ValueError("malformed hashed host name")
        try:
            salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
        except binascii.Error:
            raise ValueError("malformed hashed host name") from None
        if len(salt) != 20 or len(digest) != 20:
            raise ValueError("malformed hashed host name")
        return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
    return match_pattern_list(name, field) == 1


def blob_type(blob: bytes) -> str:
    """The key type a public key blob names (its first SSH string); ValueError when it is not one."""
    if len(blob) < 4:
        raise ValueError("key too short")
    (length,) = struct.unpack(">I", blob[:4])
    if length == 0 or length > 64 or 4 + length > len(blob):
        raise ValueError("not an SSH public key")
    return blob[4:4 + length].decode("ascii")


# -- reading -------------------------------------------------------------------------------------------

def _parse(text: str) -> tuple[str | None, str, str, bytes] | None:
    """(marker, hosts, key type, blob) of one line; None for a blank or comment; ValueError if corrupt."""
    words = text.split()
    if not words or words[0].startswith("#"):
        return None
    marker = None
    if words[0].startswith("@"):
        if words[0] not in _MARKERS:
            raise ValueError(f"unknown marker {words[0]}")
        marker = _MARKERS[words[0]]
        words = words[1:]
    if len(words) < 3:
        raise ValueError("expected: host patterns, key type, key")
    hosts, key_type, encoded = words[:3]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("the key is not base64") from None
    try:
        inner = blob_type(blob)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the key is not an SSH public key") from None
    if inner != key_type:
        raise ValueError(f"the key is {inner}, the line says {key_type}")
    return marker, hosts, key_type, blob


def read_entries(path: str, name: str, warn: Warn | None = None) -> list[Entry]:
    """The lines of ``path`` that apply to ``name``; corrupt lines are skipped with a warning naming file:line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if warn:
            warn(f"Cannot read {path}: {exc.strerror or exc}; its host keys are ignored")
        return []
    entries = []
    for number, text in enumerate(lines, 1):
        try:
            parsed = _parse(text)
            if parsed is None:
                continue
            marker, hosts, key_type, blob = parsed
            if _hosts_match(name, hosts):
                entries.append(Entry(path, number, marker, key_type, blob))
        except ValueError as exc:
            if warn:
                warn(f"{path}:{number}: skipping a corrupt known_hosts line ({exc})")
    return entries


# -- deciding ------------------------------------------------------------------------------------------

def fingerprint(key_type: str, blob: bytes) -> str:
    """``ssh-ed25519 SHA256:...`` as OpenSSH shows it."""
    return f"{key_type} SHA256:{base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip('=')}"


@dataclass(frozen=True)
class Decision:
    record_in: str | None = None  # the file the key is to be added to (accepted as new)
    warning: str | None = None  # accepted, but the user should know (a changed key with StrictHostKeyChecking no)
    unsafe: bool = False  # accepted although it changed: no forwarding over this connection (as OpenSSH)


def decide(host: str, port: int, key_type: str, blob: bytes, policy: Policy, warn: Warn | None = None) -> Decision:
    """Accept the server's key (a :class:`Decision`) or raise :class:`HostKeyError` with the reason."""
    name = policy.name(host, port)
    entries = _entries(name, policy, warn)
    shown = fingerprint(key_type, blob)
    revoked = next((e for e in entries if e.marker == "revoked" and e.blob == blob), None)
    if revoked:
        reason = f"host key {shown} is marked @revoked in {revoked.where}"
        if policy.strict == "no":  # OpenSSH connects then, without forwarding
            return Decision(unsafe=True, warning=f"{reason}; connecting anyway (StrictHostKeyChecking no), "
                                                 f"port forwarding disabled")
        raise HostKeyError(f"{reason}; refusing to connect")
    plain = [e for e in entries if e.marker is None]
    if any(e.blob == blob for e in plain):
        return Decision()
    authorities = [e for e in entries if e.marker == "cert-authority"]
    if authorities:
        # OpenSSH would ask the server for a host certificate signed by that CA; paramiko cannot verify one.
        raise HostKeyError(
            f"host keys for {name} are vouched for by a certificate authority ({authorities[0].where}), and "
            f"kamalpy's SSH transport cannot verify host certificates; refusing to connect. Add the host's own "
            f"key to known_hosts (ssh-keyscan) to connect")
    if plain:  # any other key recorded for the name, of any type (as OpenSSH 9)
        old = plain[0]
        reason = (f"host key changed: the server offers {shown}, {old.where} has "
                  f"{fingerprint(old.key_type, old.blob)}")
        if policy.strict == "no":
            return Decision(unsafe=True, warning=f"{reason}; connecting anyway (StrictHostKeyChecking no), "
                                                 f"port forwarding disabled")
        raise HostKeyError(f"{reason}; refusing to connect. If the change is expected, remove the old key: "
                           f"ssh-keygen -R {_shell_word(name)} -f {_shell_word(old.path)}")
    if name != host.lower() and not policy.alias:
        # OpenSSH's older way: the key recorded for the bare host name is good for every port (never recorded).
        bare = _entries(host.lower(), policy, None)
        if not any(e.marker == "revoked" and e.blob == blob for e in bare) and \
                any(e.marker is None and e.blob == blob for e in bare):
            return Decision()
    if policy.strict in ("yes", "ask"):
        why = ("you have requested strict checking" if policy.strict == "yes"
               else "StrictHostKeyChecking is ask, and a deploy cannot ask")
        files = " ".join(policy.user_files + policy.global_files) or "none"
        raise HostKeyError(f"no host key is known for {name} ({files}) and {why}; refusing to connect. "
                           f"Add the key first (ssh-keyscan, and compare the fingerprint {shown})")
    return Decision(record_in=policy.user_files[0] if policy.user_files else None)


def _entries(name: str, policy: Policy, warn: Warn | None) -> list[Entry]:
    return [e for path in policy.user_files + policy.global_files for e in read_entries(path, name, warn)]


def _shell_word(text: str) -> str:
    return text if all(c.isalnum() or c in "._-/:@%+=," for c in text) else '"' + text + '"'


def record(path: str, name: str, key_type: str, blob: bytes, hashed: bool = False) -> None:
    """Append ``name key_type key`` to ``path`` (creating it and its directory), hashed if asked."""
    line = f"{hash_name(name) if hashed else name} {key_type} {base64.b64encode(blob).decode()}\n"
    with _WRITE_LOCK:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(path, "a+") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell():
                handle.seek(handle.tell() - 1)
                if handle.read(1) != "\n":
                    line = "\n" + line
            handle.write(line)


def known_types(host: str, port: int, policy: Policy, types: Iterable[str]) -> list[str]:
    """Of ``types`` (host key algorithms), those a plain known key exists for: to be offered first, as OpenSSH."""
    entries = _entries(policy.name(host, port), policy, None)
    have = {e.key_type for e in entries if e.marker is None}
    rsa = {"ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"}
    return [t for t in types if t in have or (t in rsa and "ssh-rsa" in have)]
