"""Exceptions that end a command with a one-line message and exit code 1 (never a traceback)."""

from __future__ import annotations


class KamalpyError(Exception):
    """Base class: the CLI prints ``ERROR: <message>`` on stderr and exits 1."""

    exit_code = 1


class ConfigurationError(KamalpyError):
    """Invalid configuration (Kamal: ``Kamal::ConfigurationError``). Messages use Kamal's wording."""


class SecretsError(KamalpyError):
    """A secret could not be resolved or an adapter failed."""


class CommandRefused(KamalpyError):
    """A policy plugin refused the command (see the ``kamalpy_before_command`` hook)."""


class PluginError(KamalpyError):
    """A plugin could not be loaded or broke the plugin contract."""


class HookError(KamalpyError):
    """A Kamal hook (``.kamal/hooks/NAME``) failed: ``Hook `NAME` failed: ...``."""


class HostErrors(KamalpyError):
    """Errors on one or more hosts, each line naming its host."""

    def __init__(self, errors: dict[str, BaseException]) -> None:
        self.errors = errors
        lines = [str(err) if str(err).startswith(f"{host}") else f"{host}: {err}" for host, err in errors.items()]
        if len(lines) == 1:
            message = lines[0]
        else:
            message = f"Exceptions on {len(lines)} hosts: " + "; ".join(lines)
        super().__init__(message)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP while the deploy lock is held: unwinds like Ctrl-C (the lock is released)."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(f"Terminated by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum
