"""Checking, installing and preparing Docker on a server (``kamal server bootstrap``)."""

from __future__ import annotations

from kamalpy.commands.base import Command, any_of, docker, pipe, shell
from kamalpy.config.accessory import DEFAULT_NETWORK as NETWORK

GET_DOCKER_URL = "https://get.docker.com"


def _get_docker() -> Command:
    return shell(any_of(["curl", "-fsSL", GET_DOCKER_URL], ["wget", "-O -", GET_DOCKER_URL], ["echo", '"exit 1"']))


def install() -> Command:
    """Docker's convenience install script, fetched with curl or wget, piped to sh."""
    return pipe(_get_docker(), "sh")


def installed() -> Command:
    """Fails when the docker client is missing."""
    return docker("-v")


def running() -> Command:
    """Fails when the docker daemon is not reachable."""
    return docker("version")


# The checks below are single shell strings: SSHKit sends a first part containing spaces as it is.

def superuser() -> Command:
    """Root, or allowed to use sudo without a password (needed to install Docker)."""
    return ['[ "${EUID:-$(id -u)}" -eq 0 ] || sudo -nl usermod >/dev/null']


def root() -> Command:
    return ['[ "${EUID:-$(id -u)}" -eq 0 ]']


def in_docker_group() -> Command:
    return ['id -nG "${USER:-$(id -un)}" | grep -qw docker']


def add_to_docker_group() -> Command:
    return ['sudo -n usermod -aG docker "${USER:-$(id -un)}"']


def refresh_session() -> Command:
    """Hang up the SSH session so the next one sees the new group (the caller expects the connection to drop)."""
    return ["kill -HUP $PPID"]


def create_network() -> Command:
    """Errors with "already exists" on later runs; callers ignore that."""
    return docker("network", "create", NETWORK)
