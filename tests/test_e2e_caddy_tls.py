"""``proxy.ssl: true`` with the caddy driver, end to end on 3 sandbox servers against a real ACME CA.

Debian's pebble is the CA (``proxy.caddy.acme_ca`` and ``acme_ca_root``), validating each challenge for
real on the server its DNS names (tests/pebble.py). Three roles, one per server, each with its own host
name (Kamal allows automatic certificates only for a role on one server). ``setup`` obtains a certificate
per host; plain HTTP redirects to HTTPS; ``deploy`` and ``rollback`` under HTTPS load lose no request,
and the rollback needs no new certificate. With the CA gone, a deploy that needs a new certificate
fails naming the server and the ACME error, and the old version keeps serving over its certificate.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl

import pytest
from loadgen import HTTPSConnection, Load
from pebble import Pebble
from test_e2e_deploy_caddy import HTTP_PORT, HTTPS_PORT, REQUESTS_PER_SERVER, Project, assert_no_failure

pytestmark = pytest.mark.sandbox


class TlsProject(Project):
    """One role per server (``web1``..``web3``), each with its own host name and an ACME certificate."""

    def __init__(self, root, sandbox, pebble: Pebble) -> None:
        super().__init__(root, sandbox)
        self.pebble = pebble
        self.names = {host: f"{self.service}-{i}.test" for i, host in enumerate(self.hosts, 1)}
        for host, name in self.names.items():
            pebble.add_host(name, host)
        shutil.copy(pebble.ca_pem, root / "acme-ca.pem")
        # Kamal wants ssl beside a host: per role here (the root proxy has no host).
        self.config["servers"] = {self.role(host): {"hosts": [host], "proxy": {"host": name, "ssl": True}}
                                  for host, name in self.names.items()}
        self.config["primary_role"] = self.role(self.hosts[0])
        proxy = self.config["proxy"]
        proxy.pop("host")
        proxy["caddy"].update(acme_ca=pebble.directory, acme_ca_root="acme-ca.pem")
        self.config["deploy_timeout"] = 20
        self.rewrite()

    def role(self, host: str) -> str:
        return f"web{self.hosts.index(host) + 1}"

    def https(self, host: str, name: str | None = None) -> tuple[int, str, dict]:
        """``(status, body, peer certificate)`` of ``GET /version`` over HTTPS, verified against pebble's root."""
        conn = HTTPSConnection(host, HTTPS_PORT, name or self.names[host], self.pebble.client_context(), 10)
        try:
            conn.request("GET", "/version", headers={"Host": name or self.names[host]})
            response = conn.getresponse()
            return response.status, response.read().decode().strip(), conn.sock.getpeercert()
        finally:
            conn.close()

    def loads(self, retry_stale: bool = False) -> list[Load]:
        context = self.pebble.client_context()
        return [Load(f"https://{host}:{HTTPS_PORT}/version", host=self.names[host], tls=context,
                     max_requests=200_000, max_seconds=240, retry_stale=retry_stale).start() for host in self.hosts]

    def serving(self) -> set[str]:
        return {self.https(host)[1] for host in self.hosts}


@pytest.fixture
def pebble(sandbox, tmp_path):
    with Pebble(tmp_path / "pebble", sandbox.spec.gateway, http_port=HTTP_PORT, tls_port=HTTPS_PORT) as ca:
        yield ca


@pytest.fixture
def project(sandbox, tmp_path, pebble):
    project = TlsProject(tmp_path / "app", sandbox, pebble)
    yield project
    project.cleanup()


def test_https_with_acme_certificates_redirects_and_no_lost_request(project, pebble):
    project.ok("setup", "-P", "--version", "v1")
    for host, name in project.names.items():
        status, body, cert = project.https(host)  # verified: pebble's chain, for this name
        assert (status, body) == (200, "v1")
        assert ("DNS", name) in cert["subjectAltName"]
        assert "Pebble Intermediate" in dict(x[0] for x in cert["issuer"])["commonName"]
        plain = http.client.HTTPConnection(host, HTTP_PORT, timeout=10)
        plain.request("GET", "/version?x=1", headers={"Host": name})
        response = plain.getresponse()
        assert response.status == 301
        assert response.getheader("Location") == f"https://{name}:{HTTPS_PORT}/version?x=1"
        plain.close()
    issued = pebble.issued()
    assert issued == len(project.hosts)

    result, loads = project.under_load("deploy", "-P", "--version", "v2")
    assert result.code == 0, result.err[-3000:]
    assert_no_failure(loads, "v2")
    assert all(load.requests >= REQUESTS_PER_SERVER for load in loads)

    result, loads = project.under_load("rollback", "v1")
    assert result.code == 0, result.err[-3000:]
    assert_no_failure(loads, "v1")
    assert pebble.issued() == issued  # the certificates were kept: nothing new was issued

    # The CA stops answering; web1 gets a second host name, which needs a certificate Caddy cannot get.
    pebble.stop_ca()
    first = project.hosts[0]
    extra = f"{project.service}-extra.test"
    project.config["servers"]["web1"]["proxy"] = {"hosts": [project.names[first], extra], "ssl": True}
    project.rewrite()
    # The new host changes the route: a config load, which closes idle keep-alive connections. Clients
    # resend a GET on such a connection (browsers, curl): so does this load (counted as retried, not failed).
    loads = [Load(f"https://{first}:{HTTPS_PORT}/version", host=project.names[first], tls=pebble.client_context(),
                  max_requests=100_000, max_seconds=240, retry_stale=True).start()]
    try:
        assert loads[0].wait_for(100)
        result = project.run("deploy", "-P", "--version", "v2", "-h", first)
        loads[0].wait_for(loads[0].requests + 200)
    finally:
        results = [load.stop() for load in loads]
    assert result.code == 1
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("ERROR: ") and first in last and f"no TLS certificate for {extra}" in last, last
    assert "connection refused" in last or "dial tcp" in last, last  # the ACME error, as Caddy logged it
    assert_no_failure(results, "v1")
    assert project.https(first)[1] == "v1"  # over its existing certificate
    assert project.running(first) == [f"{project.service}-web1-v1"]
    with pytest.raises((ssl.SSLError, OSError, socket.timeout)):
        project.https(first, extra)  # no certificate for the new name


def _own_certificate(directory, name: str) -> tuple[str, str, str]:
    """A throw-away CA and a certificate for ``name`` signed by it: ``(ca PEM, certificate PEM, key PEM)``."""
    import subprocess

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=own test CA")
    openssl("req", *ec, "-keyout", "key.pem", "-out", "cert.csr", "-subj", f"/CN={name}")
    (directory / "san.ext").write_text(f"subjectAltName=DNS:{name}\n")
    openssl("x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "cert.pem", "-days", "2", "-extfile", "san.ext")
    return tuple((directory / f).read_text() for f in ("ca.pem", "cert.pem", "key.pem"))  # type: ignore[return-value]


def test_own_certificate_from_secrets_on_every_server_under_https_load(sandbox, tmp_path):
    """``ssl: {certificate_pem, private_key_pem}``: the certificate of the secrets on all three servers (Kamal
    allows several servers with your own certificate), the key 0600 on each, no request lost on a deploy."""
    (tmp_path / "pki").mkdir()
    project = Project(tmp_path / "own", sandbox)
    ca, cert, key = _own_certificate(tmp_path / "pki", project.domain)
    project.SECRETS = (key.splitlines()[1],)  # a line of the private key must never be printed
    # Multi-line values in double quotes, as dotenv reads them (a "\n" escape stays two characters there).
    (project.root / ".kamal" / "secrets").write_text(
        "DB_PASSWORD=zero-downtime\n" + "".join(f'{name}="{pem.strip()}"\n'
                                                 for name, pem in (("CERT_PEM", cert), ("KEY_PEM", key))))
    project.config["proxy"]["ssl"] = {"certificate_pem": "CERT_PEM", "private_key_pem": "KEY_PEM"}
    project.rewrite()
    try:
        project.ok("setup", "-P", "--version", "v1")
        context = ssl.create_default_context(cadata=ca)
        for host in project.hosts:
            conn = HTTPSConnection(host, HTTPS_PORT, project.domain, context, 10)
            conn.request("GET", "/version", headers={"Host": project.domain})
            assert conn.getresponse().read().decode().strip() == "v1"  # verified: our CA, our name
            conn.close()
            mode = sandbox.ssh(host, f"stat -c %a .kamal/caddy/tls/{project.service}-web/key.pem").stdout.strip()
            assert mode == "600"
        loads = [Load(f"https://{host}:{HTTPS_PORT}/version", host=project.domain, tls=context,
                      max_requests=100_000, max_seconds=240).start() for host in project.hosts]
        try:
            assert all(load.wait_for(100) for load in loads)
            before = [load.requests for load in loads]
            project.ok("deploy", "-P", "--version", "v2")
            for load, start in zip(loads, before, strict=True):
                load.wait_for(max(start + REQUESTS_PER_SERVER // 2, load.requests + 200))
        finally:
            results = [load.stop() for load in loads]
        assert_no_failure(results, "v2")
    finally:
        project.cleanup()
