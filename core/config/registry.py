"""The ``registry:`` section (root or per accessory): server, credentials, local-registry detection.

Which credentials are required, and their form, is checked by the schema (``schema/kamal.json``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from kamalpy.errors import ConfigurationError

_LOCAL = re.compile(r"^localhost[:$]")
DEFAULT_LOCAL_PORT = 5000
# The image of the local registry container: Kamal's, unless kamalpy's own ``local_image`` key says otherwise.
DEFAULT_LOCAL_IMAGE = "registry:3"


def _is_local(server: Any) -> bool:
    return bool(server) and bool(_LOCAL.match(str(server)))


class Registry:
    def __init__(self, raw: Mapping[str, Any] | None, lookup: Callable[[str], str] | None = None) -> None:
        self.raw: dict[str, Any] = dict(raw or {})
        self._lookup = lookup

    @property
    def server(self) -> str | None:
        server = self.raw.get("server")
        return None if server is None else str(server)

    @property
    def local(self) -> bool:
        """A ``localhost:PORT`` registry that kamalpy runs itself and reaches the servers through."""
        return _is_local(self.server)

    @property
    def local_port(self) -> int | None:
        if not self.local:
            return None
        _, _, port = str(self.server).partition(":")
        return int(port) if port.isdigit() else DEFAULT_LOCAL_PORT

    @property
    def local_image(self) -> str:
        """The image ``registry setup`` runs as the local registry (kamalpy only; Kamal always runs ``registry:3``).

        Useful where Docker Hub is out of reach: any image serving the Docker registry API on port 5000.
        """
        return str(self.raw.get("local_image") or DEFAULT_LOCAL_IMAGE)

    def secret_name(self, key: str) -> str | None:
        """The secret a credential is read from (``[NAME]``), None when written in clear."""
        value = self.raw.get(key)
        return str(value[0]) if isinstance(value, list) and value else None

    def _credential(self, key: str) -> str | None:
        name = self.secret_name(key)
        if name is not None:
            if self._lookup is None:
                raise ConfigurationError(f"No secrets available to look up registry {key}")
            return self._lookup(name)
        value = self.raw.get(key)
        return None if value is None else str(value)

    @property
    def username(self) -> str | None:
        return self._credential("username")

    @property
    def password(self) -> str | None:
        return self._credential("password")
