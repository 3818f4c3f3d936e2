"""Kamal's docker command lines as Docker Engine API requests, with the docker CLI's output and exit status.

:func:`translate` takes the line the shell would run and answers a :data:`Plan` (a function of an :class:`Api`)
or None when the line is anything it does not understand exactly: then the shell runs it, as without the
plugin. A plan that meets something unexpected raises :class:`Fallback` before it has changed anything on the
server (a reading plan may raise it at any point), and the shell runs the line after all.

Understood: ``docker ps`` / ``docker container ls`` (``--all --quiet --latest --last --filter --no-trunc``,
``--format`` of ``{{.Names}}`` or ``{{.ID}}``), ``docker run --detach`` (name, env, env files, labels,
restart policy, log driver and options, network, hostname, volumes, command), ``docker start``, ``docker stop``
(``-t``), ``docker rename``, ``docker tag``, ``docker pull``, ``docker image prune``, ``docker network create``
of an existing network, ``docker info --format '{{index .RegistryConfig.Mirrors 0}}'``, and Kamal's pipelines
around them: the version of a container name (``| while read line; do echo ${line#PREFIX}; done``), the
running container (``sh -c 'docker ps --latest ... ancestor=$(docker image ls ...) ; docker ps --latest ...' |
head -1``), ``... --quiet | xargs docker stop``, and the image's ``service`` label check.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from kamalpy_engine_api.words import unquote_single, words


class Fallback(Exception):  # noqa: N818 - a signal, not an error
    """The step goes to the shell. Raised only before the plan changed anything on the server."""


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def message(self) -> str:
        """The daemon's error message (``{"message": ...}``)."""
        try:
            return str(self.json().get("message", "")).strip()
        except (ValueError, AttributeError):
            return self.body.decode(errors="replace").strip()


class Api(Protocol):
    def call(self, method: str, path: str, query: Mapping[str, str] | None = None, body: Any = None,
             headers: Mapping[str, str] | None = None) -> Reply:
        """One request; ``body`` is sent as JSON. Raises on a lost connection, never for an HTTP status."""

    def read_file(self, path: str) -> bytes | None:
        """A file on the server (relative to the login directory), None when it cannot be read."""


@dataclass
class Outcome:
    status: int
    stdout: str = ""
    stderr: str = ""


Plan = Callable[[Api], Outcome]


# ----- the docker CLI's flags -----

BOOL, VALUE, LIST = "bool", "value", "list"


def parse(args: list[str], spec: Mapping[str, tuple[str, str]],
          interspersed: bool = True) -> tuple[dict[str, Any], list[str]] | None:
    """(options by name, positional arguments) as the docker CLI (pflag) reads ``args``; None for anything else.

    ``spec`` maps each flag spelling (``-a``, ``--all``) to (name, kind). An unknown flag, ``--``, or a flag
    missing its value is None.
    """
    opts: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if positional and not interspersed:
            positional.append(arg)
            i += 1
            continue
        if arg == "--" or arg == "-":
            return None
        if arg.startswith("--"):
            flag, eq, value = arg.partition("=")
            if flag not in spec:
                return None
            name, kind = spec[flag]
            if kind == BOOL:
                if eq and value not in ("true", "false"):
                    return None
                opts[name] = value != "false" if eq else True
            else:
                taken = _value_at(args, i, value if eq else None)
                if taken is None:
                    return None
                value, i = taken
                _store(opts, name, kind, value)
        elif arg.startswith("-"):
            j = 1
            while j < len(arg):
                flag = "-" + arg[j]
                if flag not in spec:
                    return None
                name, kind = spec[flag]
                if kind == BOOL:
                    opts[name] = True
                    j += 1
                    continue
                taken = _value_at(args, i, arg[j + 1:].removeprefix("=") or None)
                if taken is None:
                    return None
                value, i = taken
                _store(opts, name, kind, value)
                break
        else:
            positional.append(arg)
        i += 1
    return opts, positional


def _value_at(args: list[str], i: int, attached: str | None) -> tuple[str, int] | None:
    """(a flag's value, the index of its last argument): ``attached`` to the flag, else the next argument."""
    if attached is not None:
        return attached, i
    return (args[i + 1], i + 1) if i + 1 < len(args) else None


def _store(opts: dict[str, Any], name: str, kind: str, value: str) -> None:
    if kind == LIST:
        opts.setdefault(name, []).append(value)
    else:
        opts[name] = value


def _flags(*entries: tuple[str, str, str]) -> dict[str, tuple[str, str]]:
    """``("-a", "--all", BOOL)`` entries (short may be ""): a spec for :func:`parse`."""
    spec = {}
    for short, long, kind in entries:
        name = long.lstrip("-")
        if short:
            spec[short] = (name, kind)
        spec[long] = (name, kind)
    return spec


def filters_query(values: list[str]) -> str:
    """The ``filters`` query parameter as the docker CLI sends it: ``{"key": {"value": true}}``."""
    found: dict[str, dict[str, bool]] = {}
    for value in values:
        key, eq, rest = value.partition("=")
        if not eq:
            raise Fallback  # the CLI refuses it ("bad format of filter")
        found.setdefault(key.strip().lower(), {})[rest] = True
    return json.dumps(found, separators=(",", ":"))


def daemon_error(reply: Reply, prefix: str = "", status: int = 1) -> Outcome:
    return Outcome(status, "", f"{prefix}Error response from daemon: {reply.message}\n")


def short_id(full: str) -> str:
    return full.removeprefix("sha256:")[:12]


# ----- image references (the docker CLI's normalisation) -----

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DOMAIN = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*"
                     r"(?::[0-9]+)?$")
DOCKER_HUB = "docker.io"
HUB_AUTH_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"


def reference(text: str) -> Reference:
    """``registry/path:tag`` normalised as the CLI does (Docker Hub, ``library/``).

    Fallback for a digest or a name the CLI would refuse."""
    if "@" in text or not text:
        raise Fallback
    name, tag = text, None
    last = text.rfind(":")
    if last > text.rfind("/"):
        name, tag = text[:last], text[last + 1:]
        if not _TAG.match(tag):
            raise Fallback
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN.match(first):
            raise Fallback
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, name
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not all(_COMPONENT.match(part) for part in path.split("/")):
        raise Fallback
    return Reference(domain, path, tag)


# ----- docker ps / docker container ls -----

PS_FLAGS = _flags(("-a", "--all", BOOL), ("-q", "--quiet", BOOL), ("-l", "--latest", BOOL),
                  ("-n", "--last", VALUE), ("-f", "--filter", LIST), ("", "--format", VALUE),
                  ("", "--no-trunc", BOOL))
FORMATS = {"{{.Names}}": "Names", "{{.ID}}": "ID"}


@dataclass
class Listing:
    """A parsed ``docker ps``: the query and how each container is printed."""

    query: dict[str, str]
    field: str  # "ID" or "Names"
    trunc: bool

    def lines(self, api: Api) -> list[str] | Outcome:
        reply = api.call("GET", "/containers/json", self.query)
        if reply.status != 200:
            return daemon_error(reply)
        return [self.show(c) for c in reply.json()]

    def show(self, container: Mapping[str, Any]) -> str:
        if self.field == "ID":
            return container["Id"] if not self.trunc else container["Id"][:12]
        names = [n[1:] if n.startswith("/") else n for n in container.get("Names") or []]
        if self.trunc:
            names = next(([n] for n in names if "/" not in n), names)
        return ",".join(names)


def listing(args: list[str]) -> Listing | None:
    parsed = parse(args, PS_FLAGS)
    if parsed is None or parsed[1]:
        return None
    opts, _ = parsed
    if opts.get("quiet") and "format" in opts:
        return None
    if opts.get("quiet"):
        field_ = "ID"
    elif opts.get("format") in FORMATS:
        field_ = FORMATS[opts["format"]]
    else:
        return None  # the table (or a user's psFormat) is the CLI's to print
    query: dict[str, str] = {}
    if opts.get("all"):
        query["all"] = "1"
    last = opts.get("last", "-1")
    if not re.fullmatch(r"-?\d+", last):
        return None
    limit = int(last)
    if opts.get("latest") and limit == -1:
        limit = 1
    if limit > 0:
        query["limit"] = str(limit)
    try:
        if opts.get("filter"):
            query["filters"] = filters_query(opts["filter"])
    except Fallback:
        return None
    return Listing(query, field_, not opts.get("no-trunc"))


def ps_plan(found: Listing) -> Plan:
    def plan(api: Api) -> Outcome:
        lines = found.lines(api)
        if isinstance(lines, Outcome):
            return lines
        return Outcome(0, "".join(f"{line}\n" for line in lines))

    return plan


# ----- docker run --detach -----

RUN_FLAGS = _flags(("-d", "--detach", BOOL), ("", "--restart", VALUE), ("", "--name", VALUE),
                   ("", "--network", VALUE), ("", "--net", VALUE), ("-h", "--hostname", VALUE),
                   ("-e", "--env", LIST), ("", "--env-file", LIST), ("", "--log-opt", LIST),
                   ("", "--log-driver", VALUE), ("-l", "--label", LIST), ("-v", "--volume", LIST))
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_KEY_SPACE = re.compile(r"\s")
RUN_HELP = "\nRun 'docker run --help' for more information\n"


def restart_policy(value: str) -> dict[str, Any]:
    name, colon, count = value.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure") or (colon and name != "on-failure"):
        raise Fallback
    if colon and not count.isdigit():
        raise Fallback
    return {"Name": name, "MaximumRetryCount": int(count) if colon else 0}


def env_file_lines(data: bytes) -> list[str]:
    """The docker CLI's ``--env-file``: ``KEY=VALUE`` lines taken as they are; comments and blank lines skipped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Fallback from None
    text = text.removeprefix("\ufeff")
    found = []
    for raw in text.split("\n"):
        line = raw.removesuffix("\r").lstrip(" \t\v\f\r\n")
        if not line or line.startswith("#"):
            continue
        key, eq, _ = line.partition("=")
        if not eq or not key or _ENV_KEY_SPACE.search(key):
            raise Fallback  # from the CLI's own environment, or refused: the CLI's business
        found.append(line)
    return found


def binds(volumes: list[str]) -> list[str]:
    for volume in volumes:
        parts = volume.split(":")
        if len(parts) not in (2, 3) or not parts[1].startswith("/"):
            raise Fallback
        if not (parts[0].startswith("/") or _VOLUME_NAME.match(parts[0])):
            raise Fallback
        if len(parts) == 3 and not re.fullmatch(r"(?:ro|rw|z|Z)(?:,(?:ro|rw|z|Z))*", parts[2]):
            raise Fallback
    return list(volumes)


def labels(values: list[str]) -> dict[str, str]:
    found = {}
    for value in values:
        key, _, rest = value.partition("=")
        found[key] = rest
    return found


# What the docker CLI sends empty rather than null (dockerd keeps the difference, `docker inspect` shows it).
CLI_EMPTY_HOST_CONFIG: dict[str, Any] = {
    **{key: [] for key in ("BlkioDeviceReadBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteBps", "BlkioDeviceWriteIOps",
                           "BlkioWeightDevice", "Devices", "Dns", "DnsOptions", "DnsSearch", "Ulimits")},
    "PortBindings": {}}


def run_error(reply: Reply, status: int) -> Outcome:
    """``docker run``'s failure: the daemon's message with the CLI's prefix and hint, exit 125 (126, 127)."""
    return Outcome(status, "", f"docker: Error response from daemon: {reply.message}\n{RUN_HELP}")


def run_plan(args: list[str], files: Mapping[str, bytes]) -> Plan | None:
    parsed = parse(args, RUN_FLAGS, interspersed=False)
    if parsed is None:
        return None
    opts, positional = parsed
    if not opts.get("detach") or not opts.get("name") or not positional:
        return None
    env = opts.get("env", [])
    if any("=" not in e for e in env):
        return None
    try:
        image = positional[0]
        reference(image)
        policy = restart_policy(opts.get("restart", "no"))
        volumes = binds(opts.get("volume", []))
        log_config = {"Type": opts.get("log-driver", ""), "Config": labels(opts.get("log-opt", []))}
    except Fallback:
        return None
    network = opts.get("network", opts.get("net"))
    name = opts["name"]

    def plan(api: Api) -> Outcome:
        variables = []
        for path in opts.get("env-file", []):
            data = files.get(path)
            if data is None:
                data = api.read_file(path)
            if data is None:
                raise Fallback  # the CLI says why it cannot read it
            variables += env_file_lines(data)
        config: dict[str, Any] = {
            "Hostname": opts.get("hostname", ""), "Env": variables + env, "Cmd": positional[1:] or None,
            "Image": image, "Labels": labels(opts.get("label", [])), "AttachStdin": False, "AttachStdout": False,
            "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False,
            "HostConfig": {"Binds": volumes or None, "LogConfig": log_config, "RestartPolicy": policy,
                           "NetworkMode": network or "default", **CLI_EMPTY_HOST_CONFIG},
        }
        if network:
            config["NetworkingConfig"] = {"EndpointsConfig": {network: {}}}
        created = api.call("POST", "/containers/create", {"name": name}, config)
        if created.status == 404 and "No such image" in created.message:
            raise Fallback  # the CLI pulls it first: nothing was created
        if created.status != 201:
            return run_error(created, 125)
        container = created.json()["Id"]
        started = api.call("POST", f"/containers/{container}/start")
        if started.status not in (204, 304):
            message = started.message
            status = 127 if "executable file not found" in message or "no such file or directory" in message \
                else 126 if "permission denied" in message else 125
            return run_error(started, status)
        return Outcome(0, f"{container}\n")

    return plan


# ----- docker start / stop / rename / tag -----

STOP_FLAGS = _flags(("-t", "--time", VALUE), ("", "--timeout", VALUE))


def each_container_plan(action: str, names: list[str], query: Mapping[str, str]) -> Plan:
    """``docker start|stop NAME...``: each name printed once done, errors on stderr, exit 1 if any failed."""
    def plan(api: Api) -> Outcome:
        out, err = [], []
        for name in names:
            reply = api.call("POST", f"/containers/{quote(name, safe='')}/{action}", query)
            if reply.status in (204, 304):
                out.append(f"{name}\n")
            else:
                err.append(f"Error response from daemon: {reply.message}\n")
        return Outcome(1 if err else 0, "".join(out), "".join(err))

    return plan


def stop_plan(args: list[str]) -> Plan | None:
    parsed = parse(args, STOP_FLAGS)
    if parsed is None:
        return None
    opts, names = parsed
    timeout = opts.get("timeout", opts.get("time"))
    if timeout is not None and not re.fullmatch(r"-?\d+", timeout):
        return None
    if not names:
        return lambda api: Outcome(1, "", STOP_NEEDS_ARGUMENT)
    return each_container_plan("stop", names, {"t": timeout} if timeout is not None else {})


STOP_NEEDS_ARGUMENT = ("\"docker stop\" requires at least 1 argument.\nSee 'docker stop --help'.\n\n"
                       "Usage:  docker stop [OPTIONS] CONTAINER [CONTAINER...]\n\n"
                       "Stop one or more running containers\n")


def start_plan(args: list[str]) -> Plan | None:
    if not args or any(a.startswith("-") for a in args):
        return None
    return each_container_plan("start", args, {})


def rename_plan(args: list[str]) -> Plan | None:
    if len(args) != 2 or any(a.startswith("-") or not a.strip() for a in args):
        return None
    old, new = args

    def plan(api: Api) -> Outcome:
        reply = api.call("POST", f"/containers/{quote(old, safe='')}/rename", {"name": new})
        return Outcome(0) if reply.status == 204 else daemon_error(reply)

    return plan


def tag_plan(args: list[str]) -> Plan | None:
    if len(args) != 2 or any(a.startswith("-") for a in args):
        return None
    source, target = args
    try:
        reference(source)
        ref = reference(target)
    except Fallback:
        return None

    def plan(api: Api) -> Outcome:
        query = {"repo": ref.name, "tag": ref.tag or "latest"}
        reply = api.call("POST", f"/images/{quote(source, safe='')}/tag", query)
        return Outcome(0) if reply.status in (200, 201) else daemon_error(reply)

    return plan


# ----- docker pull -----

def registry_auth(config: bytes | None, ref: Reference) -> str:
    """``X-Registry-Auth`` for ``ref`` from the server's ``~/.docker/config.json`` as the CLI reads it.

    Fallback when a credential store or helper holds the credentials (the CLI runs it).
    """
    try:
        parsed = json.loads(config) if config else {}
    except ValueError:
        raise Fallback from None
    if not isinstance(parsed, dict) or parsed.get("credsStore") or parsed.get("credHelpers"):
        raise Fallback
    key = HUB_AUTH_KEY if ref.domain == DOCKER_HUB else ref.domain
    auths = parsed.get("auths") or {}
    entry = auths.get(key)
    if entry is None:  # the CLI also matches an entry written as a URL (https://host/...)
        entry = next((v for k, v in auths.items() if re.sub(r"^https?://", "", k).split("/")[0] == key), None)
    auth: dict[str, str] = {}
    if isinstance(entry, dict):
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise Fallback from None
            auth.update(username=user, password=password)
        for name, wire in (("identitytoken", "identitytoken"), ("registrytoken", "registrytoken")):
            if entry.get(name):
                auth[wire] = entry[name]
        auth["serveraddress"] = key
    return base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()


DOCKER_CONFIG = ".docker/config.json"


def pull_plan(args: list[str]) -> Plan | None:
    if len(args) != 1 or args[0].startswith("-"):
        return None
    try:
        ref = reference(args[0])
    except Fallback:
        return None
    shown = args[0] if ref.tag else f"{args[0]}:latest"

    def plan(api: Api) -> Outcome:
        header = registry_auth(api.read_file(DOCKER_CONFIG), ref)
        reply = api.call("POST", "/images/create", {"fromImage": ref.name, "tag": ref.tag or "latest"},
                         headers={"X-Registry-Auth": header})
        if reply.status != 200:
            return daemon_error(reply)
        out = []
        for line in reply.body.decode(errors="replace").splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("error"):
                return Outcome(1, "".join(out), f"{message['error']}\n")
            status = message.get("status")
            if status and not message.get("progressDetail"):
                out.append(f"{message['id']}: {status}\n" if message.get("id") else f"{status}\n")
        out.append(f"{shown}\n")
        return Outcome(0, "".join(out))

    return plan


# ----- docker image prune, network create, info -----

def human_size(size: float) -> str:
    """go-units' HumanSize: decimal units, 4 significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.4g}{units[i]}"


PRUNE_FLAGS = _flags(("-a", "--all", BOOL), ("-f", "--force", BOOL), ("", "--filter", LIST))


def image_prune_plan(args: list[str]) -> Plan | None:
    parsed = parse(args, PRUNE_FLAGS)
    if parsed is None or parsed[1] or not parsed[0].get("force"):
        return None
    opts = parsed[0]
    try:
        filters = filters_query([*opts.get("filter", []), f"dangling={'false' if opts.get('all') else 'true'}"])
    except Fallback:
        return None

    def plan(api: Api) -> Outcome:
        reply = api.call("POST", "/images/prune", {"filters": filters})
        if reply.status != 200:
            return daemon_error(reply)
        report = reply.json() or {}
        out = ""
        deleted = report.get("ImagesDeleted") or []
        if deleted:
            out = "Deleted Images:\n" + "".join(
                f"untagged: {d['Untagged']}\n" if d.get("Untagged") else f"deleted: {d.get('Deleted', '')}\n"
                for d in deleted) + "\n"
        return Outcome(0, out + f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}\n")

    return plan


def network_create_plan(args: list[str]) -> Plan | None:
    """``docker network create NAME`` when NAME exists: the CLI's refusal. A missing network: the CLI creates it."""
    if len(args) != 1 or args[0].startswith("-"):
        return None
    name = args[0]

    def plan(api: Api) -> Outcome:
        reply = api.call("GET", f"/networks/{quote(name, safe='')}")
        if reply.status != 200 or reply.json().get("Name") != name:
            raise Fallback
        return Outcome(1, "", f"Error response from daemon: network with name {name} already exists\n")

    return plan


MIRROR_FORMAT = "{{index .RegistryConfig.Mirrors 0}}"
NO_MIRROR = ('template: :1:2: executing "" at <index .RegistryConfig.Mirrors 0>: '
             "error calling index: reflect: slice index out of range\n")


def info_plan(args: list[str]) -> Plan | None:
    if args not in (["--format", MIRROR_FORMAT], ["-f", MIRROR_FORMAT], [f"--format={MIRROR_FORMAT}"]):
        return None

    def plan(api: Api) -> Outcome:
        reply = api.call("GET", "/info")
        if reply.status != 200:
            raise Fallback
        mirrors = ((reply.json() or {}).get("RegistryConfig") or {}).get("Mirrors") or []
        return Outcome(0, f"{mirrors[0]}\n") if mirrors else Outcome(1, "", NO_MIRROR)

    return plan


# ----- one docker command -----

def docker_plan(argv: list[str], files: Mapping[str, bytes]) -> Plan | None:
    if len(argv) < 2 or argv[0] != "docker":
        return None
    command, args = argv[1], argv[2:]
    if command == "container" and args:
        command, args = {"ls": "ps", "list": "ps", "ps": "ps"}.get(args[0], f"container {args[0]}"), args[1:]
    elif command in ("image", "network") and args:
        command, args = f"{command} {args[0]}", args[1:]
    if command == "ps":
        found = listing(args)
        return ps_plan(found) if found else None
    builders: dict[str, Callable[[list[str]], Plan | None]] = {
        "start": start_plan, "container start": start_plan, "stop": stop_plan, "container stop": stop_plan,
        "rename": rename_plan, "container rename": rename_plan, "tag": tag_plan, "image tag": tag_plan,
        "pull": pull_plan, "image pull": pull_plan, "image prune": image_prune_plan,
        "network create": network_create_plan, "info": info_plan, "system info": info_plan}
    if command in ("run", "container run"):
        return run_plan(args, files)
    builder = builders.get(command)
    return builder(args) if builder else None


# ----- Kamal's pipelines -----

_VERSION_OF_NAME = re.compile(r"^(?P<left>.+) \| while read line; do echo "
                              r"\$\{line#(?P<prefix>[A-Za-z0-9_.-]+)\}; done$")
_RUNNING = re.compile(r"^(?:/usr/bin/env )?sh -c (?P<script>'.*') \| head -1$")
_RUNNING_SCRIPT = re.compile(r"^(?P<with>docker ps --latest .+) --filter ancestor=\$\((?P<image>docker image ls "
                             r"--filter reference=[^ ]+ --format '\{\{\.ID\}\}')\) ; "
                             r"(?P<without>docker ps --latest .+)$")
_XARGS_STOP = re.compile(r"^(?P<left>.+) \| xargs docker stop(?P<args>(?: [^ |]+)*)$")
_SERVICE_LABEL = re.compile(r"^docker inspect -f '\{\{ \.Config\.Labels\.service \}\}' (?P<image>[^ ]+) \| "
                            r"grep -x (?P<service>[A-Za-z0-9_-]+) \|\| \(echo \"Image (?P=image) is missing the "
                            r"'service' label\" && exit 1\)$")


_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_START_OR = re.compile(rf"^docker container start (?P<name>{_NAME}) \|\| .+$")
_IMAGE_VERSION = re.compile(rf"^docker inspect (?P<name>{_NAME}) --format '\{{\{{\.Config\.Image\}}\}}' \| "
                            r"awk -F: '\{print \$NF\}'$")
_REMOVE_BEYOND = re.compile(r"^(?P<left>docker ps .+) \| tail -n \+(?P<skip>[0-9]+) \| while read container_id; "
                            r"do docker rm \$container_id; done$")


_PRUNE_IMAGES = re.compile(
    r"^docker image ls --filter label=(?P<label>[^ ]+) --format '\{\{\.ID\}\} \{\{\.Repository\}\}:\{\{\.Tag\}\}' "
    r"\| grep -v -w \"\$\(docker container ls -a --format '\{\{\.Image\}\}\\\|' --filter label=(?P=label) "
    r"\| tr -d '\\n'\)(?P<tail>[^\"$`*\[\]^]*)\" \| while read image tag; do docker rmi \$tag; done$")
_WORD_CHAR = "A-Za-z0-9_"


def lines_plan(line: str) -> Callable[[Api], list[str] | Outcome] | None:
    """A command whose output lines a pipeline reads: ``docker ps`` or Kamal's running-container script."""
    argv = words(line)
    if argv is not None:
        offset = 2 if argv[:2] == ["docker", "ps"] else 3 if argv[:2] == ["docker", "container"] and len(
            argv) > 2 and argv[2] in ("ls", "ps", "list") else 0
        found = listing(argv[offset:]) if offset else None
        return found.lines if found else None
    match = _RUNNING.match(line)
    if not match:
        return None
    script = unquote_single(match.group("script"))
    inner = _RUNNING_SCRIPT.match(script or "")
    if not inner:
        return None
    with_, without, image = (words(inner.group(k)) for k in ("with", "without", "image"))
    if with_ is None or without is None or image is None or with_ != without:
        return None
    both = listing(without[2:])
    images = parse(image[3:], _flags(("", "--filter", LIST), ("", "--format", VALUE)))
    if both is None or images is None or images[1]:
        return None
    image_query = {"filters": filters_query(images[0]["filter"])}

    def running(api: Api) -> list[str] | Outcome:
        reply = api.call("GET", "/images/json", image_query)
        if reply.status != 200:
            raise Fallback
        ids = [short_id(i["Id"]) for i in reply.json() for _ in range(max(1, len(i.get("RepoTags") or [])))]
        if len(ids) > 1:
            raise Fallback  # the shell would split them into several words
        found: list[str] = []
        if ids:
            with_image = Listing({**both.query, "filters": filters_query(
                [*json_filters(both.query), f"ancestor={ids[0]}"])}, both.field, both.trunc).lines(api)
            if isinstance(with_image, Outcome):
                raise Fallback
            found += with_image
        rest = both.lines(api)
        if isinstance(rest, Outcome):
            raise Fallback
        return (found + rest)[:1]

    return running


def json_filters(query: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, values in json.loads(query.get("filters", "{}")).items() for value in values]


def start_or_plan(name: str) -> Plan:
    """``docker container start NAME || ...``: a container that starts ends it; otherwise the shell runs it all."""
    def plan(api: Api) -> Outcome:
        reply = api.call("POST", f"/containers/{quote(name, safe='')}/start")
        if reply.status not in (204, 304):
            raise Fallback  # nothing started: the shell tries again and goes on to the rest of the line
        return Outcome(0, f"{name}\n")

    return plan


def image_version_plan(name: str) -> Plan:
    """``docker inspect NAME --format '{{.Config.Image}}' | awk -F: '{print $NF}'``: the image's tag."""
    def plan(api: Api) -> Outcome:
        reply = api.call("GET", f"/containers/{quote(name, safe='')}/json")
        if reply.status != 200:
            raise Fallback  # no such container: the CLI looks for an image of that name next
        image = str(((reply.json() or {}).get("Config") or {}).get("Image") or "")
        return Outcome(0, image.split(":")[-1] + "\n")

    return plan


def remove_beyond_plan(source: Listing, skip: int) -> Plan:
    """``docker ps -q ... | tail -n +N | while read container_id; do docker rm $container_id; done``."""
    def plan(api: Api) -> Outcome:
        found = source.lines(api)
        if isinstance(found, Outcome):
            raise Fallback
        status, out, err = 0, [], []
        for container in found[max(0, skip - 1):]:
            reply = api.call("DELETE", f"/containers/{quote(container, safe='')}")
            status = 0 if reply.status == 204 else 1  # the loop's status is its last command's
            if status:
                err.append(f"Error response from daemon: {reply.message}\n")
            else:
                out.append(f"{container}\n")
        return Outcome(status, "".join(out), "".join(err))

    return plan


def image_lines(image: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(ID, REPOSITORY:TAG) lines of one image, as ``docker image ls --format '{{.ID}} {{.Repository}}:{{.Tag}}'``."""
    tags: dict[str, list[str]] = {}
    for ref in image.get("RepoTags") or []:
        cut = ref.rfind(":")
        if cut <= ref.rfind("/"):
            raise Fallback
        tags.setdefault(ref[:cut], []).append(ref[cut + 1:])
    digested = [ref.partition("@")[0] for ref in image.get("RepoDigests") or []]
    lines = [f"{repo}:{tag}" for repo, found in tags.items() for tag in found]
    lines += [f"{repo}:<none>" for repo in dict.fromkeys(digested) if repo not in tags]
    return [(short_id(image["Id"]), line) for line in lines or ["<none>:<none>"]]


def truncate_id(text: str) -> str:
    """stringid.TruncateID: what follows the first ``:``, at most 12 characters."""
    return text.partition(":")[2][:12] if ":" in text else text[:12]


def container_image(container: Mapping[str, Any]) -> str:
    """``{{.Image}}`` of ``docker container ls``: the image's short ID when the name no longer leads to it, else the
    familiar name (and tag)."""
    image = str(container.get("Image") or "")
    if not image:
        return "<no image>"
    if truncate_id(str(container.get("ImageID") or "")) == truncate_id(image):
        return truncate_id(image)
    ref = reference(image)
    path = ref.path.removeprefix("library/") if ref.domain == DOCKER_HUB and ref.path.count("/") == 1 else ref.path
    name = path if ref.domain == DOCKER_HUB else f"{ref.domain}/{path}"
    return f"{name}:{ref.tag}" if ref.tag else name


def word_pattern(alternatives: list[str]) -> re.Pattern[str]:
    """GNU ``grep -w`` of a basic regular expression made of ``\\|`` alternatives where only ``.`` is special."""
    if any(not a or set(a) & set("*[]^$\\") for a in alternatives):
        raise Fallback
    body = "|".join("".join("." if c == "." else re.escape(c) for c in a) for a in alternatives)
    return re.compile(rf"(?<![{_WORD_CHAR}])(?:{body})(?![{_WORD_CHAR}])")


def prune_images_plan(label: str, tail: str) -> Plan:
    """Kamal's removal of the service's images no container uses, but the latest (``docker image ls ... | grep -v -w
    "$(docker container ls -a --format '{{.Image}}\\|' ...)LATEST\\|REPO:<none>" | while read image tag; do
    docker rmi $tag; done``). Every line is decided before the first removal."""
    filters = filters_query([f"label={label}"])

    def plan(api: Api) -> Outcome:
        images = api.call("GET", "/images/json", {"filters": filters})
        containers = api.call("GET", "/containers/json", {"all": "1", "filters": filters})
        if images.status != 200 or containers.status != 200:
            raise Fallback
        used = "".join(f"{container_image(c)}\\|" for c in containers.json())
        keep = word_pattern((used + tail).split("\\|"))
        doomed = [tag for image in images.json() for _, tag in image_lines(image)
                  if not keep.search(f"{short_id(image['Id'])} {tag}")]
        if any(tag == "<none>:<none>" or set(tag) & set("*?[ ") for tag in doomed):
            raise Fallback  # the shell's word splitting and the CLI's refusal are the shell's
        status, out, err = 0, [], []
        for tag in doomed:
            reply = api.call("DELETE", f"/images/{quote(tag, safe='')}")
            status = 0 if reply.status == 200 else 1  # the loop's status is its last command's
            if status:
                err.append(f"Error response from daemon: {reply.message}\n")
                continue
            for item in reply.json() or []:
                out += [f"Untagged: {item['Untagged']}\n"] if item.get("Untagged") else []
                out += [f"Deleted: {item['Deleted']}\n"] if item.get("Deleted") else []
        return Outcome(status, "".join(out), "".join(err))

    return plan


def pipeline_plan(line: str) -> Plan | None:
    match = _PRUNE_IMAGES.match(line)
    if match:
        return prune_images_plan(match.group("label"), match.group("tail"))
    match = _START_OR.match(line)
    if match:
        return start_or_plan(match.group("name"))
    match = _IMAGE_VERSION.match(line)
    if match:
        return image_version_plan(match.group("name"))
    match = _REMOVE_BEYOND.match(line)
    if match:
        argv = words(match.group("left"))
        found = listing(argv[2:]) if argv else None
        if found is None or found.field != "ID":
            return None
        return remove_beyond_plan(found, int(match.group("skip")))
    match = _VERSION_OF_NAME.match(line)
    if match:
        source, prefix = lines_plan(match.group("left")), match.group("prefix")
        if source is None:
            return None

        def versions(api: Api) -> Outcome:
            found = source(api)
            if isinstance(found, Outcome):  # the loop's status is the pipeline's: 0, the error on stderr
                return Outcome(0, "", found.stderr)
            return Outcome(0, "".join(f"{n.removeprefix(prefix)}\n" for n in found))

        return versions
    match = _XARGS_STOP.match(line)
    if match:
        source = lines_plan(match.group("left"))
        stop_args = words(match.group("args").strip()) if match.group("args") else []
        if source is None or stop_args is None or parse(stop_args, STOP_FLAGS) is None or parse(
                stop_args, STOP_FLAGS)[1]:
            return None

        def stop(api: Api) -> Outcome:
            found = source(api)
            if isinstance(found, Outcome):
                raise Fallback
            plan = stop_plan([*stop_args, *found])
            if plan is None:
                raise Fallback
            result = plan(api)
            return Outcome(123 if result.status else 0, result.stdout, result.stderr)  # xargs: 123 if it failed

        return stop
    match = _SERVICE_LABEL.match(line)
    if match:
        image, service = match.group("image"), match.group("service")
        try:
            reference(image)
        except Fallback:
            return None
        missing = f"Image {image} is missing the 'service' label\n"

        def label(api: Api) -> Outcome:
            reply = api.call("GET", f"/images/{quote(image, safe='')}/json")
            if reply.status == 200:
                value = ((reply.json() or {}).get("Config") or {}).get("Labels") or {}
                if value.get("service") == service:
                    return Outcome(0, f"{service}\n")
                return Outcome(1, missing)
            if reply.status == 404:
                return Outcome(1, missing, f"Error: No such object: {image}\n")
            raise Fallback

        return label
    return None


def translate(line: str, files: Mapping[str, bytes] | None = None) -> Plan | None:
    """The plan for the shell line ``line``, or None for the shell. ``files``: what earlier steps of the same
    script wrote (path as written: content), so an ``--env-file`` just written is not read back."""
    if "\n" in line:
        return None
    argv = words(line)
    if argv is not None:
        return docker_plan(argv, files or {})
    return pipeline_plan(line)
