"""A deploy's secret env file filled from a password store, end to end (secret adapters + deploy).

``.kamal/secrets`` fetches from a real ``pass`` store (gpg) with ``$(kamalpy secrets fetch ...)`` and
``$(kamalpy secrets extract ...)``; ``deploy -P`` writes the values into the role's env file on a
sandbox server (mode 0600), the container sees them, and no value shows in kamalpy's output.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest
import yaml
from helpers import run_kamalpy
from test_secret_adapters_real import store  # noqa: F401 - the pass store fixture

pytestmark = pytest.mark.sandbox


def test_secrets_from_pass_reach_the_deploys_env_file(sandbox, store, tmp_path):  # noqa: F811
    service = f"se{secrets.token_hex(3)}"
    sandbox.app_image(service)
    host = sandbox.hosts[0]
    config = {"service": service, "image": service, **yaml.safe_load(sandbox.deploy_yml()), "servers": [host],
              "builder": {"arch": "amd64"}, "proxy": {"run": {"registry": sandbox.registry}},
              "env": {"secret": ["DB_PASSWORD", "API_TOKEN"]}}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(yaml.safe_dump(config))
    (tmp_path / ".kamal").mkdir()
    (tmp_path / ".kamal" / "secrets").write_text(
        "PS=$(kamalpy secrets fetch -a pass --from Shop db api/token)\n"
        "DB_PASSWORD=$(kamalpy secrets extract db $PS)\n"
        "API_TOKEN=$(kamalpy secrets extract token $PS)\n")
    try:
        result = run_kamalpy("deploy", "-P", "--version", "v1", "-v", cwd=tmp_path,
                             env={**store, "KAMAL_LOCK": "false"})
        assert result.code == 0, result.err[-2000:]
        assert "sv-db" not in result.out + result.err and "sv-token" not in result.out + result.err
        env_file = f".kamal/apps/{service}/env/roles/web.env"
        assert sandbox.ssh(host, f"stat -c %a {env_file}").stdout.strip() == "600"
        assert sandbox.ssh(host, f"cat {env_file}").stdout.splitlines() == ["DB_PASSWORD=sv-db", "API_TOKEN=sv-token"]
        seen = sandbox.ssh(host, f"docker exec {service}-web-v1 sh -c 'echo $DB_PASSWORD $API_TOKEN'").stdout
        assert seen.strip() == "sv-db sv-token"
    finally:
        subprocess.run(["docker", "rm", "-f", f"{service}-web-v1"], env=sandbox.docker_env(host),
                       capture_output=True, check=False)
        sandbox.ssh(host, f"rm -rf .kamal/apps/{service} .kamal/lock-{service}", check=False)
