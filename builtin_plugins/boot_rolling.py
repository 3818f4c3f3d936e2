"""Built-in plugin: Kamal's rolling boot (``kamalpy_boot_app``).

Boot groups of ``boot.limit`` hosts ``boot.wait`` seconds apart, the primary-role barrier, and
``boot.parallel_roles``; each role on each host is replaced as Kamal's ``Cli::App::Boot`` does
(kamalpy.app_boot).
"""

from __future__ import annotations

from kamalpy import app_boot
from kamalpy.plugin import BootContext, hookimpl


@hookimpl(trylast=True)  # the default: a plugin that boots differently answers first
def kamalpy_boot_app(boot: BootContext) -> bool:
    app_boot.rolling_boot(boot)
    return True
