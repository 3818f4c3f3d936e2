"""A running sandbox as tests and end-to-end flows use it: hosts, ssh files, registry, docker per server."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kamalpy.builtin_plugins.sandbox import report, system
from kamalpy.builtin_plugins.sandbox.hostdocker import client_env
from kamalpy.builtin_plugins.sandbox.state import SandboxError, Spec, load_state


@dataclass
class Sandbox:
    """Read from the state file ``up`` wrote. Servers are addressed by IP, name (``kps1``) or index (1...)."""

    spec: Spec
    state: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, spec: Spec | None = None) -> Sandbox:
        spec = spec or Spec.from_env()
        state = load_state(spec)
        if state is None or state.get("status") != "up":
            raise SandboxError(f"No sandbox is up in {spec.dir}; run 'kamalpy sandbox up'")
        return cls(spec, state)

    # -- what a deploy config needs --------------------------------------------------------------
    @property
    def servers(self) -> list[dict[str, Any]]:
        return self.state["servers"]

    @property
    def hosts(self) -> list[str]:
        return [server["address"] for server in self.servers]

    @property
    def names(self) -> list[str]:
        return [server["name"] for server in self.servers]

    @property
    def key(self) -> str:
        return self.state["key"]

    @property
    def known_hosts(self) -> str:
        return self.state["known_hosts"]

    @property
    def ssh_config(self) -> str:
        return self.state["ssh_config"]

    @property
    def registry(self) -> str:
        return self.state["registry"]["address"]

    @property
    def registry_auth(self) -> tuple[str, str] | None:
        reg = self.state["registry"]
        return (reg["username"], reg["password"]) if reg.get("username") else None

    @property
    def images(self) -> dict[str, str]:
        """``busybox``, ``app`` (v1), ``app_v2`` and ``caddy`` image references in the registry."""
        return self.state.get("images") or {}

    def deploy_yml(self) -> str:
        """The ``servers``/``ssh``/``registry`` part of a deploy.yml for these servers."""
        return report.deploy_snippet(self.state)

    # -- per server ------------------------------------------------------------------------------
    def server(self, host: str | int) -> dict[str, Any]:
        for server in self.servers:
            if host in (server["address"], server["name"], server["index"]):
                return server
        raise SandboxError(f"No sandbox server {host!r}")

    def docker_socket(self, host: str | int) -> Path:
        return Path(self.server(host)["docker_socket"])

    def docker_env(self, host: str | int) -> dict[str, str]:
        """Environment for a ``docker`` CLI talking to that server's dockerd directly (no ssh)."""
        return client_env(self.spec, self.docker_socket(host))

    def docker(self, host: str | int, *args: str, check: bool = True, input: str | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` against one server's dockerd."""
        return subprocess.run(["docker", *args], env=self.docker_env(host), capture_output=True, text=True,
                              check=check, input=input, timeout=timeout)

    def app_image(self, service: str, image: str | None = None) -> str:
        """Push the sandbox app (v1, v2, v3) as ``<registry>/<image or service>:vN`` labelled for ``service``.

        Returns the repository; deploy with ``service: SERVICE``, ``image: IMAGE`` and ``-P``.
        """
        from kamalpy.builtin_plugins.sandbox import hostdocker
        from kamalpy.builtin_plugins.sandbox import images as sandbox_images

        if hostdocker.trusts(self.spec):
            return sandbox_images.service_images(client_env(self.spec), self.registry, image or service, service)
        # The host dockerd was started by another sandbox without trusting this registry (as in `up`):
        # build on server 1, which trusts it, and untag there what was made so that no test sees it.
        env = self.docker_env(1)
        repository = sandbox_images.service_images(env, self.registry, image or service, service)
        system.run(["docker", "image", "rm", *(f"{repository}:{v}" for v in sandbox_images.APP_VERSIONS)],
                   env=env, check=False)
        return repository

    def local_registry_image(self) -> str:
        """The local registry image (``registry.local_image``) in the sandbox registry, made and pushed when
        missing (a sandbox brought up before it existed lacks it). Returns its tag."""
        from kamalpy.builtin_plugins.sandbox import images as sandbox_images

        tag = self.images.get("registry") or sandbox_images.registry_image(self.spec)
        if not self._pushed(tag):
            sandbox_images.build_and_push_registry(client_env(self.spec), tag)
        return tag

    def redis_image(self) -> str:
        """The redis accessory image in the sandbox registry, made and pushed when missing (a sandbox brought
        up before it existed lacks it). Returns its tag."""
        import shutil

        from kamalpy.builtin_plugins.sandbox import images as sandbox_images

        tag = self.images.get("redis") or sandbox_images.redis_image(self.spec)
        if not self._pushed(tag):
            if not (shutil.which("redis-server") and shutil.which("redis-cli")):
                raise SandboxError("The redis image needs Debian's redis-server and redis-tools "
                                   "(run scripts/sandbox-deps)")
            sandbox_images.build_and_push_redis(client_env(self.spec), tag)
        return tag

    def example_image(self, name: str) -> str:
        """The example stack's ``postgres`` or ``python`` image in the sandbox registry, made from Debian's
        packages and pushed when missing. Returns its tag."""
        from kamalpy.builtin_plugins.sandbox import images as sandbox_images

        tag = (sandbox_images.postgres_image if name == "postgres" else sandbox_images.python_image)(self.spec)
        if not self._pushed(tag):
            needed = sandbox_images.POSTGRES_BIN + "/postgres" if name == "postgres" else "/usr/bin/python3.11"
            import os

            if not os.path.exists(needed):
                raise SandboxError(f"The {name} image needs {needed} from Debian's packages (run scripts/sandbox-deps)")
            sandbox_images.build_and_push_example(client_env(self.spec), name, tag)
        return tag

    def _pushed(self, tag: str) -> bool:
        """Whether the sandbox registry has ``tag``."""
        import base64
        import json
        import urllib.request

        repository, _, version = tag.partition("/")[2].rpartition(":")
        request = urllib.request.Request(f"http://{self.registry}/v2/{repository}/tags/list")
        if self.registry_auth:
            token = base64.b64encode(":".join(self.registry_auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            tags = json.loads(urllib.request.urlopen(request, timeout=10).read()).get("tags") or []
        except (OSError, ValueError):  # 404: not pushed yet
            tags = []
        return version in tags

    def cpu_seconds(self, host: str | int) -> float:
        """CPU-seconds the server used since it started (daemons, ssh sessions, containers): see usage.py."""
        from kamalpy.builtin_plugins.sandbox import usage

        return usage.server_cpu_seconds(self.spec, self.server(host)["index"])

    def memory_bytes(self, host: str | int) -> int:
        """Memory the server uses now (daemons, ssh sessions, containers): see usage.py."""
        from kamalpy.builtin_plugins.sandbox import usage

        return usage.server_memory_bytes(self.spec, self.server(host)["index"])

    def ssh_args(self, host: str | int) -> list[str]:
        return ["ssh", "-F", self.ssh_config, f"root@{self.server(host)['address']}"]

    def ssh(self, host: str | int, command: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command on a server with the system ssh client (a new connection each time)."""
        return subprocess.run([*self.ssh_args(host), command], capture_output=True, text=True, check=check,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def sshd_log(self, host: str | int) -> Path:
        return Path(self.server(host)["sshd_log"])

    def _sshd_log_count(self, host: str | int, needle: str) -> int:
        try:
            return self.sshd_log(host).read_text(errors="replace").count(needle)
        except FileNotFoundError:
            return 0

    def ssh_logins(self, host: str | int) -> int:
        """SSH connections that logged in so far (sshd's ``Accepted publickey`` lines).

        Probes that only read the banner (``up``, ``status``) are not logins, so they do not count.
        """
        return self._sshd_log_count(host, "Accepted publickey for ")

    def ssh_sessions(self, host: str | int) -> int:
        """Session channels opened so far (one per command run over a connection)."""
        return self._sshd_log_count(host, "Starting session: ")

    def reset(self, host: str | int | None = None) -> None:
        """Remove every container, and the kamal network, on one server or all of them."""
        def clean(target: str | int) -> None:
            ids = self.docker(target, "ps", "-aq").stdout.split()
            if ids:
                self.docker(target, "rm", "-f", *ids, check=False)
            self.docker(target, "network", "rm", "kamal", check=False)

        system.parallel(clean, self.hosts if host is None else [host])
