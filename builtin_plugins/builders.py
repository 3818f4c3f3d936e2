"""Built-in plugin: Kamal's five builder strategies (``local``, ``remote``, ``hybrid``, ``pack``, ``cloud``).

Each class owns its commands, Kamal 2.11's (built from the shared pieces of kamalpy.commands.builder).
Without buildx (docs/builders.md) the local strategy builds with the plain ``docker build`` and ``docker
push`` here, and the remote strategy (one arch, an ``ssh://`` remote) with the remote host's ``docker
build``: kamalpy's own SSH connection carries the build context as a tar on the command's standard
input, then that host logs in and pushes.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import tarfile
from typing import TYPE_CHECKING, Any

from kamalpy.builders import BuilderStrategy, BuildRequest, builder_secrets, docker_ignored
from kamalpy.commands import builder as commands
from kamalpy.commands.base import Command, chain, combine, docker
from kamalpy.errors import KamalpyError
from kamalpy.execution import Executor, Session
from kamalpy.plugin import hookimpl
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander


class LocalStrategy(BuilderStrategy):
    """buildx on this machine (``docker-container`` driver by default; ``docker`` uses the engine's builder)."""

    name = commands.LOCAL
    plain_fallback = True
    uses_dockerfile = True

    @property
    def builder_name(self) -> str | None:
        config = self.config
        if config.builder.docker_driver:
            return None
        return f"kamal-local{'-registry' if config.registry.local else ''}-{config.builder.driver}"

    def create_command(self) -> Command | None:
        if self.builder_name is None:
            return None
        return docker("buildx", "create", "--name", self.builder_name, f"--driver={self.config.builder.driver}",
                      commands.driver_opts(self.config))

    def remove_command(self) -> Command | None:
        return docker("buildx", "rm", self.builder_name) if self.builder_name else None

    def inspect_command(self) -> Command | None:
        return docker("buildx", "inspect", self.builder_name) if self.builder_name else None

    def info_command(self) -> Command | None:
        return commands.info()

    def build_plain(self, session: Session, request: BuildRequest) -> None:
        config = self.config
        arch = config.builder.arches[0] if config.builder.arches else self.local_arch
        session.execute(commands.plain_build(config, arch, no_cache=request.no_cache, tag_as_dirty=request.dirty),
                        env=commands.PLAIN_BUILD_ENV)
        if request.output == "registry":
            for tag in commands.tags(config, request.dirty):
                session.execute(commands.plain_push(tag))


class _BuildsElsewhere(BuilderStrategy):
    """A builder with a node on ``builder.remote`` (a Docker context): remote and hybrid."""

    uses_dockerfile = True
    login_locally = False  # the remote BuildKit pushes, so the local login is skipped (as Kamal)
    buildx_only_keys = ("builder/remote",)

    def remove_command(self) -> Command | None:
        return commands.remove_with_context(str(self.builder_name))

    def inspect_command(self) -> Command | None:
        return commands.inspect_with_context(self.config, str(self.builder_name))

    def info_command(self) -> Command | None:
        return commands.info_with_context()

    def build_env(self) -> dict[str, str]:
        return dict(commands.REMOTE_BUILD_ENV)


class RemoteStrategy(_BuildsElsewhere):
    """buildx on another machine's Docker (``builder.remote``) for every arch.

    Without buildx here: the remote host's own ``docker build`` over SSH, for one arch (:meth:`plain_check`).
    """

    name = commands.REMOTE
    plain_fallback = True

    @property
    def builder_name(self) -> str | None:
        return f"kamal-remote-{commands.remote_suffix(self.config)}"

    def create_command(self) -> Command | None:
        name = str(self.builder_name)
        return chain(commands.create_context(self.config, name),
                     docker("buildx", "create", "--name", name, commands.driver_opts(self.config),
                            commands.context_name(name)))


    @property
    def remote(self) -> commands.RemoteBuilder:
        return commands.remote_builder(str(self.config.builder.remote))

    def plain_check(self, output: str) -> str | None:
        """Refuse what the plain build over SSH cannot do (one line naming the key); else the notice to show."""
        needs = commands.remote_plain_blockers(self.config, output)
        if needs:
            raise KamalpyError(f"Docker buildx plugin is not installed locally: {', '.join(needs)} needs it "
                               "(the plain `docker build` over SSH builds one arch and pushes)")
        commands.dockerfile_in_context(self.config)  # the Dockerfile must travel with the context
        return commands.remote_plain_notice(self.remote.host, self.config.builder.arches[0])

    def build_plain(self, session: Session, request: BuildRequest) -> None:
        """Log in on the builder host, build there from the context sent on stdin, push both tags from there."""
        config, remote = self.config, self.remote
        build = commands.remote_plain_build(config, config.builder.arches[0], no_cache=request.no_cache,
                                            tag_as_dirty=request.dirty)
        executor = _builder_executor(self.commander, remote)
        builder = Session(executor, remote.host)
        try:
            login = self.commander.registry.login_step()
            try:
                if login is not None:
                    builder.execute(login.command, stdin=login.stdin)
            except CommandFailed as error:
                raise self.commander.registry.login_failed(error) from error
            files = context_files(config.builder.context, commands.dockerfile_in_context(config))
            if executor.dry_run:
                executor.output.dry_run(remote.host, commands.context_upload_line(len(files)))
                builder.execute(build)
            else:
                context = context_tar(config.builder.context, files)
                self.commander.output.info(f"Sending the build context to {remote.host}: {len(files)} files, "
                                           f"{len(context)} bytes")
                builder.execute(build, stdin=context)
            if request.output == "registry":
                for tag in commands.tags(config, request.dirty):
                    builder.execute(commands.plain_push(tag))
        finally:
            executor.close()


def _builder_executor(commander: Commander, remote: commands.RemoteBuilder) -> Executor:
    """A pool of its own for the builder host: the ``ssh:`` settings, with the URL's user and port when given."""
    base = commander.executor
    settings = dataclasses.replace(base.settings, user=remote.user or base.settings.user,
                                   port=remote.port or base.settings.port)
    return Executor(base.transport, settings, commander.output, dry_run=commander.dry_run,
                    command_timeout=base.command_timeout)


def context_files(context: str, dockerfile: str) -> list[str]:
    """Paths (relative to ``context``, ``/``-separated) that go into the build context: the Dockerfile first
    (a short first entry lets the docker CLI tell a tar on stdin from a Dockerfile), then the rest sorted.

    ``.dockerignore`` is applied as ``build dev`` applies it (an approximation of Docker's matcher); like
    the docker CLI, nothing else is left out (not even ``.git``). The Dockerfile and ``.dockerignore``
    always go: the daemon reads them, and drops them itself when ``.dockerignore`` lists them.
    """
    patterns = _dockerignore_patterns(context)
    found = []
    for directory, dirs, names in os.walk(context):
        dirs.sort()
        for name in [*dirs, *names]:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, context).replace(os.sep, "/")
            if relative != dockerfile and (relative == ".dockerignore" or not docker_ignored(relative, patterns)):
                found.append(relative)
    return [dockerfile, *sorted(found)]


def _dockerignore_patterns(context: str) -> list[str]:
    try:
        with open(os.path.join(context, ".dockerignore")) as handle:
            lines = [line.strip() for line in handle]
    except FileNotFoundError:
        return []
    return [line for line in lines if line and not line.startswith("#")]


def context_tar(context: str, files: list[str]) -> bytes:
    """The build context as an uncompressed tar, owned by root as the docker CLI sends it."""
    buffer = io.BytesIO()
    # GNU, not PAX: the docker CLI recognises a tar on stdin from its first 1024 bytes, too few for a PAX
    # header, its record and the first file's header.
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for relative in files:
            info = tar.gettarinfo(os.path.join(context, relative), arcname=relative)
            if info is None:  # a socket or the like: the docker CLI leaves those out too
                continue
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(os.path.join(context, relative), "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


class HybridStrategy(_BuildsElsewhere):
    """One buildx builder with a local node for this machine's arch and a remote node for the others."""

    name = commands.HYBRID

    @property
    def builder_name(self) -> str | None:
        return f"kamal-hybrid-{self.config.builder.driver}-{commands.remote_suffix(self.config)}"

    def create_command(self) -> Command | None:
        config, name, builder = self.config, str(self.builder_name), self.config.builder
        return combine(
            docker("buildx", "create", commands.platform(builder.local_arches(self.local_arch)), "--name", name,
                   f"--driver={builder.driver}", commands.driver_opts(config)),
            commands.create_context(config, name),
            docker("buildx", "create", commands.platform(builder.remote_arches(self.local_arch)), "--append",
                   "--name", name, commands.driver_opts(config), commands.context_name(name)))


class PackStrategy(BuilderStrategy):
    """Cloud Native Buildpacks through the ``pack`` CLI, then ``docker push``; needs no buildx."""

    name = commands.PACK
    needs_buildx = False

    def inspect_command(self) -> Command | None:
        return commands.pack_inspect(self.config)

    def info_command(self) -> Command | None:
        return commands.pack_inspect(self.config)

    def build_command(self, request: BuildRequest) -> Command:
        return commands.pack_build(self.config, self.local_arch, output=request.output, no_cache=request.no_cache,
                                   tag_as_dirty=request.dirty, secrets=builder_secrets(self.config))


class CloudStrategy(BuilderStrategy):
    """Docker Build Cloud (``driver: cloud ORG/NAME``)."""

    name = commands.CLOUD
    uses_dockerfile = True
    buildx_only_keys = ("builder/driver",)

    @property
    def builder_name(self) -> str | None:
        return re.sub(r"[ /]", "-", self.config.builder.driver)

    def create_command(self) -> Command | None:
        return docker("buildx", "create", "--driver", self.config.builder.driver)

    def remove_command(self) -> Command | None:
        return docker("buildx", "rm", self.builder_name)

    def inspect_command(self) -> Command | None:
        return docker("buildx", "inspect", self.builder_name)

    def info_command(self) -> Command | None:
        return commands.info()


@hookimpl
def kamalpy_builders() -> dict[str, Any]:
    return {strategy.name: strategy for strategy in
            (LocalStrategy, RemoteStrategy, HybridStrategy, PackStrategy, CloudStrategy)}
