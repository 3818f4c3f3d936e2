"""The builder strategy interface: what builds the app image and gets it into the registry.

A strategy is offered by a plugin through ``kamalpy_builders`` (``{name: class}``). Kamal's choice
(kamal.md 6.1) picks one of the built-ins ``local``, ``remote``, ``hybrid``, ``pack``, ``cloud``;
the kamalpy-only key ``builder.strategy: NAME`` picks any offered strategy by name instead.

The ``build`` commands (builtin_plugins/build_commands.py) do what is the same for every strategy: the
pre-connect and pre-build hooks, the Docker check, the local registry login, the git clone, the
builder secrets in the build's environment. A strategy does the rest on the deploying machine's
:class:`~kamalpy.execution.LocalSession`; its commands come from :mod:`kamalpy.commands.builder`.
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
    """Base class of builder strategies; the defaults run Kamal's commands for :attr:`kind`.

    A third-party strategy sets :attr:`name`, usually ``needs_buildx = False``, and overrides :meth:`build`
    (and :meth:`create`/:meth:`remove`/:meth:`details` when it has a builder to manage).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # Kamal's builder kind whose commands the defaults run ("": none)
    needs_buildx: ClassVar[bool] = True
    plain_fallback: ClassVar[bool] = False  # may build with `docker build` when buildx is missing

    def __init__(self, commander: Commander, local_arch: str | None = None) -> None:
        self.commander = commander
        self.local_arch = local_arch

    @property
    def config(self) -> Configuration:
        return self.commander.config

    @property
    def login_locally(self) -> bool:
        """Whether ``build push`` logs in to the registry on this machine first."""
        return commands.login_locally(self.kind)

    @property
    def uses_dockerfile(self) -> bool:
        """Whether the build reads ``builder.dockerfile`` (checked before anything runs)."""
        return self.kind not in ("", commands.PACK)

    @property
    def builder_name(self) -> str | None:
        return commands.name(self.config, self.kind) if self.kind else None

    def build_env(self) -> dict[str, str]:
        return commands.push_env(self.kind)

    # ----- the builder -----

    def create(self, session: Session) -> None:
        command = commands.create(self.config, self.kind, self.local_arch) if self.kind else None
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
        command = commands.remove(self.config, self.kind) if self.kind else None
        if command is None:
            self.commander.output.info(f"The {self.name} builder has nothing to remove")
            return
        session.execute(command)

    def ensure(self, session: Session) -> None:
        """Make sure the builder exists and fits (Kamal: inspect; when missing, remove and create)."""
        command = commands.inspect(self.config, self.kind) if self.kind else None
        if command is None:
            return
        result = session.execute(command, raise_on_non_zero=False)
        if result.ok:
            return
        if not commands.MISSING_BUILDER.search(result.stdout + result.stderr):
            raise CommandFailed(result)
        self.commander.output.warn(commands.MISSING_BUILDER_WARNING)
        remove = commands.remove(self.config, self.kind)
        if remove is not None:
            session.execute(remove, raise_on_non_zero=False)
        self.create(session)

    def details(self, session: Session) -> str:
        """What ``build details`` prints after ``Builder: <name>``."""
        return session.capture(commands.info(self.config, self.kind)) if self.kind else ""

    # ----- the build -----

    def build(self, session: Session, request: BuildRequest) -> None:
        """Build the image (and push it, for output ``registry``) from the session's working directory."""
        command = commands.push(self.config, self.kind, local_arch=self.local_arch, output=request.output,
                                no_cache=request.no_cache, tag_as_dirty=request.dirty,
                                secrets=builder_secrets(self.config))
        session.execute(command, env=self.build_env() or None)

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
