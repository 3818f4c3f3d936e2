"""Built-in plugin: Kamal's five builder strategies (``local``, ``remote``, ``hybrid``, ``pack``, ``cloud``).

Their commands are Kamal 2.11's (kamalpy.commands.builder). The local strategy alone can also build
without buildx, with the plain ``docker build`` and ``docker push`` (docs/builders.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kamalpy.builders import BuilderStrategy, BuildRequest
from kamalpy.commands import builder as commands
from kamalpy.plugin import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.execution import Session


class LocalStrategy(BuilderStrategy):
    """buildx on this machine (``docker-container`` driver by default; ``docker`` uses the engine's builder)."""

    name = kind = commands.LOCAL
    plain_fallback = True

    def build_plain(self, session: Session, request: BuildRequest) -> None:
        config = self.config
        arch = config.builder.arches[0] if config.builder.arches else self.local_arch
        session.execute(commands.plain_build(config, arch, no_cache=request.no_cache, tag_as_dirty=request.dirty),
                        env=commands.PLAIN_BUILD_ENV)
        if request.output == "registry":
            for tag in commands.tags(config, request.dirty):
                session.execute(commands.plain_push(tag))


class RemoteStrategy(BuilderStrategy):
    """buildx on another machine's Docker (``builder.remote``) for every arch."""

    name = kind = commands.REMOTE


class HybridStrategy(BuilderStrategy):
    """One buildx builder with a local node for this machine's arch and a remote node for the others."""

    name = kind = commands.HYBRID


class PackStrategy(BuilderStrategy):
    """Cloud Native Buildpacks through the ``pack`` CLI, then ``docker push``; needs no buildx."""

    name = kind = commands.PACK
    needs_buildx = False


class CloudStrategy(BuilderStrategy):
    """Docker Build Cloud (``driver: cloud ORG/NAME``)."""

    name = kind = commands.CLOUD


@hookimpl
def kamalpy_builders() -> dict[str, Any]:
    return {strategy.name: strategy for strategy in
            (LocalStrategy, RemoteStrategy, HybridStrategy, PackStrategy, CloudStrategy)}
