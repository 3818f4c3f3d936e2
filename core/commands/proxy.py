"""The kamal-proxy container on a host (``Kamal::Commands::Proxy``, ``Configuration::Proxy::Run``).

Two ways to run it: from ``proxy.run`` in the configuration (the flags are in the command), or, without
it, from the legacy boot files in ``.kamal/proxy/`` (``options``, ``image``, ``image_version``,
``run_command``), read on the host with defaults when missing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kamalpy.commands.base import (
    Command,
    any_of,
    chain,
    combine,
    docker,
    file_join,
    join,
    make_directory,
    pipe,
    remove_directory,
    remove_file,
)
from kamalpy.commands.docker import create_network
from kamalpy.commands.layout import (
    NETWORK,
    PROXY_APPS_DIRECTORY,
    PROXY_CONFIG_VOLUME,
    PROXY_CONTAINER,
    PROXY_HOST_DIRECTORY,
    PROXY_IMAGE_DEFAULT,
    proxy_apps_volume_args,
)
from kamalpy.commands.ssh import run_over_ssh
from kamalpy.config.args import argumentize, is_present, optionize
from kamalpy.config.gem_version import newer
from kamalpy.errors import ConfigurationError, KamalpyError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

__all__ = ["BOOT_CONFIG_DEPRECATION", "DEFAULT_HTTPS_PORT", "DEFAULT_HTTP_PORT", "DEFAULT_LOG_MAX_SIZE",
           "MINIMUM_VERSION", "ProxyVersionError", "boot_config", "boot_config_files", "check_minimum_version",
           "cleanup_traefik", "create_network", "default_boot_options", "ensure_apps_config_directory",
           "ensure_proxy_directory", "follow_logs", "info", "logs", "older_version", "read_boot_options",
           "read_image", "read_image_version", "read_run_command", "remove_container", "remove_image",
           "remove_proxy_directory", "reset_boot_config", "reset_boot_options", "reset_image", "reset_image_version",
           "reset_run_command", "run", "run_image", "start", "start_or_run", "stop", "version"]

MINIMUM_VERSION = "v0.9.2"
DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
DEFAULT_LOG_MAX_SIZE = "10m"
PROXY_TITLE_LABEL = "label=org.opencontainers.image.title=kamal-proxy"
TRAEFIK_TITLE_LABEL = "label=org.opencontainers.image.title=Traefik"

OPTIONS_FILE = file_join(PROXY_HOST_DIRECTORY, "options")
IMAGE_FILE = file_join(PROXY_HOST_DIRECTORY, "image")
IMAGE_VERSION_FILE = file_join(PROXY_HOST_DIRECTORY, "image_version")
RUN_COMMAND_FILE = file_join(PROXY_HOST_DIRECTORY, "run_command")


class ProxyVersionError(KamalpyError):
    """The running kamal-proxy is older than the version this deploy needs."""


# ----- the `proxy.run` settings -----

def _format_bind_ip(ip: Any) -> str | None:
    if ip is None:
        return None
    text = str(ip)
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return text
    return f"[{text}]"  # docker wants an IPv6 address in brackets


def publish_args(http_port: Any = DEFAULT_HTTP_PORT, https_port: Any = DEFAULT_HTTPS_PORT,
                 bind_ips: Any = None) -> str:
    """``--publish [IP:]HTTP:80 --publish [IP:]HTTPS:443`` for each bind IP, as one part (Kamal joins them)."""
    published = []
    for ip in bind_ips or [None]:
        prefix = [p for p in (_format_bind_ip(ip),) if p is not None]
        ports = [":".join([*prefix, str(http_port), str(DEFAULT_HTTP_PORT)]),
                 ":".join([*prefix, str(https_port), str(DEFAULT_HTTPS_PORT)])]
        published.append(" ".join(argumentize("--publish", ports)))
    return " ".join(published)


def _logging_args(max_size: Any) -> list[str]:
    return argumentize("--log-opt", f"max-size={max_size}") if is_present(max_size) else []


def default_boot_options() -> list[str]:
    """What the legacy boot runs with when ``.kamal/proxy/options`` is missing."""
    return [publish_args(), *_logging_args(DEFAULT_LOG_MAX_SIZE)]


def run_image(run: Mapping[str, Any]) -> str:
    """``[registry/]repository:version`` (default ``basecamp/kamal-proxy:v0.9.2``)."""
    repository = "/".join(str(p) for p in (run.get("registry"), run.get("repository", PROXY_IMAGE_DEFAULT))
                          if p is not None)
    return f"{repository}:{run.get('version', MINIMUM_VERSION)}"


def run_command(run: Mapping[str, Any]) -> str:
    """``kamal-proxy run [--debug] [--metrics-port "N"]`` as one part."""
    options = {"debug": run.get("debug") or None, "metrics-port": run.get("metrics_port")}
    return " ".join(["kamal-proxy", "run", *optionize({k: v for k, v in options.items() if v is not None})])


def run_docker_options(run: Mapping[str, Any]) -> list[str]:
    """apps-config volume, publish, log size, ``--expose`` of the metrics port, then ``options``."""
    publish = (publish_args(run.get("http_port", DEFAULT_HTTP_PORT), run.get("https_port", DEFAULT_HTTPS_PORT),
                            run.get("bind_ips")) if run.get("publish", True) else None)
    metrics = run.get("metrics_port")
    return [*proxy_apps_volume_args(), *([publish] if publish is not None else []),
            *_logging_args(run.get("log_max_size", DEFAULT_LOG_MAX_SIZE)),
            *([f"--expose={metrics}"] if is_present(metrics) else []),
            *optionize(run.get("options") or {})]


# ----- the container -----

def _docker_run_base() -> Command:
    return docker("run", "--name", PROXY_CONTAINER, "--network", NETWORK, "--detach", "--restart", "unless-stopped",
                  "--volume", PROXY_CONFIG_VOLUME)


def run(config: Configuration, host: str) -> Command:
    """Create and start the proxy container on ``host`` (from ``proxy.run``, else from the boot files)."""
    settings = config.proxy_run(host)
    if settings is not None:
        return [*_docker_run_base(), *run_docker_options(settings), run_image(settings), run_command(settings)]
    return pipe(boot_config(), ["xargs", *_docker_run_base(), *proxy_apps_volume_args()])


def start() -> Command:
    return docker("container", "start", PROXY_CONTAINER)


def stop(*, timeout: int | None = None) -> Command:
    return docker("container", "stop", f"--time {timeout}" if timeout else None, PROXY_CONTAINER)


def start_or_run(config: Configuration, host: str) -> Command:
    """Start the existing container, or create it (``proxy boot``)."""
    return any_of(start(), run(config, host))


def info() -> Command:
    return docker("ps", "--filter", f"'name=^{PROXY_CONTAINER}$'")


def version() -> Command:
    """The running image's tag (``v0.9.2``); empty output when there is no proxy container."""
    return pipe(docker("inspect", PROXY_CONTAINER, "--format '{{.Config.Image}}'"), ["awk", "-F:", "'{print $NF}'"])


def logs(*, timestamps: bool = True, since: str | None = None, lines: int | str | None = None,
         grep: str | None = None, grep_options: str | None = None) -> Command:
    grep_part = f"grep '{grep}'" + (f" {grep_options}" if grep_options else "") if grep else None
    return pipe(docker("logs", PROXY_CONTAINER, f"--since {since}" if since else None,
                       f"--tail {lines}" if lines else None, "--timestamps" if timestamps else None, "2>&1"),
                grep_part)


def follow_logs(config: Configuration, host: str, *, timestamps: bool = True, grep: str | None = None,
                grep_options: str | None = None) -> str:
    """The local ``ssh -t`` command line following the proxy's last 10 lines."""
    grep_part = f'grep "{grep}"' + (f" {grep_options}" if grep_options else "") if grep else None
    command = pipe(docker("logs", PROXY_CONTAINER, "--timestamps" if timestamps else None, "--tail", "10",
                          "--follow", "2>&1"), grep_part)
    return run_over_ssh(config, join(command), host)


def remove_container() -> Command:
    return docker("container", "prune", "--force", "--filter", PROXY_TITLE_LABEL)


def remove_image() -> Command:
    return docker("image", "prune", "--all", "--force", "--filter", PROXY_TITLE_LABEL)


def cleanup_traefik() -> Command:
    """Stop and remove a Kamal 1 Traefik container and its image."""
    return chain(docker("container", "stop", "traefik"),
                 combine(docker("container", "prune", "--force", "--filter", TRAEFIK_TITLE_LABEL),
                         docker("image", "prune", "--all", "--force", "--filter", TRAEFIK_TITLE_LABEL)))


def ensure_proxy_directory() -> Command:
    return make_directory(PROXY_HOST_DIRECTORY)


def remove_proxy_directory() -> Command:
    return remove_directory(PROXY_HOST_DIRECTORY)


def ensure_apps_config_directory() -> Command:
    return make_directory(PROXY_APPS_DIRECTORY)


# ----- legacy boot files (`proxy boot_config`) -----

def _read_file(path: str, default: str | None = None) -> Command:
    return any_of(["cat", path, "2> /dev/null"], ["echo", f'"{default or ""}"'])


def _substitute(command: Command) -> str:
    return f"$({join(command)})"


def read_boot_options() -> Command:
    return _read_file(OPTIONS_FILE, " ".join(default_boot_options()))


def read_image() -> Command:
    return _read_file(IMAGE_FILE, PROXY_IMAGE_DEFAULT)


def read_image_version() -> Command:
    return _read_file(IMAGE_VERSION_FILE, MINIMUM_VERSION)


def read_run_command() -> Command:
    return _read_file(RUN_COMMAND_FILE)


def boot_config() -> Command:
    """``echo <options> <image>:<version> <run command>``, each read from its file or defaulted."""
    return ["echo", f"{_substitute(read_boot_options())} {_substitute(read_image())}:"
                    f"{_substitute(read_image_version())} {_substitute(read_run_command())}"]


BOOT_CONFIG_DEPRECATION = ("The proxy boot_config command is deprecated - set the config in the deploy YAML at "
                           "proxy/run instead")
PROXY_IMAGE_NAME = "kamal-proxy"
PROXY_REPOSITORY_DEFAULT = PROXY_IMAGE_DEFAULT.rsplit("/", 1)[0]


def _check_publish_ip(ip: str) -> str:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise KamalpyError(f"Invalid publish IP address: {ip}") from None
    return ip


def boot_config_files(*, publish: bool = True, publish_host_ips: list[str] | tuple[str, ...] = (),
                      http_port: int = DEFAULT_HTTP_PORT, https_port: int = DEFAULT_HTTPS_PORT,
                      log_max_size: str = DEFAULT_LOG_MAX_SIZE, registry: str | None = None,
                      repository: str | None = None, image_version: str | None = None,
                      metrics_port: int | None = None, debug: bool = False,
                      docker_options: list[str] | tuple[str, ...] = ()) -> dict[str, str | None]:
    """``proxy boot_config set``: the content of each legacy boot file, None where the file goes (Kamal 2.11).

    A file whose content would be the default is removed rather than written, as Kamal does.
    """
    ips = [_check_publish_ip(ip) for ip in publish_host_ips]
    options = [*([publish_args(http_port, https_port, ips or None)] if publish else []),
               *_logging_args(log_max_size),
               *([f"--expose={metrics_port}"] if metrics_port is not None else []),
               *(f"--{option}" for option in docker_options)]
    image = "/".join(p for p in (registry or None, repository or PROXY_REPOSITORY_DEFAULT, PROXY_IMAGE_NAME) if p)
    run = run_command({"debug": debug, "metrics_port": metrics_port}) if debug or metrics_port is not None else None
    return {
        OPTIONS_FILE: None if options == default_boot_options() else " ".join(options),
        IMAGE_FILE: None if image == PROXY_IMAGE_DEFAULT else image,
        IMAGE_VERSION_FILE: image_version or None,
        RUN_COMMAND_FILE: run,
    }


def reset_boot_config() -> list[Command]:
    """``proxy boot_config reset``: remove every legacy boot file (Kamal ignores a missing one)."""
    return [reset_boot_options(), reset_image(), reset_image_version(), reset_run_command()]


def reset_boot_options() -> Command:
    return remove_file(OPTIONS_FILE)


def reset_image() -> Command:
    return remove_file(IMAGE_FILE)


def reset_image_version() -> Command:
    return remove_file(IMAGE_VERSION_FILE)


def reset_run_command() -> Command:
    return remove_file(RUN_COMMAND_FILE)


# ----- the minimum version -----

def older_version(version: str, other: str) -> bool:
    """``Gem::Version`` comparison of two tags without their leading ``v``."""
    return newer(other.removeprefix("v"), version.removeprefix("v"))


def check_minimum_version(version: str | None) -> None:
    """Refuse a running kamal-proxy older than :data:`MINIMUM_VERSION` (``version``: output of :func:`version`)."""
    found = (version or "").strip()
    if not found:
        return  # no proxy container yet
    try:
        too_old = older_version(found, MINIMUM_VERSION)
    except ConfigurationError as err:  # an image tag that is no version (Kamal fails the same way)
        raise ProxyVersionError(str(err)) from None
    if too_old:
        raise ProxyVersionError(f"kamal-proxy version {found} is too old, run `kamal proxy reboot` in order to "
                                f"update to at least {MINIMUM_VERSION}")
