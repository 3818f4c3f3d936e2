"""The image build commands of every Kamal builder, byte for byte (reference kamal.md 6 and 7.5).

Pure: each function returns a Kamal command array from the configuration and the facts the caller
found on the deploying machine (its Docker architecture, the git root, the working directory). The
strings were checked against Kamal 2.11 itself (a stand-in ``docker`` logging what Kamal runs), which
differs from the 2.12 notes in two cache details kept here: a registry cache's ``--cache-to`` puts
``ref=`` before the options, and a gha ``--cache-from`` keeps only the options that locate the cache.

Kinds (Kamal's builder classes): ``local``, ``remote``, ``hybrid``, ``pack``, ``cloud``. Without buildx
the local kind can build with the plain ``docker build`` (:func:`plain_build`), and an ``ssh://`` remote
with that host's ``docker build`` over SSH (:func:`remote_plain_build`): both are kamalpy's own.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote, urlsplit

from kamalpy.commands.base import Command, Sensitive, any_of, chain, combine, docker, file_join, pipe
from kamalpy.config.args import argumentize, escape_shell_value, is_present, ruby_string
from kamalpy.errors import KamalpyError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

LOCAL, REMOTE, HYBRID, PACK, CLOUD = "local", "remote", "hybrid", "pack", "cloud"
KINDS = (LOCAL, REMOTE, HYBRID, PACK, CLOUD)
ENDPOINT_HOST_FORMAT = "'{{.Endpoints.docker.Host}}'"
ARCH_FORMAT = "'{{.Architecture}}'"
PACK_LABELS_BUILDPACK = "paketo-buildpacks/image-labels"
# Remote builders must not hand the local client's registry token to the remote BuildKit.
REMOTE_BUILD_ENV = {"BUILDKIT_NO_CLIENT_TOKEN": "1"}
# The plain builder: DOCKER_BUILDKIT=1 (set by some users) would make `docker build` ask for buildx.
PLAIN_BUILD_ENV = {"DOCKER_BUILDKIT": "0"}
_GHA_FROM_OPTIONS = re.compile(r"^(url|url_v2|token|scope|timeout)=")
_NOT_NAME = re.compile(r"[^a-z0-9_-]")
_RUBY_SHELL_SAFE = re.compile(r"([^A-Za-z0-9_\-.,:+/@\n])")


class BuilderError(KamalpyError):
    """A build that cannot be described (Kamal's ``BuilderError``), e.g. a missing Dockerfile."""


# ----- which builder -----

def normalize_arch(machine: str) -> str:
    """``docker info`` architecture as a platform arch (Kamal: aarch64 -> arm64, x86_64 -> amd64)."""
    machine = machine.strip()
    return {"aarch64": "arm64", "x86_64": "amd64"}.get(machine, machine)


def docker_arch() -> Command:
    """The deploying machine's Docker architecture (asked only when a remote builder is configured)."""
    return docker("info", "--format", ARCH_FORMAT)


def kind(config: Configuration, local_arch: str | None) -> str:
    """Kamal's choice: remote arches make it remote or hybrid, else pack, cloud or local."""
    builder = config.builder
    if builder.uses_remote(local_arch):
        return HYBRID if builder.uses_local(local_arch) else REMOTE
    if builder.pack:
        return PACK
    if builder.cloud_driver:
        return CLOUD
    return LOCAL


def _local_registry(config: Configuration) -> bool:
    return config.registry.local


def remote_suffix(config: Configuration) -> str:
    """The part of a remote or hybrid builder's name that says where it builds."""
    suffix = _NOT_NAME.sub("-", str(config.builder.remote or ""))
    return f"{suffix}-local-registry" if _local_registry(config) else suffix


def context_name(builder_name: str) -> str:
    return f"{builder_name}-context"


def driver_opts(config: Configuration) -> list[str]:
    # A builder container reaches a localhost registry only on the host network.
    return ["--driver-opt", "network=host"] if _local_registry(config) else []


def platform(arches: list[str]) -> list[str]:
    return ["--platform", ",".join(f"linux/{arch}" for arch in arches)] if arches else []


def create_context(config: Configuration, builder_name: str) -> Command:
    """The Docker context of a builder on ``builder.remote`` (remote and hybrid builders)."""
    return docker("context", "create", context_name(builder_name), "--description", f"'{builder_name} host'",
                  "--docker", f"'host={config.builder.remote}'")


def remove_with_context(builder_name: str) -> Command:
    return chain(docker("context", "rm", context_name(builder_name)), docker("buildx", "rm", builder_name))


def inspect_with_context(config: Configuration, builder_name: str) -> Command:
    """Fails when the builder is missing or its context points elsewhere (then it is made again)."""
    context = context_name(builder_name)
    return any_of(
        combine(pipe(docker("buildx", "inspect", builder_name), ["grep", "-q", f"Endpoint:.*{context}"]),
                pipe(docker("context", "inspect", context, "--format", ENDPOINT_HOST_FORMAT),
                     ["grep", "-xq", str(config.builder.remote)])),
        "(echo no compatible builder && exit 1)")


def pack_inspect(config: Configuration) -> Command:
    return ["pack", "builder", "inspect", str(config.builder.pack_builder)]


# What an inspect failure says when the builder only needs to be (re)made.
MISSING_BUILDER = re.compile(r"context not found|no builder|no compatible builder|does not exist")
MISSING_BUILDER_WARNING = "Missing compatible builder, so creating a new one first"


def info() -> Command:
    """``build details``: Docker's contexts and builders."""
    return combine(docker("context", "ls"), docker("buildx", "ls"))


def info_with_context() -> Command:
    return chain(docker("context", "ls"), docker("buildx", "ls"))


def ensure_docker_installed() -> Command:
    return combine(docker("--version"), docker("buildx", "version"))


def docker_version() -> Command:
    return docker("--version")


# ----- the build -----

def tags(config: Configuration, tag_as_dirty: bool = False) -> list[str]:
    names = [config.absolute_image, config.latest_image]
    return [f"{tag}-dirty" for tag in names] if tag_as_dirty else names


def _tag_options(config: Configuration, tag_as_dirty: bool) -> list[str]:
    return [part for tag in tags(config, tag_as_dirty) for part in ("-t", tag)]


def cache_to(config: Configuration) -> str | None:
    cache = config.builder.cache
    cache_type, options = cache.get("type"), cache.get("options")
    if cache_type == "gha":
        return ",".join(p for p in ("type=gha", options) if p)
    if cache_type == "registry":
        return ",".join(p for p in ("type=registry", f"ref={config.builder.cache_image_ref}", options) if p)
    return None


def cache_from(config: Configuration) -> str | None:
    cache = config.builder.cache
    cache_type, options = cache.get("type"), cache.get("options")
    if cache_type == "gha":
        kept = [part for part in str(options or "").split(",") if _GHA_FROM_OPTIONS.match(part)]
        return ",".join(["type=gha", *kept])
    if cache_type == "registry":
        return f"type=registry,ref={config.builder.cache_image_ref}"
    return None


def check_dockerfile(config: Configuration) -> None:
    """Kamal checks the Dockerfile, relative to the working directory, while it builds the command."""
    dockerfile = config.builder.dockerfile
    if not os.path.exists(os.path.abspath(dockerfile)):
        raise BuilderError(f"Missing {dockerfile}")


def _dockerfile(config: Configuration) -> list[str]:
    check_dockerfile(config)
    return argumentize("--file", config.builder.dockerfile)


def _sensitive(args: list[str]) -> list[str]:
    """Flag values shown as ``[REDACTED]`` (build args and secret values)."""
    return [arg if index % 2 == 0 else Sensitive(arg) for index, arg in enumerate(args)]


def _build_options(config: Configuration) -> list[str]:
    builder = config.builder
    to, from_ = cache_to(config), cache_from(config)
    options: list[str] = ["--cache-to", to, "--cache-from", from_] if to and from_ else []
    options += argumentize("--label", {"service": config.service})
    options += _sensitive(argumentize("--build-arg", builder.args))
    options += argumentize("--secret", [f'id={escape_shell_value(name)}' for name in builder.secrets])
    options += _dockerfile(config)
    if is_present(builder.target):
        options += argumentize("--target", builder.target)
    if is_present(builder.ssh):
        options += argumentize("--ssh", builder.ssh)
    if builder.provenance is not None:
        options += ["--provenance", ruby_string(builder.provenance)]
    if builder.sbom is not None:
        options += ["--sbom", ruby_string(builder.sbom)]
    return options


def buildx_build(config: Configuration, builder_name: str | None, *, output: str = "registry",
                 no_cache: bool = False, tag_as_dirty: bool = False) -> Command:
    """The build (and push, for output ``registry``) of the app image with buildx on ``builder_name``."""
    builder = config.builder
    return docker("buildx", "build", f"--output=type={output}", platform(builder.arches),
                  ["--builder", builder_name] if builder_name else None,
                  _tag_options(config, tag_as_dirty), _build_options(config),
                  ["--no-cache"] if no_cache else None, builder.context, "2>&1")


def pack_build(config: Configuration, local_arch: str | None, *, output: str = "registry", no_cache: bool = False,
               tag_as_dirty: bool = False, secrets: Mapping[str, str] | None = None) -> Command:
    """The build by Cloud Native Buildpacks (``pack``), then ``docker push`` of both tags for output ``registry``.

    ``secrets``: the builder secrets' values (pack takes them as ``--env``).
    """
    secrets = secrets or {}
    builder = config.builder
    arches = builder.local_arches(local_arch)
    buildpacks = [*builder.pack_buildpacks, PACK_LABELS_BUILDPACK]
    build = ["pack", "build", config.repository, "--platform", f"linux/{arches[0] if arches else ''}",
             "--creation-time", "now", "--builder", str(builder.pack_builder),
             *[part for bp in buildpacks for part in ("--buildpack", str(bp))],
             *_tag_options(config, tag_as_dirty), *(["--clear-cache"] if no_cache else []),
             "--env", f"BP_IMAGE_LABELS=service={config.service}",
             *argumentize("--env", builder.args),
             *_sensitive(argumentize("--env", {name: secrets.get(name, "") for name in builder.secrets})),
             "--path", builder.context]
    if output != "registry":
        return build
    return combine(build, docker("push", config.absolute_image), docker("push", config.latest_image))


# ----- without buildx: the plain builder -----

# Settings the plain `docker build` cannot honour, each with the builder key that asks for it.
def buildx_only_settings(config: Configuration) -> list[str]:
    """The builder keys of this configuration that need buildx whatever the strategy (a strategy adds its own:
    ``builder/remote`` for remote builders, ``builder/driver`` for the cloud)."""
    builder = config.builder
    found = []
    if len(builder.arches) > 1:
        found.append("builder/arch")
    for key in ("cache", "secrets", "ssh", "provenance", "sbom"):
        value = builder.raw.get(key)
        if value is not None and (value or key in ("provenance", "sbom")):
            found.append(f"builder/{key}")
    return found


def plain_build(config: Configuration, arch: str | None, *, no_cache: bool = False,
                tag_as_dirty: bool = False) -> Command:
    """``docker build`` of the same image buildx would build (one platform, loaded into the local engine)."""
    builder = config.builder
    options = argumentize("--label", {"service": config.service})
    options += _sensitive(argumentize("--build-arg", builder.args))
    options += _dockerfile(config)
    if is_present(builder.target):
        options += argumentize("--target", builder.target)
    return docker("build", platform([arch] if arch else []), _tag_options(config, tag_as_dirty), options,
                  ["--no-cache"] if no_cache else None, builder.context, "2>&1")


def plain_push(tag: str) -> Command:
    return docker("push", tag)



# ----- without buildx: the remote builder's plain `docker build` over SSH (kamalpy's own) -----
# The build context goes as a tar on the build command's standard input (`docker build -`), over kamalpy's
# own SSH connection to builder.remote; that host then logs in to the registry and pushes both tags.

REMOTE_PLAIN_OUTPUTS = ("registry",)  # the image is built on the remote host: pushing is the only way out


class RemoteBuilder(NamedTuple):
    """``builder.remote`` (``ssh://[user@]host[:port]``) split up; user and port None when not given."""

    host: str
    user: str | None
    port: int | None


def remote_builder(url: str) -> RemoteBuilder:
    """The parts of an ``ssh://`` ``builder.remote`` (the plain remote build reaches only SSH remotes)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "ssh" or not parts.hostname or port == -1 or parts.path not in ("", "/"):
        raise BuilderError(f"builder/remote: {url} is not ssh://[user@]host[:port]")
    return RemoteBuilder(parts.hostname, unquote(parts.username) if parts.username else None, port)


def remote_plain_blockers(config: Configuration, output: str) -> list[str]:
    """What the plain build over SSH cannot do: the keys that need buildx (and a non-push ``--output``)."""
    found = buildx_only_settings(config)
    if not config.builder.remote_is_ssh:
        found.insert(0, "builder/remote")
    if config.registry.local:
        found.append("registry/server")  # localhost:PORT on the builder is not this machine's registry
    if output not in REMOTE_PLAIN_OUTPUTS:
        found.append(f"--output {output}")
    return found


def remote_plain_notice(host: str, arch: str) -> str:
    return f"docker buildx is not available: building on {host} with its docker build over SSH (linux/{arch} only)"


def dockerfile_in_context(config: Configuration) -> str:
    """``builder.dockerfile`` (relative to the working directory) as a path inside the context, for ``--file``."""
    builder = config.builder
    relative = os.path.relpath(os.path.abspath(builder.dockerfile), os.path.abspath(builder.context))
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        raise BuilderError(f"builder/dockerfile: {builder.dockerfile} is outside the build context "
                           f"{builder.context}, which is all the plain remote build sends")
    return relative.replace(os.sep, "/")


def remote_plain_build(config: Configuration, arch: str, *, no_cache: bool = False,
                       tag_as_dirty: bool = False) -> Command:
    """``docker build ... -``: the image from the tar context on standard input, into the remote engine."""
    builder = config.builder
    check_dockerfile(config)
    options = argumentize("--label", {"service": config.service})
    options += _sensitive(argumentize("--build-arg", builder.args))
    options += argumentize("--file", dockerfile_in_context(config))
    if is_present(builder.target):
        options += argumentize("--target", builder.target)
    return docker("build", platform([arch]), _tag_options(config, tag_as_dirty), options,
                  ["--no-cache"] if no_cache else None, "-")


def context_upload_line(files: int) -> str:
    """What a dry run prints for the context sent on the build's standard input."""
    return f"stdin: build context {files} files"


# ----- git-clone builds -----

def ruby_shellescape(text: str) -> str:
    """Ruby's ``Shellwords.escape`` (backslashes, not quotes): plain paths stay as they are."""
    if not text:
        return "''"
    return _RUBY_SHELL_SAFE.sub(r"\\\1", text).replace("\n", "'\n'")


def clone_directory(service: str | None, pwd: str, tmpdir: str) -> str:
    """``<tmpdir>/kamal-clones/<service>-<13 hex of sha256(pwd)>``: one clone per project directory."""
    digest = hashlib.sha256(pwd.encode()).hexdigest()[:13]
    return file_join(tmpdir, "kamal-clones", "-".join(p for p in (service, digest) if p))


def build_directory(clone_dir: str, git_root: str, pwd: str) -> str:
    """Where the working directory is inside the clone (with a trailing ``/`` at the repository root)."""
    relative = pwd[len(git_root):] if pwd.startswith(git_root) else pwd
    return file_join(clone_dir, os.path.basename(git_root), relative)


def _git(*args: str, path: str) -> Command:
    return ["git", "-C", ruby_shellescape(path), *args]


def clone(clone_dir: str, git_root: str) -> Command:
    return _git("clone", ruby_shellescape(git_root), "--recurse-submodules", path=clone_dir)


def clone_reset_steps(build_dir: str, git_root: str, revision: str) -> list[Command]:
    """Bring an existing clone to ``revision`` (Kamal 2.11: no ``gc --auto``)."""
    return [_git("remote", "set-url", "origin", ruby_shellescape(git_root), path=build_dir),
            _git("fetch", "origin", path=build_dir),
            _git("reset", "--hard", revision, path=build_dir),
            _git("clean", "-fdx", path=build_dir),
            _git("submodule", "update", "--init", path=build_dir)]


def clone_status(build_dir: str) -> Command:
    return _git("status", "--porcelain", path=build_dir)


def clone_revision(build_dir: str) -> Command:
    return _git("rev-parse", "HEAD", path=build_dir)

