"""The command line: click, with Kamal's global options on every command."""
