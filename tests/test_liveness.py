"""Dead hosts found: keepalives that want an answer, and handshakes that stall.

Against a real sshd on a loopback port (tests/local_sshd.py): its processes are stopped (SIGSTOP) while a
command runs, so the TCP connection stays up but nothing answers, as with a host that hangs. The sandbox
test with packets dropped is in test_e2e_transport.py; the time to detection with kamalpy's defaults is
measured by benchmarks/dead_host.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from local_sshd import Server, needs_sshd

from kamalpy.errors import HostErrors
from kamalpy.execution import Executor, Step
from kamalpy.output import Output
from kamalpy.transport import SshSettings, TransportError


def _settings(sshd: Server, tmp_path: Path, *, extra: str = "", **kwargs: object) -> SshSettings:
    config = tmp_path / "ssh_config"
    known = tmp_path / "known_hosts"
    config.write_text(f"Host *\n  UserKnownHostsFile {known}\n  GlobalKnownHostsFile none\n{extra}")
    return SshSettings(port=sshd.port, keys=(str(sshd.client_key),), keys_only=True, config=(str(config),),
                       connect_timeout=5, **kwargs)


def _transport():
    from kamalpy.builtin_plugins.ssh_paramiko import ParamikoTransport

    return ParamikoTransport()


# A script (several steps in one round trip) names the step it was running, not its first one.
WORK = {"command": lambda session: session.execute("sleep 30"),
        "script": lambda session: session.script([Step("true"), Step("sleep 30"), Step("true")])}


@needs_sshd
@pytest.mark.parametrize("work", list(WORK))
def test_a_silent_host_fails_the_running_command_naming_host_and_step(sshd: Server, tmp_path: Path,
                                                                      work: str) -> None:
    settings = _settings(sshd, tmp_path, server_alive_interval=0.5, server_alive_count_max=3)
    executor = Executor(_transport(), settings, Output(quiet=True, stream=io.StringIO()))
    before = set(sshd.sessions())
    outcome: dict[str, object] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            executor.on(["127.0.0.1"], WORK[work])
        except HostErrors as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not set(sshd.sessions()) - before:
            assert time.monotonic() < deadline, "no sshd session appeared"
            time.sleep(0.05)
        time.sleep(1.0)  # the command runs, and keepalives have been answered
        stopped = sorted(set(sshd.sessions()) - before)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        thread.join(15)
        assert not thread.is_alive(), "the command still waits on a silent host"
    finally:
        for pid in set(sshd.sessions()) - before:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        executor.close()
    error = outcome["error"]
    assert isinstance(error, HostErrors)
    [cause] = error.errors.values()
    assert isinstance(cause, TransportError) and cause.host == "127.0.0.1"
    assert str(cause) == ("127.0.0.1: connection lost: the host stopped answering: no reply to 3 keepalives in 1.5s "
                          "(ServerAliveInterval 0.5, ServerAliveCountMax 3) while running: sleep 30")
    assert outcome["seconds"] < 1.0 + 0.5 * 5 + 2  # stopped after 1 s; found after at most 4 intervals


@needs_sshd
def test_answered_keepalives_keep_an_idle_connection(sshd: Server, tmp_path: Path) -> None:
    connection = _transport().connect("127.0.0.1", _settings(sshd, tmp_path, server_alive_interval=0.1,
                                                             server_alive_count_max=1))
    try:
        time.sleep(1.5)  # ~15 requests, each must be answered within 0.1 s
        assert connection.liveness.dead is None
        assert connection.run("echo ok").stdout == "ok\n"
    finally:
        connection.close()


@needs_sshd
def test_the_ssh_config_sets_the_keepalives(sshd: Server, tmp_path: Path) -> None:
    extra = "  ServerAliveInterval 7\n  ServerAliveCountMax 2\n"
    connection = _transport().connect("127.0.0.1", _settings(sshd, tmp_path, extra=extra))
    try:
        assert (connection.liveness.interval, connection.liveness.count_max) == (7, 2)
    finally:
        connection.close()
    connection = _transport().connect("127.0.0.1", _settings(sshd, tmp_path / "..", extra=""))
    try:  # kamalpy's defaults: found within 30 s
        assert (connection.liveness.interval, connection.liveness.count_max) == (5, 3)
    finally:
        connection.close()


class _Stalling:
    """A TCP server that accepts, optionally sends an SSH banner, and then never says anything."""

    def __init__(self, banner: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.banner = banner
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)
            conn.sendall(self.banner)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.mark.parametrize("banner", [b"SSH-2.0-OpenSSH_9.2\r\n", b""], ids=["after-banner", "no-banner"])
def test_a_stalled_handshake_says_so(banner: bytes) -> None:
    server = _Stalling(banner)
    try:
        settings = SshSettings(port=server.port, keys_only=True, config=False, connect_timeout=1)
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            _transport().connect("127.0.0.1", settings)
        assert time.monotonic() - started < 5
    finally:
        server.close()
    assert str(caught.value).startswith("127.0.0.1: SSH handshake timed out after 1s"), caught.value
    assert "No existing session" not in str(caught.value)


class _Transport:
    """What Liveness uses of a paramiko Transport: the request goes out after ``send_delay`` seconds (a
    deploying process short of CPU), the host's reply is taken ``reply_after`` seconds after that."""

    def __init__(self, sock: socket.socket, send_delay: float = 0.0, reply_after: float | None = None) -> None:
        self.sock = sock
        self.send_delay = send_delay
        self.reply_after = reply_after
        self.completion_event: threading.Event | None = None

    def is_active(self) -> bool:
        return True

    def _send_user_message(self, message: object) -> None:
        time.sleep(self.send_delay)
        if self.reply_after is not None:
            event = self.completion_event
            threading.Timer(self.reply_after, event.set).start()  # type: ignore[union-attr]


def _asked(transport: _Transport, interval: float) -> bool:
    from kamalpy.builtin_plugins.ssh_paramiko import Liveness

    liveness = Liveness("h1", transport, 0, 1)  # type: ignore[arg-type]  # interval 0: no watch thread
    liveness.interval = interval
    return liveness._ask(threading.Event())


def test_the_interval_counts_from_the_moment_the_request_went_out() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        # Sent 0.4 s late (the socket could take it: our thread was late), answered 0.2 s after that:
        # within the 0.3 s interval of the request itself.
        assert _asked(_Transport(ours, send_delay=0.4, reply_after=0.2), interval=0.3)
        # Answered 0.5 s after it went out: missed.
        assert not _asked(_Transport(ours, reply_after=0.5), interval=0.3)


def test_bytes_from_the_host_waiting_unread_count_as_an_answer() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert not _asked(_Transport(ours), interval=0.1)
        theirs.sendall(b"x")  # the reply is there; paramiko's thread has not read it yet
        assert _asked(_Transport(ours), interval=0.1)


def test_a_request_that_cannot_be_sent_is_a_miss() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                ours.send(b"x" * 65536)  # the host reads nothing: the socket is full
        ours.setblocking(True)
        started = time.monotonic()
        assert not _asked(_Transport(ours, send_delay=2.0, reply_after=0.0), interval=0.3)
        assert time.monotonic() - started < 0.6  # one interval, not two
