"""Accessory containers (``Kamal::Commands::Accessory``): run, start, stop, find, logs, exec, remove.

Every builder takes the :class:`~kamalpy.config.accessory.Accessory`; the strings are Kamal's byte for byte
(reference section 7.4), including the double spaces of ``docker logs NAME  --since X  --tail N``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kamalpy.commands.base import Command, docker, interactive_args, join, make_directory, pipe
from kamalpy.commands.env_file import env_file
from kamalpy.commands.layout import PROXY_CONTAINER
from kamalpy.commands.ssh import run_over_ssh
from kamalpy.config.args import optionize
from kamalpy.errors import KamalpyError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.accessory import Accessory, MountedPath
    from kamalpy.config.proxy import Proxy

RESTART_POLICY = "unless-stopped"  # Kamal 2.11 refuses any other (reference section 13)
FOLLOW_LINES = "10"


class MissingFile(KamalpyError):
    """A local file named in ``files:`` does not exist."""


def service_filter(accessory: Accessory) -> list[str]:
    return ["--filter", f"label=service={accessory.service_name}"]


def run(accessory: Accessory, host: str | None = None) -> Command:
    """``docker run --name <svc> --detach ...``; with ``host``, ``--env KAMAL_HOST="<host>"`` after the ports."""
    config = accessory.config
    kamal_host = ["--env", f'KAMAL_HOST="{host}"'] if host else None
    return docker("run", "--name", accessory.service_name, "--detach", "--restart", RESTART_POLICY,
                  accessory.network_args(), config.logging_args(), accessory.publish_args(), kamal_host,
                  accessory.env_args(), accessory.volume_args(), accessory.label_args(), accessory.option_args(),
                  accessory.image, accessory.cmd)


def start(accessory: Accessory) -> Command:
    return docker("container", "start", accessory.service_name)


def stop(accessory: Accessory) -> Command:
    return docker("container", "stop", accessory.service_name)


def info(accessory: Accessory, *, all_states: bool = False, quiet: bool = False) -> Command:
    """``docker ps [-a] [-q] --filter label=service=<svc>`` (``-a -q``: does a container exist at all?)."""
    return docker("ps", "-a" if all_states else None, "-q" if quiet else None, service_filter(accessory))


def container_id(accessory: Accessory) -> Command:
    """The id of the running container named exactly like the service (the proxy's target)."""
    return docker("container", "ls", "--filter", f"'name=^{accessory.service_name}$'", "--quiet")


def logs(accessory: Accessory, *, timestamps: bool = True, since: str | None = None, lines: int | str | None = None,
         grep: str | None = None, grep_options: str | None = None) -> Command:
    # The leading spaces of " --since X" / " --tail N" are Kamal's: they make its double spaces.
    return pipe(docker("logs", accessory.service_name, f" --since {since}" if since else None,
                       f" --tail {lines}" if lines else None, "--timestamps" if timestamps else None, "2>&1"),
                f"grep '{grep}'" + (f" {grep_options}" if grep_options else "") if grep else None)


def follow_logs(accessory: Accessory, host: str, *, timestamps: bool = True, grep: str | None = None,
                grep_options: str | None = None) -> str:
    """The local ``ssh -t ... 'docker logs <svc> --timestamps --tail 10 --follow 2>&1'`` line."""
    command = pipe(docker("logs", accessory.service_name, "--timestamps" if timestamps else None,
                          "--tail", FOLLOW_LINES, "--follow", "2>&1"),
                   f'grep "{grep}"' + (f" {grep_options}" if grep_options else "") if grep else None)
    return run_over_ssh(accessory.config, join(command), host)


def execute_in_existing_container(accessory: Accessory, *command: str, interactive: bool = False,
                                  tty: bool = True) -> Command:
    """``docker exec [-it|-i] <svc> CMD``; ``tty``: whether the local stdin is a terminal (else ``-i``, piped)."""
    return docker("exec", interactive_args(interactive, tty), accessory.service_name, *command)


def execute_in_new_container(accessory: Accessory, *command: str, interactive: bool = False,
                             tty: bool = True) -> Command:
    return docker("run", interactive_args(interactive, tty), "--rm", accessory.network_args(), accessory.env_args(),
                  accessory.volume_args(), accessory.option_args(), accessory.image, *command)


def execute_in_existing_container_over_ssh(accessory: Accessory, host: str, *command: str, tty: bool = True) -> str:
    return run_over_ssh(accessory.config,
                        join(execute_in_existing_container(accessory, *command, interactive=True, tty=tty)), host)


def execute_in_new_container_over_ssh(accessory: Accessory, host: str, *command: str, tty: bool = True) -> str:
    return run_over_ssh(accessory.config,
                        join(execute_in_new_container(accessory, *command, interactive=True, tty=tty)), host)


def pull_image(accessory: Accessory) -> Command:
    return docker("image", "pull", accessory.image)


def remove_container(accessory: Accessory) -> Command:
    return docker("container", "prune", "--force", service_filter(accessory))


def remove_image(accessory: Accessory) -> Command:
    return docker("image", "rm", "--force", accessory.image)


def remove_service_directory(accessory: Accessory) -> Command:
    """``rm -rf <svc>`` (relative to the SSH user's home: the files and relative directories)."""
    return ["rm", "-rf", accessory.service_name]


def make_directory_for(path: str) -> Command:
    """``mkdir -p`` of the directory a file goes to."""
    return make_directory(str(Path(path).parent))


def ensure_env_directory(accessory: Accessory) -> Command:
    return make_directory(f"{accessory.config.env_directory}/accessories")


def env_file_body(accessory: Accessory) -> str:
    """The secret env, as uploaded to ``accessory.secrets_path`` (mode 0600)."""
    return env_file(accessory.env.secrets())


def directory_commands(path: MountedPath) -> list[Command]:
    """``mkdir -p``, then ``chmod``/``chown`` when set, of one ``directories:`` entry on the server."""
    where = directory_path(path)
    commands = [make_directory(where)]
    if path.mode:
        commands.append(["chmod", path.mode, where])
    if path.owner:
        commands.append(["chown", path.owner, where])
    return commands


def directory_path(path: MountedPath) -> str:
    """Where a directory is made: ``$PWD/<svc>/<local>`` for a relative one (as mounted), else as given."""
    return path.host_path if path.host_path.startswith("/") else f"$PWD/{path.host_path}"


def ensure_local_file_present(local: str) -> None:
    if not Path(local).exists():
        raise MissingFile(f"Missing file: {local}")


def file_permission_commands(path: MountedPath) -> list[Command]:
    """``chmod <mode>`` (default 755) and ``chown`` when set, after a ``files:`` entry is uploaded."""
    commands = [["chmod", path.mode or "755", path.host_path]]
    if path.owner:
        commands.append(["chown", path.owner, path.host_path])
    return commands


# ----- kamal-proxy routes of a proxied accessory (service: the accessory's service name) -----

def _proxy(accessory: Accessory) -> Proxy:
    proxy = accessory.proxy
    if proxy is None:
        raise ValueError(f"accessory {accessory.name} runs no proxy")  # a caller bug: only proxied ones get here
    return proxy


def proxy_deploy(accessory: Accessory, target: str) -> Command:
    """``docker exec kamal-proxy kamal-proxy deploy <svc> --target="<id>:<app_port>" ...``."""
    config = accessory.config
    proxy = _proxy(accessory)
    options = {"target": f"{target}:{proxy.app_port}",
               **proxy.deploy_options(deploy_timeout=config.deploy_timeout, drain_timeout=config.drain_timeout)}
    return docker("exec", PROXY_CONTAINER, "kamal-proxy", "deploy", accessory.service_name,
                  *optionize(options, with_="="))


def proxy_remove(accessory: Accessory) -> Command:
    return docker("exec", PROXY_CONTAINER, "kamal-proxy", "remove", accessory.service_name)
