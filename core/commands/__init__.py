"""Kamal's commands as data: pure functions from a configuration to the command lines Kamal 2.11 runs.

Each builder returns a command as a list of string parts (Kamal's arrays); :mod:`kamalpy.commands.base`
joins them (what Kamal's unit tests compare) and renders them as SSHKit sends them. Nothing here runs
anything: the executor and the CLI do.
"""
