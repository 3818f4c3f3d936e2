"""Load-time checks of values Kamal only uses later: wrong types, and values unsafe in a remote shell.

Kamal accepts some values when the configuration loads and fails on them midway through a deploy
(``ssh.port: x``, ``boot.limit: x``, ``cmd: false``, a ``files:`` entry without ``:``); kamalpy refuses
them here, before any lock or server is touched, naming the key.

Kamal also puts some values into the remote shell command line unquoted (host names, image, registry
server, volumes, label and env keys, accessory paths, version, destination, ...). Each kind of value has
a conservative character class that covers what Docker, SSH and the file system accept for it; a value
outside it is refused here, naming the key, so every value that passes keeps Kamal's exact string and
can never run a command. ``cmd`` is a shell command by design (the user's own) and stays free-form.
docs/moving-from-kamal.md lists the classes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamalpy.errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration


@dataclass(frozen=True)
class Kind:
    """What can pass safely for one kind of value: a pattern over the whole value, and a length bound."""

    description: str
    pattern: re.Pattern[str]
    max_length: int = 255

    def allows(self, value: str) -> bool:
        return len(value) <= self.max_length and self.pattern.fullmatch(value) is not None


# Nothing in these classes is special to sh: no space, quote, `;&|<>()`, backquote, `\`, `*?[]{}`, `#`,
# `!` or newline, no `$` but in `$NAME`/`${NAME}` (PATH), and no leading `-` (a command would read an option).
_SHELL_VARIABLE = r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})"
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # Docker's tag and container-name alphabet
DESTINATION = Kind("letters, digits and . _ - (at most 100, not starting with . or -)", _WORD, 100)
VERSION = Kind("a Docker tag: letters, digits and . _ - (at most 128, not starting with . or -)", _WORD, 128)
# Kamal writes IPv6 addresses in brackets itself (`--publish [::1]:80:80`), so a bracketed address passes.
HOST = Kind("a host name or IP address: letters, digits and . _ - : % @, or [IPv6]",
            re.compile(r"[A-Za-z0-9_.:%@][A-Za-z0-9_.:%@-]*|\[[A-Za-z0-9_.:%]+\](?::[0-9]+)?"), 255)
IMAGE = Kind("an image reference: letters, digits and . _ - / : @",
             re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./:@-]*"), 512)
REGISTRY = Kind("a registry host[:port][/path]: letters, digits and . _ - / :",
                re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./:-]*"), 255)
NAME = Kind("letters, digits and . _ - (not starting with . or -)", _WORD, 255)
KEY = Kind("letters, digits and . _ - / : (not starting with -)",
           re.compile(r"[A-Za-z0-9_.:/][A-Za-z0-9_.:/-]*"), 255)
PATH = Kind("a path: letters, digits, . _ - / + = , @ ~ % : and $VAR or ${VAR}",
            re.compile(rf"(?:[A-Za-z0-9_./+=,@~%:]|{_SHELL_VARIABLE})(?:[A-Za-z0-9_./+=,@~%:-]|{_SHELL_VARIABLE})*"),
            4096)
MODE = Kind("a file mode: octal digits, or u g o a + - = r w x X s t and ,",
            re.compile(r"[0-7ugoa+=rwxXst,][0-7ugoa+=rwxXst,-]*"), 64)
OWNER = Kind("user[:group]: letters, digits and . _ - :", re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*"), 255)


def refuse(key: str, value: Any, kind: Kind) -> ConfigurationError:
    shown = str(value)
    shown = shown if len(shown) <= 60 else shown[:60] + "..."
    return ConfigurationError(f"{key}: {shown!r} cannot be passed safely to a remote shell; "
                              f"use {kind.description}")


def check(key: str, value: Any, kind: Kind) -> None:
    """Refuse ``value`` (as Ruby's ``to_s`` shows it) unless ``kind`` allows it; nothing to check for nil."""
    if value is None:
        return
    text = "true" if value is True else "false" if value is False else str(value)
    if not kind.allows(text):
        raise refuse(key, text, kind)


def check_destination(destination: str | None) -> None:
    """``-d``/``--destination``: also a file name (``deploy.DEST.yml``) and part of container names."""
    if destination is not None and not DESTINATION.allows(destination):
        raise refuse("-d/--destination", destination, DESTINATION)


def check_version(version: str | None, key: str = "--version") -> None:
    """``--version`` or ``VERSION``: a Docker tag (and part of container names)."""
    if version is not None and not VERSION.allows(version):
        raise refuse(key, version, VERSION)


# ----- the whole configuration -----

def check_configuration(config: Configuration) -> None:
    """Every check of this module, in the order of the configuration's keys."""
    raw = config.raw
    _check_types(config)
    check("image", raw.get("image"), IMAGE)
    _check_registry("registry", raw.get("registry"))
    _check_labels("labels", raw.get("labels"))
    _check_env("env", raw.get("env"))
    _check_each("volumes", raw.get("volumes"), PATH)
    check("asset_path", raw.get("asset_path"), PATH)
    _check_logging("logging", raw.get("logging"))
    _check_options("options", raw.get("options"))
    _check_proxy("proxy", raw.get("proxy"))
    for role in config.roles:
        context = f"servers/{role.name}"
        check("servers", role.name, NAME)
        for host in role.hosts:
            check(f"{context}/hosts", host, HOST)
        settings = role.settings
        _check_labels(f"{context}/labels", settings.get("labels"))
        _check_env(f"{context}/env", settings.get("env"))
        check(f"{context}/asset_path", settings.get("asset_path"), PATH)
        _check_logging(f"{context}/logging", settings.get("logging"))
        _check_options(f"{context}/options", settings.get("options"))
        _check_proxy(f"{context}/proxy", settings.get("proxy"))
    for accessory in config.accessories:
        context = accessory.context
        settings = accessory.raw
        check(f"{context}/service", settings.get("service"), NAME)
        check(f"{context}/image", settings.get("image"), IMAGE)
        _check_registry(f"{context}/registry", settings.get("registry"))
        for host in accessory.hosts:
            check(f"{context}/hosts", host, HOST)
        _check_labels(f"{context}/labels", settings.get("labels"))
        _check_env(f"{context}/env", settings.get("env"))
        _check_each(f"{context}/volumes", settings.get("volumes"), PATH)
        _check_options(f"{context}/options", settings.get("options"))
        _check_proxy(f"{context}/proxy", settings.get("proxy"))
        for key in ("files", "directories"):
            _check_mounted_paths(f"{context}/{key}", settings.get(key), files=key == "files")
    if config.destination is not None:
        check_destination(config.destination)
    config.secrets.check_readable()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _check_each(key: str, values: Any, kind: Kind) -> None:
    for index, value in enumerate(values or []):
        check(f"{key}/{index}", value, kind)


def _check_keys(key: str, mapping: Any, kind: Kind = KEY) -> None:
    for name in _mapping(mapping):
        check(key, name, kind)


def _check_labels(key: str, labels: Any) -> None:
    _check_keys(key, labels)


def _check_options(key: str, options: Any) -> None:
    _check_keys(key, options)


def _check_logging(key: str, logging: Any) -> None:
    _check_keys(f"{key}/options", _mapping(logging).get("options"))


def _check_env(key: str, env: Any) -> None:
    env = _mapping(env)
    if any(name in env for name in ("clear", "secret", "tags")):
        _check_keys(f"{key}/clear", env.get("clear"))
        for tag, tag_env in _mapping(env.get("tags")).items():
            _check_env(f"{key}/tags/{tag}", tag_env)
    else:
        _check_keys(key, env)


def _check_proxy(key: str, proxy: Any) -> None:
    """``proxy.run`` becomes the proxy container's ``docker run`` line (ports are integers, by the schema)."""
    proxy = _mapping(proxy)
    run = _mapping(proxy.get("run"))
    check(f"{key}/run/registry", run.get("registry"), REGISTRY)
    check(f"{key}/run/repository", run.get("repository"), IMAGE)
    check(f"{key}/run/version", run.get("version"), VERSION)
    check(f"{key}/run/log_max_size", run.get("log_max_size"), NAME)
    _check_each(f"{key}/run/bind_ips", run.get("bind_ips"), HOST)
    _check_options(f"{key}/run/options", run.get("options"))
    check(f"{key}/caddy/probe_image", _mapping(proxy.get("caddy")).get("probe_image"), IMAGE)


def _check_registry(key: str, registry: Any) -> None:
    check(f"{key}/server", _mapping(registry).get("server"), REGISTRY)


def _check_mounted_paths(key: str, entries: Any, *, files: bool) -> None:
    """``files:``/``directories:``: ``local:remote[:options]`` or a hash; remote paths reach the shell."""
    for index, entry in enumerate(entries or []):
        where = f"{key}/{index}"
        if isinstance(entry, Mapping):
            local, remote, options = entry.get("local"), entry.get("remote"), entry.get("options")
            check(f"{where}/mode", entry.get("mode"), MODE)
            check(f"{where}/owner", entry.get("owner"), OWNER)
        else:
            parts = str(entry).split(":", 2)
            local, remote, options = parts[0], (parts[1] if len(parts) > 1 else None), (parts[2:] or [None])[0]
        if local is None or remote is None or str(local) == "" or str(remote) == "":
            raise ConfigurationError(f"{where}: should be local:remote[:options] or a hash with local and remote")
        # A directory's local path is also its path on the server; a file's is only read here.
        if files:
            _check_local_file(where, str(local))
        else:
            check(where, local, PATH)
        check(where, remote, PATH)
        check(where, options, PATH)


def _check_local_file(key: str, local: str) -> None:
    if Path(local).is_dir():
        raise ConfigurationError(f"{key}: {local} is a directory, not a file (use directories: for directories)")


# ----- types Kamal's schema lets through and fails on later -----

_PORT = re.compile(r"\s*\d{1,5}\s*")
_LIMIT = re.compile(r"\s*\d+\s*%?\s*")


def _check_types(config: Configuration) -> None:
    raw = config.raw
    port = _mapping(raw.get("ssh")).get("port")
    if port is not None and (isinstance(port, bool) or not _PORT.fullmatch(str(port)) or not 0 < int(port) < 65536):
        raise ConfigurationError(f"ssh/port: should be a port number (1-65535), not {port!r}")
    limit = _mapping(raw.get("boot")).get("limit")
    if limit is not None and (isinstance(limit, (bool, float)) or not _LIMIT.fullmatch(str(limit))
                              or int(str(limit).strip().rstrip("%")) < 1):
        raise ConfigurationError(f"boot/limit: should be a number of hosts or a percentage like 25%, not {limit!r}")
    for role in config.roles:
        _check_command(f"servers/{role.name}/cmd", role.settings.get("cmd"))
    for accessory in config.accessories:
        _check_command(f"{accessory.context}/cmd", accessory.raw.get("cmd"))


def _check_command(key: str, value: Any) -> None:
    # A shell command by design (the user's own); only its type is checked.
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
        raise ConfigurationError(f"{key}: should be a string")
