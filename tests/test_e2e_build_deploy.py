"""``kamalpy deploy`` without ``-P``, end to end: clone the git repository, build, push, pull, serve.

The builds use this machine's Docker engine with the plain ``docker build`` (no buildx here). The app
is the sandbox app with a version of this test's own baked in (``APP_VERSION``), deployed to 3 sandbox
servers behind the kamal-proxy stand-in; each new container is asked for ``/version`` from inside.
Second case: ``registry.server: localhost:5555``, no shared registry: the image goes to a registry on
this machine and the servers pull it through SSH reverse forwards, closed when the deploy ends.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
from e2e_fixtures import E2EProject

pytestmark = pytest.mark.sandbox

LOCAL_PORT = 5555


class Project(E2EProject):
    PREFIX = "bd"

    def __init__(self, root: Path, sandbox, registry: dict | None = None) -> None:
        super().__init__(root, sandbox)
        self.baked = f"built-{secrets.token_hex(3)}"
        registry = registry or {"server": sandbox.registry, "username": "sandbox", "password": "sandbox"}
        self.config = self.sandbox_config(servers=self.hosts, registry=registry,
                                          proxy={"run": {"registry": sandbox.registry}})
        self.write()
        (root / "Dockerfile").write_text(f"FROM {sandbox.images['app']}\nENV APP_VERSION={self.baked}\n")
        (root / "docker-config").mkdir()
        (root / ".gitignore").write_text("docker-config/\n")
        self.git_init()
        self.version = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                      check=True).stdout.strip()

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(DOCKER_CONFIG=str(self.root / "docker-config"), **extra)

    def served(self, host: str) -> str:
        name = f"{self.service}-web-{self.version}"
        return self.sandbox.ssh(host, f"docker exec {name} wget -qO- http://127.0.0.1/version",
                                check=False).stdout.strip()

    def cleanup(self) -> None:
        self.run("remove", "-y")
        subprocess.run(["docker", "image", "rm", "-f", *(f"{repo}/{self.service}:{tag}"
                                                         for repo in (self.sandbox.registry, f"localhost:{LOCAL_PORT}")
                                                         for tag in (self.version, "latest"))],
                       capture_output=True, check=False)


def test_deploy_clones_builds_pushes_and_serves_the_commit(project):
    result = project.run("deploy")
    assert result.code == 0, result.err[-3000:]
    assert "docker buildx is not available" in result.err
    assert "/tmp/kamal-clones/" in result.err  # built from a clone of the repository, not the work tree
    for host in project.hosts:
        assert project.served(host) == project.baked


def test_deploy_with_a_local_registry_pulls_through_ssh_tunnels(sandbox, tmp_path):
    image = sandbox.local_registry_image()
    project = Project(tmp_path / "project", sandbox,
                      registry={"server": f"localhost:{LOCAL_PORT}", "local_image": image})
    try:
        result = project.run("deploy")
        assert result.code == 0, result.err[-3000:]
        for host in project.hosts:
            assert project.served(host) == project.baked
            # The reverse forward that served the pull is gone: nothing listens on the port any more.
            listening = sandbox.ssh(host, "ss -ltnH").stdout
            assert f":{LOCAL_PORT} " not in listening, listening
    finally:
        project.cleanup()
        project.run("registry", "remove")
