"""Talking to servers: the interfaces every transport plugin implements.

A transport (``kamalpy_transports`` hook) turns a host name and the ``ssh:`` settings into a
:class:`Connection`. The built-in one uses paramiko; another (the system ``ssh``, say) is a plugin.
Connections are opened once per host and reused for the whole run (:mod:`kamalpy.execution`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kamalpy.errors import KamalpyError


@dataclass(frozen=True)
class SshSettings:
    """The ``ssh:`` section as a transport needs it (built by the configuration model)."""

    user: str = "root"
    port: int = 22
    proxy: str | None = None  # jump host, "[user@]host[:port]"
    proxy_command: str | None = None
    keys: tuple[str, ...] = ()
    keys_only: bool = False
    key_data: tuple[str, ...] = ()  # private keys (PEM/OpenSSH text), already resolved from secrets
    config: bool | tuple[str, ...] = True  # True: ~/.ssh/config; False: none; files: these
    forward_agent: bool | None = None
    log_level: str = "fatal"
    known_hosts: str = "~/.ssh/known_hosts ~/.ssh/known_hosts2"  # UserKnownHostsFile when the ssh config has none
    connect_timeout: float = 10.0
    keepalive_interval: int = 30  # Kamal's (what `kamalpy config` prints); liveness uses the two below
    # kamalpy's own liveness check when the ssh config sets no ServerAliveInterval/ServerAliveCountMax:
    # a request that must be answered every 5 s, 3 unanswered in a row and the host is reported dead.
    server_alive_interval: float = 5.0
    server_alive_count_max: int = 3
    max_concurrent_starts: int = 30
    pool_idle_timeout: int = 900
    dns_retries: int = 3
    warn: Callable[[str], None] | None = field(default=None, compare=False, repr=False)  # the run's WARN lines


@dataclass
class CommandResult:
    host: str
    command: str
    exit_status: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class TransportError(KamalpyError):
    """A host could not be reached or refused us (connection, authentication, host key)."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.reason = message

    def during(self, step: str) -> TransportError:
        """The same error, naming the command that was running (the execution layer knows it)."""
        if " while running: " in self.reason:
            return self
        return TransportError(self.host, f"{self.reason} while running: {step}")


class CommandFailed(KamalpyError):
    """A command exited non-zero (Kamal: SSHKit::Command::Failed).

    ``step``: the step of a script (``Session.script``, ``Session.run_in_shell``) that failed, the very
    ``Step`` or ``WriteFile`` passed in, so that a caller can tell which of its steps it was; None for a
    single command.
    """

    def __init__(self, result: CommandResult, shown_command: str | None = None, step: object | None = None) -> None:
        detail = (result.stderr or result.stdout).strip()
        shown = shown_command if shown_command is not None else result.command
        message = f"{result.host}: {shown} exit status: {result.exit_status}"
        if detail:
            message += f" ({' '.join(detail.splitlines()[-3:])})"
        super().__init__(message)
        self.result = result
        self.step = step


@dataclass
class Forward:
    """A remote (reverse) port forward: connections to ``remote_port`` on the server reach ``local``."""

    remote_port: int
    local_host: str
    local_port: int
    close: Callable[[], None] = field(default=lambda: None)


class Stream(Protocol):
    """A long-lived exec channel (``Connection.open_stream``): the command's stdin and stdout as raw bytes."""

    def sendall(self, data: bytes) -> None: ...

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes of the command's stdout; ``b""`` once it ended."""

    def settimeout(self, timeout: float | None) -> None: ...

    def close(self) -> None: ...


class Connection(Protocol):
    host: str

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            on_output: Callable[[str, str], None] | None = None) -> CommandResult:
        """Run ``command`` through the server's shell; never raises for a non-zero exit."""

    def upload(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        """Write ``data`` to ``remote_path`` (relative paths are relative to the user's home) with ``mode``."""

    def forward_remote(self, remote_port: int, local_host: str, local_port: int) -> Forward:
        """Open a reverse port forward (for the local registry mode)."""

    def close(self) -> None: ...

    # Optional: ``open_stream(command) -> Stream``, the command on a channel of its own that stays open (a
    # transport without it gets the shell path only; kamalpy.execution.Session.open_stream says None).


class Transport(Protocol):
    def connect(self, host: str, settings: SshSettings) -> Connection:
        """Open a connection or raise :class:`TransportError` with a one-line reason."""
