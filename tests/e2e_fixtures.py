"""pytest plugin: what the end-to-end (sandbox) tests share, so a fix made here reaches all of them.

Loaded from conftest.py (``pytest_plugins``). The sandbox servers are shared by every test of a session:
each project has its own service name and removes what it made; the kamal-proxy container is shared too,
so a test that needs it gone or replaced goes through ``kamal_proxies``, which puts back what was there.

Fixtures
- ``project``: an instance of the test module's ``Project`` class (an :class:`E2EProject` subclass, or any
  class taking ``(root, sandbox)`` with a ``cleanup()`` method), made with ``root`` = ``tmp_path /
  "project"`` (created empty). Its ``cleanup()`` runs after the test, passed or failed. A module without a
  ``Project`` class gets a plain :class:`E2EProject`.
- ``kamal_proxy_standin`` (session): the tag of the kamal-proxy stand-in image in the sandbox registry
  (``images.kamal_proxy_image``), built and pushed when the registry lacks it.
- ``kamal_proxies``: a :class:`KamalProxies` for the test: ``kamal_proxies.clear(hosts)`` (no kamal-proxy
  container, no ``.kamal/proxy`` on those servers) and ``kamal_proxies.standin(hosts)`` (the stand-in
  running as kamal-proxy there; one already running is reused). After the test, whatever kamal-proxy the
  test left on those servers is removed and the one there before (container and ``.kamal/proxy``) is put
  back.

:class:`E2EProject` is the base of the modules' ``Project`` classes: a unique ``service`` (``PREFIX`` and 6
hex digits), ``hosts`` (the first three servers), ``sandbox_config()``, ``write()``, ``git_init()``,
``run()``/``ok()`` (kamalpy as a subprocess, checked by ``check_output``: no traceback, no ``SECRETS``),
``containers()``/``running()`` and a ``cleanup()`` that removes the service's containers and server files.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import Result, run_kamalpy

PROXY = "kamal-proxy"


class E2EProject:
    """A project directory deploying to the sandbox servers with ``kamalpy`` run as a subprocess."""

    PREFIX = "e2e"  # the start of the service name: tells a module's leftovers apart on the shared servers
    SECRETS: tuple[str, ...] = ()  # values that must never appear in kamalpy's output

    def __init__(self, root: Path, sandbox: Any) -> None:
        self.root, self.sandbox = root, sandbox
        self.service = f"{self.PREFIX}{secrets.token_hex(3)}"
        self.hosts: list[str] = list(sandbox.hosts)[:3]
        root.mkdir(parents=True, exist_ok=True)

    # -- writing the project ----------------------------------------------------------------------
    def sandbox_config(self, **extra: Any) -> dict[str, Any]:
        """``service``, ``image`` (the service name), the sandbox's servers/ssh/registry, amd64 builds, ``extra``."""
        return {"service": self.service, "image": self.service, **yaml.safe_load(self.sandbox.deploy_yml()),
                "builder": {"arch": "amd64"}, **extra}

    def write(self, config: Mapping[str, Any] | None = None, name: str = "deploy.yml") -> None:
        """``config/NAME`` from ``config`` (default: ``self.config``)."""
        (self.root / "config").mkdir(exist_ok=True)
        data = dict(config if config is not None else self.config)  # type: ignore[attr-defined]
        (self.root / "config" / name).write_text(yaml.safe_dump(data, sort_keys=False))

    def git_init(self) -> None:
        """A git repository with everything committed, as a real project is (the commit is the version)."""
        git = ["git", "-C", str(self.root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
            subprocess.run([*git, *args], check=True, capture_output=True)

    # -- running kamalpy ----------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every run (on top of this process's)."""
        return {"KAMAL_LOCK": "false", **extra}

    def run(self, *args: str, env: Mapping[str, str] | None = None, **more_env: str) -> Result:
        result = run_kamalpy(*args, cwd=self.root, env=self.env(**{**(env or {}), **more_env}))
        self.check_output(result)
        return result

    def check_output(self, result: Result) -> None:
        said = result.out + result.err
        assert "Traceback" not in said, result.err[-3000:]
        for secret in self.SECRETS:
            assert secret not in said  # never in output, even with -v

    def ok(self, *args: str, env: Mapping[str, str] | None = None, **more_env: str) -> Result:
        result = self.run(*args, env=env, **more_env)
        assert result.code == 0, (result.out + result.err)[-3000:]
        return result

    # -- reading the servers --------------------------------------------------------------------------
    def ssh(self, host: str, command: str) -> str:
        return self.sandbox.ssh(host, command, check=False).stdout

    def containers(self, host: str, service: str | None = None) -> dict[str, str]:
        """``{name: state}`` of the containers labelled ``service=SERVICE`` (default: this one's) on ``host``."""
        out = self.sandbox.docker(host, "ps", "-a", "--filter", f"label=service={service or self.service}",
                                  "--format", "{{.Names}} {{.State}}").stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def running(self, host: str) -> list[str]:
        return sorted(name for name, state in self.containers(host).items() if state == "running")

    # -- cleaning up -------------------------------------------------------------------------------------
    def services(self) -> list[str]:
        """The ``service`` labels this project's containers carry (accessories add their own)."""
        return [self.service]

    def cleanup(self) -> None:
        """Remove this project's containers, lock, env files and audit log from its hosts."""
        for host in self.hosts:
            names = [name for service in self.services() for name in self.containers(host, service)]
            if names:
                self.sandbox.docker(host, "rm", "-f", *names, check=False)
            self.sandbox.ssh(host, f"rm -rf .kamal/lock-{self.service} .kamal/apps/{self.service} "
                                   f".kamal/{self.service}-audit.log", check=False)


@pytest.fixture
def project(request: pytest.FixtureRequest, sandbox: Any, tmp_path: Path) -> Iterator[Any]:
    """The module's ``Project(tmp_path / "project", sandbox)``; its ``cleanup()`` after the test."""
    cls = getattr(request.module, "Project", E2EProject)
    made = cls(tmp_path / "project", sandbox)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture(scope="session")
def kamal_proxy_standin(sandbox: Any) -> str:
    """The stand-in's tag in the registry (pushed here for a sandbox brought up before it existed)."""
    from kamalpy.builtin_plugins.sandbox import hostdocker, images
    from kamalpy.commands.proxy import MINIMUM_VERSION

    tag = images.kamal_proxy_image(sandbox.spec)
    url = f"http://{sandbox.registry}/v2/basecamp/kamal-proxy/tags/list"
    try:
        tags = json.loads(urllib.request.urlopen(url, timeout=10).read()).get("tags") or []
    except OSError:
        tags = []
    if MINIMUM_VERSION not in tags:
        images.build_and_push_kamal_proxy(hostdocker.client_env(sandbox.spec), sandbox.images["busybox"], tag)
    return tag


def docker_run_args(found: Mapping[str, Any]) -> list[str]:
    """``docker run`` arguments that make again the container ``docker inspect`` showed as ``found``:
    its name, image, command, network, restart policy, volumes, published ports and log options."""
    host_config, config = found["HostConfig"], found["Config"]
    args = ["run", "--detach", "--name", found["Name"].lstrip("/")]
    if host_config.get("NetworkMode") not in (None, "", "default", "bridge"):
        args += ["--network", host_config["NetworkMode"]]
    restart = (host_config.get("RestartPolicy") or {}).get("Name")
    if restart and restart != "no":
        args += ["--restart", restart]
    for mount in found.get("Mounts") or []:
        source = mount["Name"] if mount["Type"] == "volume" else mount["Source"]
        args += ["--volume", f"{source}:{mount['Destination']}"]
    for port, bindings in sorted((host_config.get("PortBindings") or {}).items()):
        for binding in bindings or []:
            ip = binding.get("HostIp")
            args += ["--publish", f"{ip + ':' if ip else ''}{binding['HostPort']}:{port}"]
    for key, value in ((host_config.get("LogConfig") or {}).get("Config") or {}).items():
        args += ["--log-opt", f"{key}={value}"]
    return [*args, config["Image"], *(config.get("Cmd") or [])]


class KamalProxies:
    """The shared kamal-proxy of some servers, set aside for one test and put back after it."""

    def __init__(self, sandbox: Any, standin_tag: str) -> None:
        self.sandbox, self.standin_tag = sandbox, standin_tag
        self.token = secrets.token_hex(4)
        self.kept: dict[str, dict[str, Any] | None] = {}  # host -> what `docker inspect kamal-proxy` showed
        self.kept_directory: set[str] = set()  # hosts whose .kamal/proxy was moved aside

    def _inspect(self, host: str) -> dict[str, Any] | None:
        proc = self.sandbox.docker(host, "inspect", PROXY, check=False)
        return json.loads(proc.stdout)[0] if proc.returncode == 0 else None

    def _keep(self, host: str) -> None:
        if host in self.kept:
            return
        self.kept[host] = self._inspect(host)
        if self.kept[host] is not None:
            self.sandbox.docker(host, "rm", "-f", PROXY)
        moved = self.sandbox.ssh(host, f"test -d .kamal/proxy && mv .kamal/proxy .kamal/proxy.kept-{self.token}",
                                 check=False)
        if moved.returncode == 0:
            self.kept_directory.add(host)

    def clear(self, hosts: list[str]) -> None:
        """No kamal-proxy container and no ``.kamal/proxy`` on ``hosts`` until the test ends."""
        for host in hosts:
            self._keep(host)

    def standin(self, hosts: list[str]) -> list[str]:
        """The stand-in running as kamal-proxy on ``hosts`` (Kamal's flags); the hosts where it was started."""
        started = []
        for host in hosts:
            found = self._inspect(host)
            if found and found["State"]["Running"] and found["Config"]["Image"] == self.standin_tag:
                continue  # another test's stand-in: shared, its calls are told apart by service name
            self._keep(host)
            self.sandbox.docker(host, "network", "create", "kamal", check=False)
            self.sandbox.docker(host, "pull", "-q", self.standin_tag)
            self.sandbox.docker(host, "run", "--name", PROXY, "--network", "kamal", "--detach",
                                "--restart", "unless-stopped", "--volume",
                                "kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy", self.standin_tag)
            started.append(host)
        return started

    def restore(self) -> None:
        """Remove the test's kamal-proxy and ``.kamal/proxy`` and put back what was there before."""
        for host, found in self.kept.items():
            self.sandbox.docker(host, "rm", "-f", PROXY, check=False)
            self.sandbox.ssh(host, "rm -rf .kamal/proxy", check=False)
            if host in self.kept_directory:
                self.sandbox.ssh(host, f"mv .kamal/proxy.kept-{self.token} .kamal/proxy")
            if found is None:
                continue
            network = found["HostConfig"].get("NetworkMode")
            if network not in (None, "", "default", "bridge"):
                self.sandbox.docker(host, "network", "create", network, check=False)
            self.sandbox.docker(host, *docker_run_args(found))
            if not found["State"]["Running"]:
                self.sandbox.docker(host, "stop", PROXY)


@pytest.fixture
def kamal_proxies(sandbox: Any, kamal_proxy_standin: str) -> Iterator[KamalProxies]:
    """Set the servers' kamal-proxy aside for this test (``clear``/``standin``); put back after it."""
    proxies = KamalProxies(sandbox, kamal_proxy_standin)
    try:
        yield proxies
    finally:
        proxies.restore()
