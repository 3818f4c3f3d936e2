"""Pulling the app image on the servers (``build pull``, reference section 6.6).

Each host pulls the image, then checks that it carries the ``service`` label every Kamal image is built
with: without it ``prune`` and the container filters would not find what this deploy starts. Kamal first
drops the host's copy (``docker image rm --force``); kamalpy does not, since a deploy that then finds the
lock held would have removed the image a running deploy pulled (docs/moving-from-kamal.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kamalpy.commands.base import Command, any_of, docker, pipe

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration

MIRROR_FORMAT = "--format '{{index .RegistryConfig.Mirrors 0}}'"


def pull(config: Configuration) -> Command:
    return docker("pull", config.absolute_image)


def validate_image(config: Configuration) -> Command:
    """Fails with ``Image <image> is missing the 'service' label`` unless the label names the service."""
    image = config.absolute_image
    return pipe(docker("inspect", "-f", "'{{ .Config.Labels.service }}'", image),
                any_of(["grep", "-x", str(config.service)],
                       f"(echo \"Image {image} is missing the 'service' label\" && exit 1)"))


def first_mirror() -> Command:
    """The host's first registry mirror (empty output without one): hosts sharing a mirror pull once first."""
    return docker("info", MIRROR_FORMAT)
