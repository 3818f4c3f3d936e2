"""kamalpy: Kamal 2 rebuilt in Python as a plugin framework."""

__version__ = "0.1.0"

# The Kamal release whose configuration, commands and on-server layout kamalpy reproduces.
# `minimum_version` in a config is compared with this.
KAMAL_COMPAT_VERSION = "2.11.0"
