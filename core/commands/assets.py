"""Asset bridging for proxied roles with ``asset_path`` (reference section 8.5).

During a switch, requests for either version's assets may reach either container. So each version's
assets are copied out of its image into ``extracted/<role>-<version>``, and the volume the new container
mounts gets the new files plus the old version's (and the old volume gets the new ones), never
overwriting (``cp -rnT``). Older directories are removed once the old container has stopped.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from kamalpy.commands.base import Command, chain, combine, docker, file_join, make_directory

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.roles import Role


def _version_directory(role: Role, kind: str, version: str | None) -> str:
    return file_join(role.config.assets_directory, kind, f"{role.name}-{version or role.config.version}")


def asset_extracted_directory(role: Role, version: str | None = None) -> str:
    return _version_directory(role, "extracted", version)


def asset_volume_directory(role: Role, version: str | None = None) -> str:
    return _version_directory(role, "volumes", version)


def asset_container(role: Role) -> str:
    return f"{role.container_prefix}-assets"


def extract_assets(role: Role) -> Command:
    """Copy ``asset_path`` out of the image (through a created, never started, container)."""
    container, target = asset_container(role), asset_extracted_directory(role)
    return combine(make_directory(target),
                   [*docker("container", "rm", container, "2> /dev/null"), "|| true"],
                   docker("container", "create", "--name", container, role.config.absolute_image),
                   docker("container", "cp", "-L", f"{container}:{role.asset_path}/.", target),
                   docker("container", "rm", container))


def _copy_contents(source: str, destination: str, *, continue_on_error: bool = False) -> Command:
    return ["cp", "-rnT", source, destination, *(["|| true"] if continue_on_error else [])]


def sync_asset_volumes(role: Role, old_version: str | None = None) -> Command:
    new_extracted, new_volume = asset_extracted_directory(role), asset_volume_directory(role)
    commands = [make_directory(new_volume), _copy_contents(new_extracted, new_volume)]
    if old_version:
        commands += [_copy_contents(new_extracted, asset_volume_directory(role, old_version), continue_on_error=True),
                     _copy_contents(asset_extracted_directory(role, old_version), new_volume, continue_on_error=True)]
    return chain(*commands)


def _remove_older_siblings(role: Role, path: str) -> Command:
    return ["find", posixpath.dirname(path), "-maxdepth 1", "-name", f"'{role.name}-*'",
            "!", "-name", posixpath.basename(path), '-exec rm -rf "{}" +']


def clean_up_assets(role: Role) -> Command:
    """Remove the extracted and volume directories of the role's other versions."""
    return chain(_remove_older_siblings(role, asset_extracted_directory(role)),
                 _remove_older_siblings(role, asset_volume_directory(role)))
