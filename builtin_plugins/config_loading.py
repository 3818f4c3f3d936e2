"""Built-in plugin: the configuration comes from ``config/deploy.yml`` (and ``config/deploy.DEST.yml``).

Read the way Kamal 2.11 reads it (ERB, YAML as Ruby's Psych types it, the destination file deep-merged);
see kamalpy.config.loader.
"""

from __future__ import annotations

from typing import Any

from kamalpy.config.loader import read_raw_config
from kamalpy.plugin import hookimpl


@hookimpl(trylast=True)  # the default source: any other plugin's answer comes first
def kamalpy_load_config(options: Any) -> dict[str, Any]:
    return read_raw_config(options.config_file, options.destination)
