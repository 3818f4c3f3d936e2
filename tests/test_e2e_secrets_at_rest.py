"""Secrets at rest on the servers: an SFTP upload creates its file with the final mode (OpenSSH's sftp-server).

The OPEN request itself carries the mode (0600) and asks for a new file (O_EXCL), which is then renamed
over the target: there is no moment when the file exists with the server's default mode, and a reader
holding the previous file never sees the new content.
"""

from __future__ import annotations

import secrets

import paramiko
import pytest
from paramiko.sftp import CMD_OPEN, SFTP_FLAG_CREATE, SFTP_FLAG_EXCL

pytestmark = pytest.mark.sandbox


@pytest.fixture
def connection(sandbox):
    from kamalpy.builtin_plugins.ssh_paramiko import ParamikoTransport
    from kamalpy.transport import SshSettings

    settings = SshSettings(keys=(sandbox.key,), keys_only=True, config=(sandbox.ssh_config,))
    connection = ParamikoTransport().connect(sandbox.hosts[0], settings)
    yield connection
    connection.close()


def test_upload_creates_the_file_with_its_mode_then_renames_it_into_place(connection, monkeypatch):
    opened = []
    original = paramiko.SFTPClient._request

    def recording(self, kind, *args):
        if kind == CMD_OPEN:
            path, flags, attributes = args
            opened.append((path, flags, attributes.st_mode))
        return original(self, kind, *args)

    monkeypatch.setattr(paramiko.SFTPClient, "_request", recording)
    directory = f"/tmp/kamalpy-upload-{secrets.token_hex(4)}"
    path = f"{directory}/key.pem"
    connection.run(f"mkdir -p {directory} && umask 000 && echo old > {path} && chmod 0644 {path}")
    try:
        before = connection.run(f"stat -c %i {path}").stdout.strip()
        connection.upload(b"PRIVATE KEY\n", path, 0o600)
        [(created, flags, created_mode)] = opened
        assert created.startswith(f"{directory}/.key.pem.kamalpy-") and created != path
        assert created_mode == 0o600 and flags & SFTP_FLAG_CREATE and flags & SFTP_FLAG_EXCL
        after = connection.run(f"stat -c '%a %i' {path} && cat {path} && ls -A {directory}").stdout.split("\n")
        assert after[0].split()[0] == "600" and after[0].split()[1] != before  # a new file, not the old one
        assert after[1:] == ["PRIVATE KEY", "key.pem", ""]  # no temporary file left
        # A wider mode is kept exactly, whatever the server's umask clears at creation.
        connection.upload(b"<p>page</p>", f"{directory}/404.html", 0o755)
        assert connection.run(f"stat -c %a {directory}/404.html").stdout.strip() == "755"
    finally:
        connection.run(f"rm -rf {directory}")


def test_a_failed_upload_leaves_the_old_file_and_no_temporary_one(connection):
    from kamalpy.transport import TransportError

    directory = f"/tmp/kamalpy-upload-{secrets.token_hex(4)}"
    connection.run(f"mkdir -p {directory}/key.pem && touch {directory}/key.pem/keep")  # a directory in the way
    try:
        with pytest.raises(TransportError, match="upload of"):
            connection.upload(b"PRIVATE KEY\n", f"{directory}/key.pem", 0o600)
        assert connection.run(f"ls -A {directory} {directory}/key.pem").stdout.split() == [
            f"{directory}:", "key.pem", f"{directory}/key.pem:", "keep"]
    finally:
        connection.run(f"rm -rf {directory}")
