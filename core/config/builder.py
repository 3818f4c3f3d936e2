"""The ``builder:`` section: architectures, local/remote choice, buildpacks, cache and build inputs (pure facts).

Facts that need the machine (the local Docker architecture, whether the project is a git repository) are
passed in by the caller, so this module never runs anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kamalpy.errors import ConfigurationError

CONTEXT = "builder"
DEFAULT_DRIVER = "docker-container"
DEFAULT_DOCKERFILE = "Dockerfile"


def validate_builder(raw: Any) -> None:
    """The one builder rule the schema lacks (cache type, arch and local/remote are the schema's)."""
    raw = raw if isinstance(raw, Mapping) else {}
    if raw.get("pack") and isinstance(raw.get("arch"), list) and len(raw["arch"]) > 1:
        raise ConfigurationError(f"{CONTEXT}: buildpacks only support building for one arch")


class Builder:
    def __init__(self, raw: Mapping[str, Any] | None, *, service: str, image: str | None,
                 registry_server: str | None) -> None:
        self.raw: dict[str, Any] = dict(raw or {})
        self.service = service
        self.image = image
        self.registry_server = registry_server

    def to_h(self) -> dict[str, Any]:
        """What ``kamal config`` shows: the section as written."""
        return dict(self.raw)

    @property
    def arches(self) -> list[str]:
        arch = self.raw.get("arch")
        return [str(a) for a in arch] if isinstance(arch, list) else [str(arch)] if arch else []

    @property
    def platform(self) -> str:
        """``--platform`` value, e.g. ``linux/amd64,linux/arm64``."""
        return ",".join(f"linux/{arch}" for arch in self.arches)

    @property
    def remote(self) -> str | None:
        return self.raw.get("remote") or None

    @property
    def local_disabled(self) -> bool:
        return self.raw.get("local") is False

    def local_arches(self, docker_arch: str | None) -> list[str]:
        """Arches built on this machine, given its Docker architecture (``amd64``/``arm64``)."""
        if self.local_disabled:
            return []
        if self.remote:
            return [arch for arch in self.arches if arch == docker_arch]
        return self.arches

    def remote_arches(self, docker_arch: str | None) -> list[str]:
        if not self.remote:
            return []
        local = self.local_arches(docker_arch)
        return [arch for arch in self.arches if arch not in local]

    def uses_remote(self, docker_arch: str | None) -> bool:
        return bool(self.remote_arches(docker_arch))

    def uses_local(self, docker_arch: str | None) -> bool:
        return not self.local_disabled and (not self.arches or bool(self.local_arches(docker_arch)))

    @property
    def remote_is_ssh(self) -> bool:
        return bool(self.remote) and str(self.remote).startswith("ssh://")

    @property
    def pack(self) -> dict[str, Any] | None:
        pack = self.raw.get("pack")
        return dict(pack) if isinstance(pack, Mapping) else None

    @property
    def pack_builder(self) -> str | None:
        return (self.pack or {}).get("builder")

    @property
    def pack_buildpacks(self) -> list[str]:
        return list((self.pack or {}).get("buildpacks") or [])

    @property
    def driver(self) -> str:
        return str(self.raw.get("driver", DEFAULT_DRIVER))

    @property
    def docker_driver(self) -> bool:
        return self.driver == "docker"

    @property
    def cloud_driver(self) -> bool:
        """Docker Build Cloud (``driver: cloud org/name``)."""
        return self.driver.startswith("cloud")

    @property
    def cloud_endpoint(self) -> str | None:
        return self.driver.split(" ", 1)[1].strip() if self.cloud_driver and " " in self.driver else None

    @property
    def cached(self) -> bool:
        return bool(self.raw.get("cache"))

    @property
    def cache(self) -> dict[str, Any]:
        return dict(self.raw.get("cache") or {})

    @property
    def cache_image(self) -> str:
        return self.cache.get("image") or f"{self.image}-build-cache"

    @property
    def cache_image_ref(self) -> str:
        return "/".join(p for p in (self.registry_server, self.cache_image) if p)

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.raw.get("args") or {})

    @property
    def secrets(self) -> list[str]:
        return [str(s) for s in self.raw.get("secrets") or []]

    @property
    def dockerfile(self) -> str:
        return str(self.raw.get("dockerfile") or DEFAULT_DOCKERFILE)

    @property
    def target(self) -> str | None:
        return self.raw.get("target")

    @property
    def context_setting(self) -> str | None:
        """``builder.context`` as written: None means a git-clone build when in a git repository."""
        context = self.raw.get("context")
        return None if context is None else str(context)

    @property
    def context(self) -> str:
        return self.context_setting or "."

    def git_clone(self, git_used: bool) -> bool:
        return git_used and self.context_setting is None

    @property
    def ssh(self) -> str | None:
        return self.raw.get("ssh")

    @property
    def provenance(self) -> Any:
        return self.raw.get("provenance")

    @property
    def sbom(self) -> Any:
        return self.raw.get("sbom")
