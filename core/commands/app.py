"""App containers of one role (``Kamal::Commands::App``): run, stop, find, list, remove, exec, logs.

Every builder takes the role (its ``config`` is the configuration) and, where Kamal's does, the host.
The version is the configuration's unless a builder takes one. Random name parts are parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from kamalpy.commands.assets import asset_volume_directory
from kamalpy.commands.base import (
    Command,
    Piece,
    chain,
    docker,
    flatten,
    interactive_args,
    join,
    make_directory,
    pipe,
    shell,
)
from kamalpy.commands.env_file import env_file
from kamalpy.commands.layout import NETWORK, random_hex, volume_arg
from kamalpy.commands.ssh import run_over_ssh
from kamalpy.config.args import argumentize

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration
    from kamalpy.config.roles import Role

__all__ = ["ACTIVE_STATUSES", "HEALTH_LOG_FORMAT", "HEALTH_STATUS_FORMAT", "asset_volume_args", "container_filter_args",
           "container_health_log", "container_id_for", "container_id_for_version", "container_name",
           "current_running_container_id", "current_running_version", "env_file_body", "exec_container_name",
           "execute_in_existing_container", "execute_in_existing_container_over_ssh", "execute_in_new_container",
           "execute_in_new_container_over_ssh", "follow_logs", "info", "list_container_names", "list_containers",
           "list_images", "list_service_containers", "list_versions", "logs",
           "make_env_directory", "remove_container", "remove_containers",
           "remove_images", "rename_container", "restart_policy", "run", "start", "status", "stop", "stop_args",
           "tag_latest_image", "xargs"]

ACTIVE_STATUSES = ("running", "restarting")
HEALTH_STATUS_FORMAT = "'{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}'"
HEALTH_LOG_FORMAT = "'{{json .State.Health}}'"
DEFAULT_RESTART_POLICY = "unless-stopped"


def xargs(command: Piece) -> Command:
    return flatten("xargs", command)


# ----- names and per-role values -----

def container_name(role: Role, version: str | None = None) -> str:
    """``<service>-<role>[-<destination>]-<version>``."""
    return role.container_name(version)


def exec_container_name(role: Role, suffix: str | None = None) -> str:
    """``<prefix>-exec-<version>-<6 hex>`` for ``app exec`` in a new container."""
    return f"{role.container_prefix}-exec-{role.config.version}-{suffix or random_hex(3)}"


def restart_policy(role: Role) -> str:
    """``unless-stopped``; Kamal 2.12 lets ``options.restart`` choose (2.11's schema refuses it)."""
    return str(role.options.get("restart") or DEFAULT_RESTART_POLICY)


def stop_args(role: Role) -> list[str]:
    """``-t N`` from ``stop_timeout`` (role, then root), else ``drain_timeout`` for a role without proxy.

    A proxied role gets nothing: kamal-proxy has drained its requests already.
    """
    timeout = role.settings.get("stop_timeout") or role.config.stop_timeout
    if timeout is None and not role.running_proxy:
        timeout = role.config.drain_timeout
    return argumentize("-t", timeout) if timeout is not None else []


def asset_volume_args(role: Role, version: str | None = None) -> list[str]:
    """``--volume $PWD/.kamal/apps/<app>/assets/volumes/<role>-<version>:<asset_path>[:opts]`` for asset roles."""
    if not role.assets:
        return []
    return volume_arg(asset_volume_directory(role, version), str(role.asset_path), role.asset_path_options)


def env_file_body(role: Role, host: str) -> str:
    """The role's secret env for ``host``, as uploaded to ``role.secrets_path`` (mode 0600)."""
    return env_file(role.env(host).secrets())


def make_env_directory(role: Role) -> Command:
    return make_directory(f"{role.config.env_directory}/roles")


# ----- run, start, stop, status -----

def run(role: Role, host: str, *, hostname: str | None = None) -> Command:
    """``docker run --detach`` of the role's container for the configuration's version on ``host``.

    ``hostname``: the ``--hostname`` value (the boot passes ``container_hostname(host)``).
    """
    config = role.config
    name = container_name(role)
    destination = ["--env", f'KAMAL_DESTINATION="{config.destination}"'] if config.destination else []
    return docker("run", "--detach", "--restart", restart_policy(role), "--name", name, "--network", NETWORK,
                  ["--hostname", hostname] if hostname else None,
                  "--env", f'KAMAL_CONTAINER_NAME="{name}"',
                  "--env", f'KAMAL_VERSION="{config.version}"',
                  "--env", f'KAMAL_HOST="{host}"',
                  destination, role.env_args(host), role.logging_args(), config.volume_args(),
                  asset_volume_args(role), role.label_args(), role.option_args(),
                  config.absolute_image, role.cmd)


def start(role: Role) -> Command:
    return docker("start", container_name(role))


def container_id_for(name: str, *, only_running: bool = False) -> Command:
    """The id of the container named exactly ``name`` (any state unless ``only_running``)."""
    return docker("container", "ls", None if only_running else "--all", "--filter", f"'name=^{name}$'", "--quiet")


def container_id_for_version(role: Role, version: str | None = None, *, only_running: bool = False) -> Command:
    """Also the same-version clash check before a boot (non-empty output: rename the old one first)."""
    return container_id_for(container_name(role, version), only_running=only_running)


def status(role: Role, version: str) -> Command:
    """``healthy``/``unhealthy``/``starting`` with a health check, else the state (``running``, ``exited``...)."""
    return pipe(container_id_for_version(role, version), xargs(docker("inspect", "--format", HEALTH_STATUS_FORMAT)))


READY_POLL = 0.1  # seconds between looks at a booting container's status, on the server


def wait_until_ready(role: Role, version: str, timeout: int, readiness_delay: float) -> Command:
    """One shell loop on the server in place of Kamal's round trip per look at :func:`status`.

    Kamal's rule: ready when ``healthy``, or when ``running`` still after ``readiness_delay`` (a container
    that exits at once is caught); else it looks again until ``timeout``. Better than Kamal on purpose: a
    container that Docker restarted in between (``--restart unless-stopped`` brings a crashing app back, and
    two looks can both see it running) is not ready, by its restart count. The loop looks every
    :data:`READY_POLL` seconds (one ``docker inspect`` of the container by name), so a container is seen
    ready within about that of Docker marking it so. Prints the last status (``restarting`` for a crash
    loop); exit 1: not ready in time.
    """
    look = join(docker("inspect", "--format", HEALTH_STATUS_FORMAT[:-1] + " {{.RestartCount}}'",
                       container_name(role, version)))
    # One shell line as the command's single part: sent as it is (see base.render). A subshell, so that its
    # `exit` ends the loop, not a script of several steps (Session.script) that it is part of.
    return [f"(end=$(($(date +%s)+{timeout})); seen=; while :; do s=$({look} 2>/dev/null); st=${{s% *}}; "
            f'if [ "$st" = healthy ] || {{ [ "$st" = running ] && [ "$s" = "$seen" ]; }}; then echo "$st"; exit 0; fi; '
            f'if [ "$st" = running ]; then [ -z "$seen" ] || st=restarting; seen=$s; '
            f'[ "$(date +%s)" -lt "$end" ] || {{ echo "$st"; exit 1; }}; sleep {readiness_delay}; continue; fi; '
            f'seen=; [ "$(date +%s)" -lt "$end" ] || {{ echo "${{st:-missing}}"; exit 1; }}; sleep {READY_POLL}; done)']


def stop(role: Role, version: str | None = None, *, args: Sequence[str] | None = None) -> Command:
    """Stop the container of ``version``, or the current running one (``args``: instead of :func:`stop_args`)."""
    found = container_id_for_version(role, version) if version else current_running_container_id(role)
    return pipe(found, xargs(docker("stop", *(stop_args(role) if args is None else args))))


def info(role: Role) -> Command:
    return docker("ps", *container_filter_args(role))


# ----- the current container and versions -----

def container_filter_args(role: Role, statuses: Sequence[str] = ()) -> list[str]:
    """``--filter label=service=S --filter label=destination=D --filter label=role=R [--filter status=..]``.

    Without a destination the filter is ``label=destination=`` (matches the bare ``--label destination``).
    """
    config = role.config
    filters = [f"label=service={config.service}", f"label=destination={config.destination or ''}",
               f"label=role={role.name}", *(f"status={s}" for s in statuses)]
    return argumentize("--filter", filters)


def _latest_image_id(config: Configuration) -> Command:
    return docker("image", "ls", *argumentize("--filter", f"reference={config.latest_image}"), "--format", "'{{.ID}}'")


def _latest_container(role: Role, fmt: str, filters: Sequence[str] = ()) -> Command:
    return docker("ps", "--latest", fmt, *container_filter_args(role, ACTIVE_STATUSES),
                  *argumentize("--filter", filters))


def _current_running_container(role: Role, fmt: str) -> Command:
    # Prefer a container of the latest image, else any running one; both in one shell so `head` sees one stream.
    latest_image = _latest_container(role, fmt, [f"ancestor=$({join(_latest_image_id(role.config))})"])
    return pipe(shell(chain(latest_image, _latest_container(role, fmt))), ["head", "-1"])


def current_running_container_id(role: Role) -> Command:
    return _current_running_container(role, "--quiet")


def _extract_version_from_name(role: Role) -> str:
    return f"while read line; do echo ${{line#{role.container_prefix}-}}; done"


def current_running_version(role: Role) -> Command:
    """The version of the running container (its name without ``<prefix>-``); empty output when none runs."""
    return pipe(_current_running_container(role, "--format '{{.Names}}'"), _extract_version_from_name(role))


def list_versions(role: Role, *docker_args: str, statuses: Sequence[str] = ()) -> Command:
    """Versions of the role's containers (``docker ps``: running ones unless ``-a`` is passed)."""
    return pipe(docker("ps", *container_filter_args(role, statuses), *docker_args, "--format", '"{{.Names}}"'),
                _extract_version_from_name(role))


# ----- containers and images -----

def list_containers(role: Role) -> Command:
    return docker("container", "ls", "--all", *container_filter_args(role))


def list_service_containers(config: Configuration) -> Command:
    """Every container of the service and destination, all roles (``app containers``: Kamal's role-less app)."""
    filters = [f"label=service={config.service}", f"label=destination={config.destination or ''}"]
    return docker("container", "ls", "--all", *argumentize("--filter", filters))


def list_container_names(role: Role) -> Command:
    return [*list_containers(role), "--format", "'{{ .Names }}'"]


def remove_container(role: Role, version: str) -> Command:
    return pipe(container_id_for_version(role, version), xargs(docker("container", "rm")))


def rename_container(role: Role, version: str, new_version: str) -> Command:
    """``new_version`` is usually ``layout.replaced_version(version)``."""
    return docker("rename", container_name(role, version), container_name(role, new_version))


def remove_containers(role: Role) -> Command:
    return docker("container", "prune", "--force", *container_filter_args(role))


def container_health_log(role: Role, version: str) -> Command:
    return pipe(container_id_for_version(role, version), xargs(docker("inspect", "--format", HEALTH_LOG_FORMAT)))


def list_images(config: Configuration) -> Command:
    return docker("image", "ls", config.repository)


def remove_images(config: Configuration) -> Command:
    return docker("image", "prune", "--all", "--force", *argumentize("--filter", f"label=service={config.service}"))


def tag_latest_image(config: Configuration) -> Command:
    return docker("tag", config.absolute_image, config.latest_image)


# ----- logs -----

def _container_id_command(role: Role, container_id: str | Sequence[str] | None) -> Piece:
    if container_id is None:
        return current_running_container_id(role)
    if isinstance(container_id, str):
        return f"echo {container_id}"  # Kamal 2.11: one part, sent as it is
    return list(container_id)


def logs(role: Role, *, container_id: str | Sequence[str] | None = None, timestamps: bool = True,
         since: str | None = None, lines: int | str | None = None, grep: str | None = None,
         grep_options: str | None = None) -> Command:
    """The logs of the current container (or of ``container_id``), optionally through ``grep 'PATTERN'``."""
    docker_logs = ("xargs docker logs" + (" --timestamps" if timestamps else "")
                   + (f" --since {since}" if since else "") + (f" --tail {lines}" if lines else "") + " 2>&1")
    grep_part = f"grep '{grep}'" + (f" {grep_options}" if grep_options else "") if grep else None
    return pipe(_container_id_command(role, container_id), docker_logs, grep_part)


def follow_logs(role: Role, host: str, *, container_id: str | Sequence[str] | None = None, timestamps: bool = True,
                lines: int | str | None = None, grep: str | None = None, grep_options: str | None = None) -> str:
    """The local ``ssh -t ... '<logs --follow>'`` command line (run interactively, not over the pool)."""
    docker_logs = ("xargs docker logs" + (" --timestamps" if timestamps else "") + (f" --tail {lines}" if lines else "")
                   + " --follow 2>&1")
    grep_part = f'grep "{grep}"' + (f" {grep_options}" if grep_options else "") if grep else None
    return run_over_ssh(role.config, join(pipe(_container_id_command(role, container_id), docker_logs, grep_part)),
                        host)


# ----- exec -----

def execute_in_existing_container(role: Role, *command: str, env: Mapping[str, object] | None = None,
                                  interactive: bool = False, tty: bool = True) -> Command:
    """``docker exec [-it|-i] [--env K="v"].. <container> CMD``; ``tty``: whether the local stdin is a terminal."""
    return docker("exec", interactive_args(interactive, tty), argumentize("--env", env or {}), container_name(role),
                  *command)


def execute_in_new_container(role: Role, host: str, *command: str, env: Mapping[str, object] | None = None,
                             interactive: bool = False, tty: bool = True, detach: bool = False,
                             suffix: str | None = None) -> Command:
    """``docker run --rm`` (or ``--detach``) of the image with the role's env, logging, volumes and options."""
    config = role.config
    return docker("run", interactive_args(interactive, tty), "--detach" if detach else None,
                  None if detach else "--rm", "--name", exec_container_name(role, suffix), "--network", NETWORK,
                  role.env_args(host), argumentize("--env", env or {}), role.logging_args(), config.volume_args(),
                  role.option_args(), config.absolute_image, *command)


def execute_in_existing_container_over_ssh(role: Role, host: str, *command: str,
                                           env: Mapping[str, object] | None = None, tty: bool = True) -> str:
    return run_over_ssh(role.config, join(execute_in_existing_container(role, *command, env=env, interactive=True,
                                                                        tty=tty)), host)


def execute_in_new_container_over_ssh(role: Role, host: str, *command: str, env: Mapping[str, object] | None = None,
                                      tty: bool = True, suffix: str | None = None) -> str:
    return run_over_ssh(role.config, join(execute_in_new_container(role, host, *command, env=env, interactive=True,
                                                                   tty=tty, suffix=suffix)), host)
