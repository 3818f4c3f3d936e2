"""Read ``config/deploy.yml`` (+ ``deploy.DEST.yml``) the way Kamal 2.11 does, and build the Configuration.

Pipeline: set ``KAMAL_DESTINATION`` -> ERB -> YAML (anchors, merge keys) -> deep-merge the destination
file -> schema -> Kamal's semantic checks -> plugin validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamalpy.errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.cli.options import GlobalOptions
    from kamalpy.config.model import Configuration
    from kamalpy.hooks import Hooks


def read_raw_config(config_file: str | Path, destination: str | None = None) -> dict[str, Any]:
    """The merged, unvalidated configuration mapping (also used to resolve aliases)."""
    raise ConfigurationError("not implemented yet")


def load_configuration(options: GlobalOptions, hooks: Hooks) -> Configuration:
    from kamalpy.config.model import Configuration

    raw = read_raw_config(options.config_file, options.destination)
    config = Configuration(
        raw,
        destination=options.destination,
        version=options.version,
        config_file=Path(options.config_file),
        extension_keys=hooks.config_keys(),
        hooks=hooks,
    )
    hooks.validate_config(config)
    return config
