"""kamalpy policy plugin: deploying commands run only inside a weekly time window.

The window logic (no kamalpy imports) is in :mod:`kamalpy_deploy_window.window`, the hooks in
:mod:`kamalpy_deploy_window.plugin`.
"""

__version__ = "0.1.0"
