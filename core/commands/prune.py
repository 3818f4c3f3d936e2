"""Removing old images and stopped containers of the service (``kamal prune``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kamalpy.commands.base import Command, docker, pipe

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

_STOPPED = ("created", "exited", "dead")


def _service_filter(config: Configuration) -> list[str]:
    return ["--filter", f"label=service={config.service}"]


def dangling_images(config: Configuration) -> Command:
    return docker("image", "prune", "--force", *_service_filter(config))


def _active_image_list(config: Configuration) -> str:
    # Images used by any container, plus repo:latest (kept for the next boot) and repo:<none> (dangling
    # images still in use; unused ones go with dangling_images).
    return (f"$(docker container ls -a --format '{{{{.Image}}}}\\|' --filter label=service={config.service}"
            f" | tr -d '\\n'){config.latest_image}\\|{config.repository}:<none>")


def tagged_images(config: Configuration) -> Command:
    return pipe(docker("image", "ls", *_service_filter(config), "--format", "'{{.ID}} {{.Repository}}:{{.Tag}}'"),
                ["grep", f'-v -w "{_active_image_list(config)}"'],
                "while read image tag; do docker rmi $tag; done")


def app_containers(config: Configuration, retain: int) -> Command:
    """Remove stopped containers of the service except the newest ``retain`` (any role or destination)."""
    statuses = [part for status in _STOPPED for part in ("--filter", f"status={status}")]
    return pipe(docker("ps", "-q", "-a", *_service_filter(config), *statuses),
                f"tail -n +{retain + 1}",
                "while read container_id; do docker rm $container_id; done")
