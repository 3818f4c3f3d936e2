"""The builder strategy interface: what builds the app image and gets it into the registry.

A strategy is offered by a plugin through ``kamalpy_builders`` (``{name: class}``). Kamal's choice
(kamal.md 6.1) picks one of the built-ins ``local``, ``remote``, ``hybrid``, ``pack``, ``cloud``;
the kamalpy-only key ``builder.strategy: NAME`` picks any offered strategy by name instead.

The ``build`` commands (builtin_plugins/build_commands.py) do what is the same for every strategy: the
pre-connect and pre-build hooks, the Docker check, the local registry login, the git clone, the
builder secrets in the build's environment. A strategy does the rest on the deploying machine's
:class:`~kamalpy.execution.LocalSession`, with commands of its own (built from the shared pieces in
:mod:`kamalpy.commands.builder`).
"""

from __future__ import annotations

import fnmatch
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from kamalpy.commands import builder as commands
from kamalpy.errors import KamalpyError
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.commander import Commander
    from kamalpy.commands.base import Command
    from kamalpy.config.model import Configuration
    from kamalpy.execution import Session

STRATEGY_KEY = "strategy"  # builder.strategy (kamalpy extension)


@dataclass(frozen=True)
class BuildRequest:
    """What to build. ``output``: buildx's export type (``registry`` pushes); ``dirty``: ``build dev``'s tags."""

    output: str = "registry"
    no_cache: bool = False
    dirty: bool = False


class BuilderStrategy:
    """Base class of builder strategies: a strategy owns its commands.

    The ``*_command`` methods return the strategy's commands (pure: from the configuration and the deploying
    machine's architecture); the other methods run them on the deploying machine's session. The defaults
    describe a strategy without a builder to manage that builds with ``docker buildx build``. A
    third-party strategy sets :attr:`name`, usually ``needs_buildx = False``, and overrides
    :meth:`build_command` (or :meth:`build`), and the builder's commands when it has one to manage.
    """

    name: ClassVar[str] = ""
    needs_buildx: ClassVar[bool] = True
    plain_fallback: ClassVar[bool] = False  # may build with `docker build` when buildx is missing
    login_locally: ClassVar[bool] = True  # `build push` logs in to the registry on this machine first
    uses_dockerfile: ClassVar[bool] = False  # the build reads builder.dockerfile (checked before anything runs)
    buildx_only_keys: ClassVar[tuple[str, ...]] = ()  # builder keys that need buildx with this strategy

    def __init__(self, commander: Commander, local_arch: str | None = None) -> None:
        self.commander = commander
        self.local_arch = local_arch

    @property
    def config(self) -> Configuration:
        return self.commander.config

    # ----- the strategy's commands -----

    @property
    def builder_name(self) -> str | None:
        """The buildx builder's name (``--builder``); None when there is none."""
        return None

    def create_command(self) -> Command | None:
        """Create the builder; None when there is nothing to create."""
        return None

    def remove_command(self) -> Command | None:
        return None

    def inspect_command(self) -> Command | None:
        """Fails when the builder is missing or points elsewhere (then it is made again); None: nothing to check."""
        return None

    def info_command(self) -> Command | None:
        """What ``build details`` shows after ``Builder: <name>``; None: nothing."""
        return None

    def build_command(self, request: BuildRequest) -> Command:
        """The build (and push, for output ``registry``) from the working directory."""
        return commands.buildx_build(self.config, self.builder_name, output=request.output,
                                     no_cache=request.no_cache, tag_as_dirty=request.dirty)

    def build_env(self) -> dict[str, str]:
        """Environment variables of the build command."""
        return {}

    def tags(self, dirty: bool = False) -> list[str]:
        """The image tags a build applies: the version and ``latest`` (``-dirty`` ones for ``build dev``)."""
        return commands.tags(self.config, dirty)

    def buildx_only_settings(self) -> list[str]:
        """The builder keys of this configuration the plain ``docker build`` cannot honour."""
        return [*self.buildx_only_keys, *commands.buildx_only_settings(self.config)]

    # ----- the builder -----

    def create(self, session: Session) -> None:
        command = self.create_command()
        if command is None:
            self.commander.output.info(f"The {self.name} builder has nothing to create")
            return
        try:
            session.execute(command)
        except CommandFailed as error:
            detail = (error.result.stderr or error.result.stdout).strip()
            if not detail:
                raise
            # Kamal reports this and goes on; the build then says what is wrong.
            self.commander.output.error(f"Couldn't create remote builder: {' '.join(detail.splitlines())}")

    def remove(self, session: Session) -> None:
        command = self.remove_command()
        if command is None:
            self.commander.output.info(f"The {self.name} builder has nothing to remove")
            return
        session.execute(command)

    def ensure(self, session: Session) -> None:
        """Make sure the builder exists and fits (Kamal: inspect; when missing, remove and create)."""
        command = self.inspect_command()
        if command is None:
            return
        result = session.execute(command, raise_on_non_zero=False)
        if result.ok:
            return
        if not commands.MISSING_BUILDER.search(result.stdout + result.stderr):
            raise CommandFailed(result)
        self.commander.output.warn(commands.MISSING_BUILDER_WARNING)
        remove = self.remove_command()
        if remove is not None:
            session.execute(remove, raise_on_non_zero=False)
        self.create(session)

    def details(self, session: Session) -> str:
        """What ``build details`` prints after ``Builder: <name>``."""
        command = self.info_command()
        return session.capture(command) if command is not None else ""

    # ----- the build -----

    def build(self, session: Session, request: BuildRequest) -> None:
        """Build the image (and push it, for output ``registry``) from the session's working directory."""
        session.execute(self.build_command(request), env=self.build_env() or None)

    def plain_check(self, output: str) -> str | None:
        """Without buildx: None to use the local ``docker build`` fallback's checks, or this strategy's own
        notice after refusing (one line naming the key) what its plain build cannot do."""
        return None

    def build_plain(self, session: Session, request: BuildRequest) -> None:
        """The build with the plain ``docker build`` (no buildx), then ``docker push`` of both tags."""
        raise KamalpyError(f"The {self.name} builder needs docker buildx")


def builder_secrets(config: Configuration) -> dict[str, str]:
    """``builder.secrets`` with their values (the build reads them from its environment)."""
    return {name: config.secret_lookup(name) for name in config.builder.secrets}


def local_docker_arch() -> str | None:
    """This machine's Docker architecture (a read-only query, also made in a dry run); None without Docker."""
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.Architecture}}"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return commands.normalize_arch(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None


def strategy_name(config: Configuration, local_arch: str | None) -> str:
    """``builder.strategy`` when set, else Kamal's choice."""
    chosen = config.builder.raw.get(STRATEGY_KEY)
    return str(chosen) if chosen else commands.kind(config, local_arch)


def needs_local_arch(config: Configuration) -> bool:
    """Kamal asks Docker for the local architecture only to split arches between local and remote."""
    return bool(config.builder.remote)


def select(commander: Commander) -> BuilderStrategy:
    """The strategy for this configuration, from the plugins that offer one."""
    chosen = getattr(commander, "_builder_strategy", None)
    if chosen is not None:  # a flow resolved it before anything ran
        return chosen
    config = commander.config
    local_arch = local_docker_arch() if needs_local_arch(config) else None
    wanted = strategy_name(config, local_arch)
    strategies = commander.run.hooks.builders()
    if wanted not in strategies:
        available = ", ".join(sorted(strategies)) or "none"
        raise KamalpyError(f"builder/{STRATEGY_KEY}: unknown builder strategy {wanted!r} (available: {available})")
    strategy = strategies[wanted](commander, local_arch)
    commander._builder_strategy = strategy  # type: ignore[attr-defined]
    return strategy


def docker_ignored(relative: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            ignored = not negate
    return ignored
