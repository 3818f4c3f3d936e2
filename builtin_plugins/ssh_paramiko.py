"""The paramiko SSH transport (the default, ``paramiko``; registered by ``transport_paramiko``).

One SSH connection per host, kept open for the whole run (keepalive every 30 s). Host keys:
an unknown key is recorded in the known_hosts file (OpenSSH's ``accept-new``); a key that differs
from the recorded one is refused.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import posixpath
import secrets
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable

import paramiko
from paramiko.sftp import CMD_HANDLE, CMD_OPEN, SFTP_FLAG_CREATE, SFTP_FLAG_EXCL, SFTP_FLAG_WRITE

from kamalpy.transport import CommandResult, Forward, SshSettings, TransportError

_KNOWN_HOSTS_LOCK = threading.Lock()
_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


class AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Record unknown host keys (never overwriting one); paramiko itself refuses changed keys."""

    def __init__(self, known_hosts: str) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with _KNOWN_HOSTS_LOCK:
            client.get_host_keys().add(hostname, key.get_name(), key)
            os.makedirs(os.path.dirname(self.known_hosts) or ".", exist_ok=True)
            with open(self.known_hosts, "a") as handle:
                handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _load_pkey(data: str) -> paramiko.PKey:
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(data))
        except (paramiko.SSHException, ValueError):
            continue
    raise paramiko.SSHException("key_data holds no private key paramiko can read")


_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


def _configure_logging(level: str) -> None:
    """``ssh.log_level``: paramiko's own log on stderr from that level (net-ssh's logger); ``fatal``: silent.

    Silent by default also keeps paramiko's thread from printing tracebacks through Python's last-resort handler.
    """
    logger = logging.getLogger("paramiko")
    if logger.handlers:  # once per process
        return
    number = _LOG_LEVELS.get(str(level).lower().lstrip(":"))
    logger.addHandler(logging.StreamHandler(sys.stderr) if number is not None else logging.NullHandler())
    logger.setLevel(number if number is not None else logging.CRITICAL + 1)
    logger.propagate = False


def _fingerprint(key: paramiko.PKey) -> str:
    """``ssh-ed25519 SHA256:...`` as OpenSSH shows it."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def _split_user_host_port(value: str, default_user: str = "root", default_port: int = 22) -> tuple[str, str, int]:
    user, _, hostport = value.rpartition("@")
    host, _, port = hostport.partition(":")
    return user or default_user, host, int(port or default_port)


class ParamikoConnection:
    def __init__(self, host: str, client: paramiko.SSHClient, jump: paramiko.SSHClient | None = None) -> None:
        self.host = host
        self.client = client
        self.jump = jump
        self._forwards: dict[int, tuple[str, int]] = {}

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None,
            on_output: Callable[[str, str], None] | None = None) -> CommandResult:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError(self.host, "connection lost")
        try:
            channel = transport.open_session()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise TransportError(self.host, f"connection lost ({exc or type(exc).__name__})") from None
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = self._collect(channel, on_output, timeout, transport)
            status = channel.recv_exit_status()
        except TimeoutError as exc:
            raise TransportError(self.host, f"timed out after {timeout}s running: {command}") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            # The server went away while the command ran: it may or may not have finished there.
            raise TransportError(self.host, f"connection lost ({exc or type(exc).__name__})") from None
        finally:
            channel.close()
        return CommandResult(self.host, command, status, out, err)

    def _collect(self, channel: paramiko.Channel, on_output: Callable[[str, str], None] | None,
                 timeout: float | None, transport: paramiko.Transport) -> tuple[str, str]:
        streams = {"stdout": (bytearray(), channel.recv_ready, channel.recv),
                   "stderr": (bytearray(), channel.recv_stderr_ready, channel.recv_stderr)}
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            got = False
            for name, (buffer, ready, receive) in streams.items():
                if ready():
                    chunk = receive(65536)
                    buffer += chunk
                    got = True
                    if on_output:
                        on_output(name, chunk.decode(errors="replace"))
            if not got:
                # The exit status can arrive before the last stderr bytes: wait for the channel's EOF too.
                done = channel.exit_status_ready() and (channel.eof_received or channel.closed)
                if done and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if deadline and time.monotonic() > deadline:
                    raise TimeoutError()
                if not transport.is_active() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    raise EOFError("the connection closed before the command ended")
                channel.status_event.wait(0.01)
        return streams["stdout"][0].decode(errors="replace"), streams["stderr"][0].decode(errors="replace")

    def upload(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        try:
            self._upload(data, remote_path, mode)
        except (EOFError, paramiko.SSHException, ConnectionError) as exc:
            raise TransportError(self.host, f"connection lost ({exc or type(exc).__name__})") from None
        except OSError as exc:  # SFTP's answer: no such directory, permission denied, ...
            raise TransportError(self.host, f"upload of {remote_path} failed: {exc.strerror or exc}") from None

    def _upload(self, data: bytes, remote_path: str, mode: int) -> None:
        """A new file, created with ``mode`` by the server's open(2) itself, then renamed over the target.

        So a secret (0600) is never readable by others, not even while the file is empty, and a reader who
        opened the previous file never sees the new content (a new inode); the target changes at once.
        """
        mode = stat.S_IMODE(mode)
        directory, name = posixpath.split(remote_path)
        temporary = posixpath.join(directory, f".{name}.kamalpy-{secrets.token_hex(6)}")
        with self.client.open_sftp() as sftp:
            with create_file(sftp, temporary, mode) as handle:
                try:
                    handle.chmod(mode)  # the server's umask may have cleared bits of a wider mode
                    handle.write(data)
                except BaseException:
                    _remove_quietly(sftp, temporary)
                    raise
            try:
                sftp.posix_rename(temporary, remote_path)
            except OSError:
                _remove_quietly(sftp, temporary)
                raise

    def forward_remote(self, remote_port: int, local_host: str, local_port: int) -> Forward:
        transport = self.client.get_transport()
        assert transport is not None

        def handler(channel: paramiko.Channel, origin: tuple[str, int], server: tuple[str, int]) -> None:
            threading.Thread(target=_pipe, args=(channel, local_host, local_port), daemon=True).start()

        bound = transport.request_port_forward("localhost", remote_port, handler)
        return Forward(bound, local_host, local_port, close=lambda: transport.cancel_port_forward("localhost", bound))

    def close(self) -> None:
        self.client.close()
        if self.jump is not None:
            self.jump.close()


def _pipe(channel: paramiko.Channel, host: str, port: int) -> None:
    import select

    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError:
        channel.close()
        return
    try:
        while True:
            readable, _, _ = select.select([sock, channel], [], [], 1.0)
            if sock in readable:
                data = sock.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(65536)
                if not data:
                    break
                sock.sendall(data)
    finally:
        sock.close()
        channel.close()


class ParamikoTransport:
    def connect(self, host: str, settings: SshSettings) -> ParamikoConnection:
        _configure_logging(settings.log_level)
        options = self._ssh_config(host, settings)
        hostname = options.get("hostname", host)
        # Kamal always passes ssh.user and ssh.port to net-ssh, and explicit options win over the ssh
        # config's User/Port (HostName, ProxyJump, IdentityFile, UserKnownHostsFile still apply).
        user = settings.user
        port = settings.port
        # An ssh config's UserKnownHostsFile wins over the default, as it does for OpenSSH.
        known_hosts = os.path.expanduser(str(options.get("userknownhostsfile", settings.known_hosts)).split()[0])
        client = paramiko.SSHClient()
        if os.path.exists(known_hosts):
            client.load_host_keys(known_hosts)
        client.set_missing_host_key_policy(AcceptNewPolicy(known_hosts))
        jump = None
        sock = None
        try:
            if settings.proxy_command or options.get("proxycommand"):
                command = (settings.proxy_command or options["proxycommand"]).replace("%h", hostname)
                sock = paramiko.ProxyCommand(command.replace("%p", str(port)).replace("%r", user))
            elif settings.proxy or options.get("proxyjump"):
                jump_user, jump_host, jump_port = _split_user_host_port(settings.proxy or options["proxyjump"])
                jump = paramiko.SSHClient()
                if os.path.exists(known_hosts):
                    jump.load_host_keys(known_hosts)
                jump.set_missing_host_key_policy(AcceptNewPolicy(known_hosts))
                jump.connect(jump_host, jump_port, jump_user, **self._auth(settings, options))
                assert jump.get_transport() is not None
                sock = jump.get_transport().open_channel("direct-tcpip", (hostname, port), ("127.0.0.1", 0))
            client.connect(hostname, port, user, sock=sock, **self._auth(settings, options))
        except paramiko.BadHostKeyException as exc:
            raise TransportError(host, f"host key changed: the server offers {_fingerprint(exc.key)}, {known_hosts} "
                                       f"has {_fingerprint(exc.expected_key)}; refusing to connect. If the change is "
                                       f"expected, remove the old key: ssh-keygen -R {hostname} -f {known_hosts}"
                                 ) from exc
        except paramiko.AuthenticationException as exc:
            raise TransportError(host, f"authentication failed for user '{user}' ({exc})") from exc
        except TimeoutError as exc:
            raise TransportError(host, f"connection timed out after {settings.connect_timeout:g}s") from exc
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            reasons = sorted({getattr(err, "strerror", None) or str(err) for err in exc.errors.values()})
            raise TransportError(host, f"could not connect to port {port} ({'; '.join(reasons)})") from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise TransportError(host, f"could not connect ({exc or type(exc).__name__})") from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(settings.keepalive_interval)
            if isinstance(transport.sock, socket.socket):
                # Without it, Nagle's algorithm and the server's delayed ACK add ~40 ms to every
                # channel open (OpenSSH sets it too).
                transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ParamikoConnection(host, client, jump)

    @staticmethod
    def _ssh_config(host: str, settings: SshSettings) -> dict:
        if settings.config is False:
            return {}
        # True: the user's file, then the system's, as net-ssh reads them (the first value found wins).
        files = ["~/.ssh/config", "/etc/ssh/ssh_config"] if settings.config is True else list(settings.config)
        merged: dict = {}
        for name in files:
            path = os.path.expanduser(name)
            if os.path.exists(path):
                found = paramiko.SSHConfig.from_path(path).lookup(host)
                for key, value in found.items():
                    merged.setdefault(key, value)
        return merged

    @staticmethod
    def _auth(settings: SshSettings, options: dict) -> dict:
        # As with net-ssh, ssh.keys replace the ssh config's IdentityFile rather than add to them.
        key_files = [os.path.expanduser(k) for k in settings.keys] or list(options.get("identityfile", []))
        key_files = [k for k in key_files if os.path.exists(k)]
        auth: dict = {
            "timeout": settings.connect_timeout,
            "banner_timeout": settings.connect_timeout,
            "auth_timeout": settings.connect_timeout,
            "look_for_keys": not settings.keys_only,
            "allow_agent": not settings.keys_only,
        }
        if key_files:
            auth["key_filename"] = key_files
        if settings.key_data:
            auth["pkey"] = _load_pkey(settings.key_data[0])
        return auth


# ----- SFTP -----

CREATE_FLAGS = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL  # a new file, never an existing one


def create_file(sftp: paramiko.SFTPClient, path: str, mode: int) -> paramiko.SFTPFile:
    """Open a new file for writing, created with ``mode`` (the OPEN request carries it).

    ``SFTPClient.open`` sends no permissions, so the server creates the file with its default mode
    (0644 under the usual umask) and a chmod comes only after: a window in which others may open it.
    """
    attributes = paramiko.SFTPAttributes()
    attributes.st_mode = mode
    kind, message = sftp._request(CMD_OPEN, path, CREATE_FLAGS, attributes)  # noqa: SLF001 - no public API
    if kind != CMD_HANDLE or message is None:
        raise paramiko.SFTPError("Expected handle")
    return paramiko.SFTPFile(sftp, message.get_binary(), "wb")


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except (OSError, paramiko.SSHException):
        pass
