"""An accessory with ``proxy:`` answers through the proxy under its host name (caddy driver, a real proxy).

The accessory is the sandbox app (it answers ``/up`` and ``/version``); the app itself runs beside it
under another host name, so the test also shows that the two routes do not mix.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest
import yaml
from helpers import Result, run_kamalpy

pytestmark = pytest.mark.sandbox

HTTP_PORT, HTTPS_PORT, ADMIN_PORT = 18080, 18443, 12019


def get(host: str, domain: str) -> str:
    return subprocess.run(["curl", "-s", "-H", f"Host: {domain}", f"http://{host}:{HTTP_PORT}/version"],
                          capture_output=True, text=True, timeout=20).stdout.strip()


def test_an_accessory_with_proxy_answers_under_its_host_name(sandbox, tmp_path):
    service = f"ap{secrets.token_hex(3)}"
    sandbox.app_image(service)
    host = sandbox.hosts[1]
    caddy_version = sandbox.images["caddy"].rsplit(":", 1)[1]
    config = {
        "service": service, "image": service, **yaml.safe_load(sandbox.deploy_yml()), "servers": [host],
        "builder": {"arch": "amd64"},
        "proxy": {"driver": "caddy", "host": f"{service}.test",
                  "run": {"registry": sandbox.registry, "repository": "caddy", "version": caddy_version,
                          "http_port": HTTP_PORT, "https_port": HTTPS_PORT},
                  "caddy": {"probe_image": sandbox.images["busybox"], "admin_port": ADMIN_PORT}},
        "accessories": {"admin": {"image": sandbox.images["app_v2"], "host": host,
                                  "proxy": {"host": f"admin.{service}.test", "app_port": 80}}}}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def run(*args: str) -> Result:
        result = run_kamalpy(*args, cwd=tmp_path, env={"KAMAL_LOCK": "false", "VERSION": "v1"})
        assert "Traceback" not in result.out + result.err, result.err
        return result

    try:
        result = run("setup", "-P")
        assert result.code == 0, result.err[-3000:]
        assert get(host, f"admin.{service}.test") == "v2"  # the accessory, through Caddy
        assert get(host, f"{service}.test") == "v1"  # the app, under its own name
        result = run("accessory", "stop", "admin")
        assert result.code == 0, result.err[-3000:]
        assert get(host, f"admin.{service}.test") != "v2"  # its route is gone
        assert get(host, f"{service}.test") == "v1"
    finally:
        run("remove", "-y")
        run("proxy", "remove", "--force")
