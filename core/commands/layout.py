"""Names and on-host paths Kamal derives for app and proxy containers (reference section 9).

Only what the configuration model does not hold yet: the proxy's directories on the host and in its
container, the random parts of container names, and ``--volume`` values. The random hex parts are
parameters so tests (and a dry-run replay) can fix them.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from kamalpy.commands.base import file_join
from kamalpy.config.args import argumentize, is_present
from kamalpy.config.model import RUN_DIRECTORY
from kamalpy.config.proxy import APPS_CONFIG_CONTAINER_DIRECTORY

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

NETWORK = "kamal"
PROXY_CONTAINER = "kamal-proxy"
PROXY_IMAGE_DEFAULT = "basecamp/kamal-proxy"
PROXY_CONFIG_VOLUME = "kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy"
PROXY_HOST_DIRECTORY = file_join(RUN_DIRECTORY, "proxy")
PROXY_APPS_DIRECTORY = file_join(PROXY_HOST_DIRECTORY, "apps-config")
DRY_RUN_CONTAINER_ID = "<container id>"  # what a dry run shows for the id of a container it did not start
HOSTNAME_MAX = 51  # docker refuses hostnames over 64 characters; 51 + "-" + 12 hex fits


def volume_arg(host_path: str, container_path: str, options: str | None = None) -> list[str]:
    """``--volume HOST:CONTAINER[:OPTIONS]``; a relative host path is mounted from the remote ``$PWD``."""
    host = host_path if host_path.startswith("/") else file_join("$PWD", host_path)
    value = f"{host}:{container_path}" + (f":{options}" if is_present(options) else "")
    return argumentize("--volume", value)


def proxy_apps_volume_args() -> list[str]:
    return volume_arg(PROXY_APPS_DIRECTORY, APPS_CONFIG_CONTAINER_DIRECTORY)


def proxy_app_directory(config: Configuration) -> str:
    """``.kamal/proxy/apps-config/<service>[-<destination>]`` on the host."""
    return file_join(PROXY_APPS_DIRECTORY, config.service_and_destination)


def proxy_app_container_directory(config: Configuration) -> str:
    return file_join(APPS_CONFIG_CONTAINER_DIRECTORY, config.service_and_destination)


def error_pages_directory(config: Configuration) -> str:
    return file_join(proxy_app_directory(config), "error_pages")


def error_pages_container_directory(config: Configuration) -> str:
    return file_join(proxy_app_container_directory(config), "error_pages")


def tls_directory(config: Configuration, role_name: str) -> str:
    """Where a role's custom certificate (``cert.pem``, ``key.pem``) is uploaded."""
    return file_join(proxy_app_directory(config), "tls", role_name)


def tls_container_directory(config: Configuration, role_name: str) -> str:
    return file_join(proxy_app_container_directory(config), "tls", role_name)


def random_hex(nbytes: int) -> str:
    """Ruby's ``SecureRandom.hex(n)``: ``2 * n`` lowercase hex characters."""
    return secrets.token_hex(nbytes)


def container_hostname(host: str, suffix: str | None = None) -> str:
    """``<host[0,51] without a trailing dot>-<12 hex>`` (``--hostname`` of a booted container)."""
    base = host[:HOSTNAME_MAX]
    if base.endswith("."):
        base = base[:-1]  # Ruby's chomp(".") drops one dot
    return f"{base}-{suffix or random_hex(6)}"


def replaced_version(version: str, suffix: str | None = None) -> str:
    """The version an existing container of the version being booted is renamed to."""
    return f"{version}_replaced_{suffix or random_hex(8)}"
