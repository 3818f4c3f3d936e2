"""Debian's ``pebble`` (an ACME test CA) and ``pebble-challtestsrv`` (its DNS), for TLS tests with real ACME.

Pebble listens on the sandbox bridge's address, where Caddy on the sandbox servers reaches it. Its own HTTPS
certificate is made here with ``openssl`` from a throw-away CA (``ca_pem``: what ``proxy.caddy.acme_ca_root``
points at). Challenges are validated for real: pebble asks challtestsrv's DNS for a name (each test adds
the name's server with :meth:`Pebble.add_host`) and fetches the HTTP-01 answer from that server's published
HTTP port (or does TLS-ALPN-01 on its HTTPS port), where Caddy answers. Issued certificates chain to
pebble's issuance root (:meth:`Pebble.issuance_root`), which is new on each start.

    with Pebble(tmp_path, "10.213.0.1", http_port=18080, tls_port=18443) as pebble:
        pebble.add_host("app.test", "10.213.0.11")
        ... proxy: {caddy: {acme_ca: pebble.directory, acme_ca_root: str(pebble.ca_pem)}} ...
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

LISTEN_PORT, MANAGEMENT_PORT = 14000, 15000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pebble:
    def __init__(self, workdir: Path, address: str, *, http_port: int, tls_port: int) -> None:
        self.dir, self.address = workdir, address
        self.http_port, self.tls_port = http_port, tls_port
        self.dns_port, self.challtestsrv_port = _free_port(), _free_port()
        self.ca_pem = workdir / "acme-ca.pem"
        self.log = workdir / "pebble.log"
        self._processes: list[subprocess.Popen] = []
        self._root: str | None = None

    @property
    def directory(self) -> str:
        return f"https://{self.address}:{LISTEN_PORT}/dir"

    # ----- start and stop -----

    def __enter__(self) -> Pebble:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.ca_pem.exists():
            self._certificates()
        config = {"pebble": {
            "listenAddress": f"{self.address}:{LISTEN_PORT}",
            "managementListenAddress": f"{self.address}:{MANAGEMENT_PORT}",
            "certificate": str(self.dir / "pebble.pem"), "privateKey": str(self.dir / "pebble.key"),
            "httpPort": self.http_port, "tlsPort": self.tls_port, "ocspResponderURL": "",
            "externalAccountBindingRequired": False}}
        (self.dir / "pebble.json").write_text(json.dumps(config))
        if not self._processes:
            self._processes.append(subprocess.Popen(
                ["pebble-challtestsrv", "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-dns01", f"127.0.0.1:{self.dns_port}",
                 "-management", f"127.0.0.1:{self.challtestsrv_port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # No random sleep before validating, no rejected nonces: a test CA that is quick and predictable.
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        with self.log.open("a") as log:
            self.pebble = subprocess.Popen(
                ["pebble", "-config", str(self.dir / "pebble.json"), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while True:
            try:
                self._get(self.directory)
                return
            except OSError:
                if time.monotonic() > deadline or self.pebble.poll() is not None:
                    raise RuntimeError(f"pebble did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def stop_ca(self) -> None:
        """Stop pebble only (its DNS stays): the ACME directory no longer answers."""
        self.pebble.terminate()
        self.pebble.wait(10)

    def stop(self) -> None:
        for process in [self.pebble, *self._processes]:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        self._processes.clear()

    def _certificates(self) -> None:
        """A throw-away CA and pebble's certificate for its address, with openssl."""
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=self.dir, check=True, capture_output=True)

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", self.ca_pem.name, "-days", "7",
                "-subj", "/CN=kamalpy test ACME directory CA")
        openssl("req", *ec, "-keyout", "pebble.key", "-out", "pebble.csr", "-subj", "/CN=pebble")
        (self.dir / "san.ext").write_text(f"subjectAltName=IP:{self.address}\n")
        openssl("x509", "-req", "-in", "pebble.csr", "-CA", self.ca_pem.name, "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "pebble.pem", "-days", "7", "-extfile", "san.ext")

    # ----- use -----

    def _get(self, url: str, data: bytes | None = None) -> str:
        context = ssl.create_default_context(cafile=str(self.ca_pem)) if url.startswith("https") else None
        with urllib.request.urlopen(url, data=data, timeout=5, context=context) as response:  # noqa: S310
            return response.read().decode()

    def add_host(self, name: str, address: str) -> None:
        """challtestsrv answers ``name`` with ``address``: pebble validates that server's challenge."""
        body = json.dumps({"host": name, "addresses": [address]}).encode()
        self._get(f"http://127.0.0.1:{self.challtestsrv_port}/add-a", body)

    def issuance_root(self) -> str:
        """The PEM root the issued certificates chain to (new on each pebble start; kept after :meth:`stop_ca`)."""
        if self._root is None:
            self._root = self._get(f"https://{self.address}:{MANAGEMENT_PORT}/roots/0")
        return self._root

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts exactly pebble's issuance root."""
        context = ssl.create_default_context()
        context.load_verify_locations(cadata=self.issuance_root())
        return context

    def issued(self) -> int:
        """How many certificates pebble issued so far (its log)."""
        return self.log.read_text().count("Issued certificate serial")
