"""Built-in plugin: the ``build`` commands (reference 2.5, 6): build and push the app image, pull it on the servers.

``build push`` runs Kamal 2.11's sequence on the deploying machine: the pre-connect hook, the Docker
check, the registry login (not for remote builders), the pre-build hook, the git clone (unless
``builder.context`` is set), the builder check and the build, by the strategy the configuration selects
(kamalpy.builders). Without buildx the local strategy builds with the plain ``docker build``, and the
remote one with the remote host's ``docker build`` over SSH.

``build pull`` logs in on the app hosts (not for a local registry: their pulls reach it through SSH
reverse port forwards instead). With several hosts, one host per distinct registry mirror pulls first to
seed it. Each host then records the pull, pulls the image and checks its ``service`` label (without
Kamal's ``docker image rm --force`` first, see kamalpy.commands.builder_pull). In a deploy, the first
round trip to the primary host also checks the deploy lock (kamalpy.locking).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kamalpy import builders, git
from kamalpy.cli.base import current_run, group
from kamalpy.commands import auditor, builder_pull
from kamalpy.commands import builder as commands
from kamalpy.errors import KamalpyError
from kamalpy.execution import Step
from kamalpy.plugin import hookimpl
from kamalpy.transport import CommandFailed

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.builders import BuilderStrategy
    from kamalpy.commander import Commander
    from kamalpy.execution import LocalSession, Session

NO_MIRROR = "error calling index: reflect: slice index out of range"  # docker info on a host without mirrors


@group("build")
def build_group() -> None:
    """Build the app image and get it onto the servers."""


def pull(commander: Commander) -> None:
    """Kamal's ``build pull``: log in, pull the version and check its ``service`` label on the app hosts."""
    hosts = commander.specifics.app_hosts
    with commander.registry.pull_access(hosts):
        first = _mirror_hosts(commander, hosts)
        if first:
            commander.output.say(f"Pulling image on {', '.join(first)} to seed the "
                                 f"{'mirror' if len(first) == 1 else 'mirrors'}...")
            _pull_on(commander, first)
            commander.output.say("Pulling image on remaining hosts...")
            _pull_on(commander, [h for h in hosts if h not in first])
        else:
            _pull_on(commander, hosts)


def _mirror_hosts(commander: Commander, hosts: list[str]) -> list[str]:
    """The first host (in host order) of each distinct first registry mirror; none for a single host."""
    if len(hosts) < 2:
        return []

    def mirror(session: Session) -> str | None:
        first = commander.first_steps(session.host)  # the lock check, Kamal's login: same round trip
        result = session.script([*first, Step(builder_pull.first_mirror(), check=False)])[-1]
        if not result.ok:
            if NO_MIRROR not in result.stderr + result.stdout:
                raise CommandFailed(result)
            return None
        return result.stdout.strip() or None

    found = commander.on(hosts, mirror)
    seeds: dict[str, str] = {}
    for host in hosts:
        if found.get(host):
            seeds.setdefault(found[host], host)
    return list(seeds.values())


def _pull_on(commander: Commander, hosts: list[str]) -> None:
    config = commander.config
    record = auditor.record(config, f"Pulled image with version {config.version}", performer=commander.performer)
    pulls = commander.pulls.batch()  # at most x-kamalpy.pull_limit hosts at once (kamalpy.pulls)
    if len(hosts) > pulls.limit:
        commander.output.info(f"Pulling on at most {pulls.limit} of the {len(hosts)} hosts at once "
                              "(x-kamalpy.pull_limit)")

    def work(session: Session) -> None:
        # Kamal's commands in Kamal's order, in one round trip (the login only once per host and run), but
        # without Kamal's `docker image rm --force` first: of two deploys of one version, the one that then
        # finds the lock held would remove the image the other has just pulled (docs/moving-from-kamal.md).
        with pulls.slot() as turn:
            if turn:
                session.script([*commander.first_steps(session.host), Step(record, quiet=True),
                                builder_pull.pull(config), builder_pull.validate_image(config)])

    commander.on(hosts, work)


@build_group.command("pull")
def build_pull() -> None:
    """Pull the app image from the registry onto the servers."""
    pull(current_run().commander)


# ----- building -----

NOT_EMPTY_CLONE = "already exists and is not an empty directory"
PLAIN_OUTPUTS = ("registry", "docker")  # what the plain builder can do: push, or keep in the local engine
OUTPUT_HELP = "Exported type for the build result, any type `buildx --output` supports."
NO_CACHE_HELP = "Build without using Docker's build cache."


class BuildError(KamalpyError):
    """The build could not be prepared or failed (one line: what failed and why)."""


def _no_cache_option() -> bool:
    """``--no-cache`` of the running command (``deploy`` and friends pass theirs to the build this way)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.params.get("no_cache"))


def _succeeds(*argv: str) -> bool:
    """A read-only local query, also made in a dry run."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def check_docker(commander: Commander, local: LocalSession, strategy: BuilderStrategy, output: str) -> bool:
    """Kamal's Docker check; True when the build falls back to the plain ``docker build`` (no buildx)."""
    result = local.execute(commands.ensure_docker_installed(), raise_on_non_zero=False)
    buildx = _succeeds("docker", "buildx", "version") if commander.dry_run else result.ok
    if buildx:
        return False
    if not _succeeds("docker", "--version"):
        raise BuildError("Docker is not installed locally")
    if not strategy.needs_buildx:
        return False
    missing = "Docker buildx plugin is not installed locally"
    if not strategy.plain_fallback:
        raise BuildError(f"{missing}: the {strategy.name} builder needs it")
    notice = strategy.plain_check(output)
    if notice is not None:
        # A strategy with a plain build of its own (the remote one: over SSH) refuses and announces it itself.
        commander.output.warn(notice)
        return True
    needs = strategy.buildx_only_settings()
    if needs:
        raise BuildError(f"{missing}: {', '.join(needs)} needs it (the plain `docker build` cannot do that)")
    if output not in PLAIN_OUTPUTS:
        raise BuildError(f"{missing}: --output {output} needs it (the plain `docker build` can push or load)")
    arches = commander.config.builder.arches
    arch = arches[0] if arches else strategy.local_arch or builders.local_docker_arch() or "amd64"
    commander.output.warn(f"docker buildx is not available: building with `docker build` for linux/{arch} only")
    return True


def login_locally(commander: Commander, local: LocalSession) -> None:
    """Log in to the registry on this machine (the registry strategy's: a local registry is started instead)."""
    try:
        commander.registry.login_here(local)
    except CommandFailed as error:
        detail = " ".join((error.result.stderr or error.result.stdout).split())
        raise BuildError(f"Registry login to {commander.config.registry.server or 'Docker Hub'} failed"
                         + (f": {detail}" if detail else "")) from error


@contextlib.contextmanager
def _working_directory(path: str | None) -> Iterator[None]:
    """Kamal builds inside ``Dir.chdir(build_directory)``; nothing else runs during the build."""
    if path is None:
        yield
        return
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def private_directory(path: str) -> None:
    """``path`` as a directory only this user can enter (0700), in a shared temporary directory.

    The clone holds the app's source (and maybe secrets in it): others must not read it, nor prepare
    the directory for us (a symlink or a directory of theirs would receive or alter what we build).
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as error:
        raise BuildError(f"Can't create the clone directory {path}: {error.strerror}") from error
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise BuildError(f"Can't use the clone directory {path}: it is not a directory of this user "
                         "(remove it, or set TMPDIR to a private directory)")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


class Clone:
    """The git clone a default build runs in (kamal.md 6.4): made once, reset on later builds."""

    def __init__(self, commander: Commander, local: LocalSession) -> None:
        self.commander, self.local = commander, local
        root, revision = git.root(), git.revision()
        if root is None or revision is None:
            raise BuildError(f"Can't clone for the build: no git commit found in {os.getcwd()}")
        self.root, self.revision = root, revision
        pwd = os.getcwd()
        self.clone_dir = commands.clone_directory(commander.config.service, pwd, tempfile.gettempdir())
        self.build_dir = commands.build_directory(self.clone_dir, root, pwd)

    def prepare(self) -> str:
        """Clone (or reset) and check; one retry from scratch, as Kamal. Returns the build directory."""
        try:
            try:
                self._clone()
            except CommandFailed as error:
                if NOT_EMPTY_CLONE not in error.result.stderr + error.result.stdout:
                    raise BuildError(f"Failed to clone repo: {error}") from error
                self._reset()
            self._validate()
        except BuildError as error:
            self.commander.output.error(f"Error preparing clone: {error}, deleting and retrying...")
            shutil.rmtree(self.clone_dir, ignore_errors=True)
            try:
                self._clone()
            except CommandFailed as failed:
                raise BuildError(f"Failed to clone repo: {failed}") from failed
            self._validate()
        return self.build_dir

    def _clone(self) -> None:
        self.commander.output.info(f"Cloning repo into build directory `{self.build_dir}`...")
        if not self.commander.dry_run:
            private_directory(os.path.dirname(self.clone_dir))
            private_directory(self.clone_dir)
        self.local.execute(commands.clone(self.clone_dir, self.root))

    def _reset(self) -> None:
        self.commander.output.info(f"Resetting local clone as `{self.build_dir}` already exists...")
        try:
            for step in commands.clone_reset_steps(self.build_dir, self.root, self.revision):
                self.local.execute(step)
        except CommandFailed as error:
            raise BuildError(f"Failed to clone repo: {error}") from error

    def _validate(self) -> None:
        try:
            status = self.local.capture(commands.clone_status(self.build_dir)).strip()
            if status:
                raise BuildError(f"Clone in {self.build_dir} is dirty, {'; '.join(status.splitlines())}")
            revision = self.local.capture(commands.clone_revision(self.build_dir),
                                          dry_run_output=self.revision).strip()
        except CommandFailed as error:
            raise BuildError(f"Failed to validate clone: {error}") from error
        if revision != self.revision:
            raise BuildError(f"Clone in {self.build_dir} is not on the correct revision, "
                             f"expected `{self.revision}` but got `{revision}`")


def push(commander: Commander, *, output: str = "registry", no_cache: bool | None = None) -> None:
    """Kamal's ``build push``: build the image and push it to the registry."""
    config = commander.config
    no_cache = _no_cache_option() if no_cache is None else no_cache
    config.version  # noqa: B018 - worked out once, before the clone and the hooks
    commander.pre_connect()  # before the build: a remote builder or the pre-build hook may need it
    strategy = builders.select(commander)
    if strategy.uses_dockerfile:
        commands.check_dockerfile(config)  # in the working tree, before anything runs (Kamal: before the build)
    local = commander.executor.local()
    plain = check_docker(commander, local, strategy, output)
    if strategy.login_locally:
        login_locally(commander, local)
    commander.run_hook("pre-build")

    directory = None
    changes = git.uncommitted_changes() if git.used() else ""
    if config.builder.git_clone(git.used()):
        if changes:
            commander.output.say(f"Building from a local git clone, so ignoring these uncommitted changes:\n {changes}",
                                   colour="yellow")
        directory = Clone(commander, local).prepare()
    elif changes:
        commander.output.say(f"Building with uncommitted changes:\n {changes}", colour="yellow")

    session = commander.executor.local(builders.builder_secrets(config))
    request = builders.BuildRequest(output=output, no_cache=no_cache)
    if not plain:
        strategy.ensure(session)
    with _working_directory(None if commander.dry_run else directory):
        try:
            (strategy.build_plain if plain else strategy.build)(session, request)
        except CommandFailed as error:
            raise BuildError(f"Building the image failed: {error}") from error


def deliver(commander: Commander) -> None:
    """Kamal's ``build deliver``: push, then pull on the servers."""
    push(commander)
    pull(commander)


def dev(commander: Commander, *, output: str = "docker", no_cache: bool = False) -> None:
    """Kamal's ``build dev``: the working tree as it is, tagged ``-dirty``, into the local image store."""
    config = commander.config
    strategy = builders.select(commander)
    local = commander.executor.local()
    plain = check_docker(commander, local, strategy, output)
    if git.used():
        _warn_dev_files(commander)
    session = commander.executor.local(builders.builder_secrets(config))
    request = builders.BuildRequest(output=output, no_cache=no_cache, dirty=True)
    try:
        (strategy.build_plain if plain else strategy.build)(session, request)
    except CommandFailed as error:
        raise BuildError(f"Building the image failed: {error}") from error


def _warn_dev_files(commander: Commander) -> None:
    """Uncommitted and untracked files that get into the build context (``.dockerignore`` applied)."""
    context = commander.config.builder.context
    included = set(_context_files(context))
    groups = (("Files with uncommitted changes", _git_lines("diff", "--name-only", "HEAD")),
              ("Untracked files", _git_lines("ls-files", "--others", "--exclude-standard")))
    for title, files in groups:
        found = sorted(included & set(files))
        if found:
            commander.output.say(f"WARNING: {title} will be present in the dev container:", colour="yellow")
            for name in found:
                commander.output.say(f"  {name}", colour="yellow")
            commander.output.say("")


def _git_lines(*args: str) -> list[str]:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    return [line for line in proc.stdout.splitlines() if line] if proc.returncode == 0 else []


def _context_files(context: str) -> list[str]:
    """Files of the build context (relative to the working directory) that ``.dockerignore`` lets in."""
    base = Path(context)
    patterns: list[str] = []
    ignore = base / ".dockerignore"
    if ignore.exists():
        patterns = [line.strip() for line in ignore.read_text().splitlines()
                    if line.strip() and not line.strip().startswith("#")]
    found = []
    for path in base.rglob("*"):
        if path.is_dir() or ".git" in path.relative_to(base).parts[:1]:
            continue
        relative = path.relative_to(base).as_posix()
        if not builders.docker_ignored(relative, patterns):
            found.append(os.path.normpath(os.path.join(context, relative)))
    return found


def _strategy(commander: Commander) -> BuilderStrategy:
    return builders.select(commander)


OUTPUT = click.option("--output", default="registry", show_default=True, metavar="EXPORT_TYPE", help=OUTPUT_HELP)
NO_CACHE = click.option("--no-cache", "no_cache", is_flag=True, help=NO_CACHE_HELP)


@build_group.command("push")
@OUTPUT
@NO_CACHE
def build_push(output: str, no_cache: bool) -> None:
    """Build the app image and push it to the registry."""
    push(current_run().commander, output=output, no_cache=no_cache)


@build_group.command("deliver")
def build_deliver() -> None:
    """Build the app image, push it to the registry, then pull it onto the servers."""
    deliver(current_run().commander)


@build_group.command("create")
def build_create() -> None:
    """Create the builder."""
    commander = current_run().commander
    strategy = _strategy(commander)
    strategy.create(commander.executor.local())


@build_group.command("remove")
def build_remove() -> None:
    """Remove the builder."""
    commander = current_run().commander
    _strategy(commander).remove(commander.executor.local())


@build_group.command("details")
def build_details() -> None:
    """Show the builder: its kind, Docker's contexts and builders."""
    commander = current_run().commander
    strategy = _strategy(commander)
    click.echo(f"Builder: {strategy.name}")
    text = strategy.details(commander.executor.local())
    if text:
        click.echo(text)


@build_group.command("dev")
@click.option("--output", default="docker", show_default=True, metavar="EXPORT_TYPE", help=OUTPUT_HELP)
@NO_CACHE
def build_dev(output: str, no_cache: bool) -> None:
    """Build the working tree as it is, tagged -dirty, into the local image store."""
    dev(current_run().commander, output=output, no_cache=no_cache)


@hookimpl
def kamalpy_register_commands(cli: click.Group) -> None:
    cli.add_command(build_group)


@hookimpl
def kamalpy_flow_steps() -> dict[str, Any]:
    return {"build.push": lambda step: push(step.commander), "build.pull": lambda step: pull(step.commander)}
