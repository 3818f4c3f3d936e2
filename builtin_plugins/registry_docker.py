"""Built-in plugin: the ``docker`` registry strategy (``docker login SERVER -u USER --password-stdin``).

The password goes on the command's standard input: it is on no command line, in no process list, log or
dry-run output. This is the base class's behaviour; the plugin offers it under its name.
"""

from __future__ import annotations

from typing import Any

from kamalpy.plugin import RegistryStrategy, hookimpl


class DockerLogin(RegistryStrategy):
    """A registry with a username and password (Docker Hub when ``registry.server`` is not set)."""

    name = "docker"


@hookimpl
def kamalpy_registry_strategies() -> dict[str, Any]:
    return {DockerLogin.name: DockerLogin}
