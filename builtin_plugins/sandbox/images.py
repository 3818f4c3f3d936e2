"""Base images made locally (nothing can be pulled from the internet here) and pushed to the registry.

- ``busybox``: busybox-static plus its applet links, by ``docker import`` of a tar made here;
- ``sandbox-app:v1`` / ``:v2``: an example web app built FROM it with the legacy builder (no buildx):
  busybox httpd answering ``/up`` (``ok``) and ``/version`` (the tag); its shell traps SIGTERM, because
  busybox httpd as PID 1 ignores it, and drains (listener closed, requests in flight finished within 1 s,
  exit 0) as a real app server does;
  ``:v3`` is the same app without ``/up``: a release whose health check fails;
- ``caddy``: Debian's caddy binary and the libraries ``ldd`` lists, by ``docker import``;
- ``registry``: Debian's docker-registry (distribution) binary and a config serving plain HTTP on :5000,
  by ``docker import``: the local registry image (``registry.local_image``) where ``registry:3`` cannot
  be pulled;
- ``redis``: Debian's redis-server and redis-cli and the libraries ``ldd`` lists, by ``docker import``: a
  real accessory image (``redis-server --protected-mode no``, working directory ``/data``);
- ``postgres`` and ``python``: Debian's PostgreSQL 15 server and Python 3 with psycopg2, each with the
  libraries ``ldd`` lists and busybox, by ``docker import``: the images of the example stack
  (examples/stack): a database accessory, and the base its web app and worker are built from;
- ``basecamp/kamal-proxy:v0.9.2``: a kamal-proxy STAND-IN built FROM busybox (the real image cannot be
  pulled here): labelled like kamal-proxy, its ``kamal-proxy`` executable records every call (one line of
  arguments each) in ``calls.log`` of the config volume and succeeds; ``kamal-proxy run`` keeps running.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

from kamalpy.builtin_plugins.sandbox import system
from kamalpy.builtin_plugins.sandbox.state import SandboxError, Spec
from kamalpy.commands.layout import PROXY_IMAGE_DEFAULT
from kamalpy.commands.proxy import MINIMUM_VERSION

APP_VERSIONS = ("v1", "v2", "v3", "v4")
UNHEALTHY_VERSIONS = ("v3",)
FAILING_VERSIONS = ("v4",)  # /up answers ok, every other request 404: passes the health check, fails real traffic
CADDY_CONFIG = '{"admin": {"listen": "0.0.0.0:2019"}}\n'  # admin API on every interface: no Host checks
# The local registry image's config: Debian's /etc/docker/registry/config.yml without its htpasswd auth
# (a local registry is reached through the loopback and SSH forwards only), storage where registry:3 keeps it.
REGISTRY_CONFIG_PATH = "/etc/distribution/config.yml"
REGISTRY_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""
# Where the stand-in records its calls (inside the kamal-proxy-config volume Kamal mounts).
KAMAL_PROXY_CALLS_LOG = "/home/kamal-proxy/.config/kamal-proxy/calls.log"


def names(spec: Spec, caddy_version: str) -> dict[str, str]:
    reg = spec.registry
    return {
        "busybox": f"{reg}/busybox:latest",
        "app": f"{reg}/sandbox-app:v1",
        "app_v2": f"{reg}/sandbox-app:v2",
        "app_v3": f"{reg}/sandbox-app:v3",
        "app_v4": f"{reg}/sandbox-app:v4",
        "caddy": f"{reg}/caddy:{caddy_version}",
        "kamal_proxy": kamal_proxy_image(spec),
        "registry": registry_image(spec),
        # Only where Debian's redis-server is installed (scripts/sandbox-deps): older setups still come up.
        **({"redis": redis_image(spec)} if shutil.which("redis-server") and shutil.which("redis-cli") else {}),
    }


def kamal_proxy_image(spec: Spec) -> str:
    """The stand-in's tag: what ``proxy.run.registry: <sandbox registry>`` makes Kamal run."""
    return f"{spec.registry}/{PROXY_IMAGE_DEFAULT}:{MINIMUM_VERSION}"


def registry_image(spec: Spec) -> str:
    """``<sandbox registry>/registry:<distribution version>``, tagged with the Debian binary's version."""
    proc = system.run(["docker-registry", "--version"], check=False) if shutil.which("docker-registry") else None
    match = re.search(r" v?(\d+\.\d+\.\d+)", proc.stdout) if proc else None
    return f"{spec.registry}/registry:{match.group(1) if match else 'latest'}"


def redis_image(spec: Spec) -> str:
    """``<sandbox registry>/redis:<version>``, tagged with the Debian redis-server's version."""
    proc = system.run(["redis-server", "--version"], check=False) if shutil.which("redis-server") else None
    match = re.search(r"v=(\d+\.\d+\.\d+)", proc.stdout) if proc else None
    return f"{spec.registry}/redis:{match.group(1) if match else 'latest'}"


def caddy_version() -> str:
    proc = system.run(["caddy", "version"], check=False)
    match = re.search(r"v?(\d+\.\d+\.\d+)", proc.stdout)
    return match.group(1) if match else "latest"


def _libraries(binary: str) -> list[str]:
    """Absolute paths of the shared libraries ``ldd`` lists for ``binary`` (none for a static one)."""
    proc = system.run(["ldd", binary], check=False)
    return re.findall(r"(/\S+) \(0x", proc.stdout)


class _Rootfs:
    """A tar stream of a tiny root filesystem."""

    def __init__(self, fileobj: io.BufferedIOBase) -> None:
        self.tar = tarfile.open(fileobj=fileobj, mode="w|")
        self.dirs: set[str] = set()
        self.files: set[str] = set()

    def dir(self, path: str, mode: int = 0o755, owner: int = 0) -> None:
        path = path.strip("/")
        parent = os.path.dirname(path)
        if parent and parent not in self.dirs:
            self.dir(parent)
        if path in self.dirs:
            return
        self.dirs.add(path)
        info = tarfile.TarInfo(path)
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, owner, owner
        self.tar.addfile(info)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.dir(os.path.dirname(path.strip("/")))
        info = tarfile.TarInfo(path.strip("/"))
        info.size, info.mode = len(data), mode
        self.tar.addfile(info, io.BytesIO(data))

    def copy(self, host_path: str, path: str | None = None) -> None:
        """A host file (symlinks followed) at ``path`` (default: the same path); each path once."""
        real = os.path.realpath(host_path)
        target = (path or host_path).strip("/")
        if target in self.files:
            return
        self.files.add(target)
        self.dir(os.path.dirname(target))
        info = self.tar.gettarinfo(real, arcname=target)
        with open(real, "rb") as f:
            self.tar.addfile(info, f)

    def binary(self, host_path: str, path: str | None = None) -> None:
        self.copy(host_path, path)
        for lib in _libraries(host_path):
            self.copy(lib)

    def tree(self, host_dir: str, skip: tuple[str, ...] = ()) -> None:
        """Every file under ``host_dir`` at the same path (names in ``skip`` left out); shared objects
        with the libraries they need."""
        for root, dirs, files in os.walk(host_dir):
            dirs[:] = sorted(d for d in dirs if d not in skip)
            self.dir(root)
            for name in sorted(files):
                if name in skip or name.endswith(".pyc"):
                    continue
                path = os.path.join(root, name)
                if os.path.islink(path) and not os.path.exists(path):
                    continue
                (self.binary if ".so" in name else self.copy)(path)

    def symlink(self, path: str, target: str) -> None:
        self.dir(os.path.dirname(path.strip("/")))
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.linkname = tarfile.SYMTYPE, target
        self.tar.addfile(info)

    def base(self, users: str = "", groups: str = "") -> None:
        for path in ("etc", "proc", "sys", "dev", "var", "usr/bin", "usr/sbin", "bin", "sbin"):
            self.dir(path)
        self.dir("tmp", 0o1777)
        self.dir("root", 0o700)
        self.file("etc/passwd", ("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                                 + users).encode())
        self.file("etc/group", ("root:x:0:\nnogroup:x:65534:\n" + groups).encode())

    def close(self) -> None:
        self.tar.close()


def _import(env: dict[str, str], tag: str, changes: list[str], fill) -> None:
    """``docker import`` a rootfs streamed from ``fill(rootfs)``."""
    cmd = ["docker", "import", *(arg for change in changes for arg in ("-c", change)), "-", tag]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    try:
        rootfs = _Rootfs(proc.stdin)
        fill(rootfs)
        rootfs.close()
        proc.stdin.flush()
    except BrokenPipeError:
        pass
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise SandboxError(f"docker import {tag} failed: {err.decode().strip().splitlines()[-1:]}")


def _busybox(rootfs: _Rootfs) -> None:
    busybox = shutil.which("busybox") or "/bin/busybox"
    rootfs.base()
    rootfs.binary(busybox, "/bin/busybox")
    applets = system.run([busybox, "--list-full"]).stdout.split()
    for applet in applets:
        if applet.strip("/") != "bin/busybox":
            rootfs.symlink(applet, "/bin/busybox")
    rootfs.dir("var/www")


def _busybox_applets(rootfs: _Rootfs) -> None:
    busybox = shutil.which("busybox") or "/bin/busybox"
    rootfs.binary(busybox, "/bin/busybox")
    for applet in system.run([busybox, "--list-full"]).stdout.split():
        if applet.strip("/") not in rootfs.files:
            rootfs.files.add(applet.strip("/"))
            rootfs.symlink(applet, "/bin/busybox")


def _caddy(rootfs: _Rootfs) -> None:
    rootfs.base()
    rootfs.binary(shutil.which("caddy") or "/usr/bin/caddy", "/usr/bin/caddy")
    rootfs.file("etc/caddy/caddy.json", CADDY_CONFIG.encode())
    for path in ("config", "data", "srv"):
        rootfs.dir(path)
    if os.path.isdir("/etc/ssl/certs") and os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
        rootfs.copy("/etc/ssl/certs/ca-certificates.crt")


def _registry(rootfs: _Rootfs) -> None:
    rootfs.base()
    rootfs.binary(shutil.which("docker-registry") or "/usr/bin/docker-registry", "/bin/registry")
    rootfs.file(REGISTRY_CONFIG_PATH, REGISTRY_CONFIG.encode())
    rootfs.dir("var/lib/registry")


def _redis(rootfs: _Rootfs) -> None:
    rootfs.base()
    # redis-server is a link to redis-check-rdb that picks its mode from argv[0]: copied under its own name.
    rootfs.binary(shutil.which("redis-server") or "/usr/bin/redis-server", "/usr/bin/redis-server")
    cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    rootfs.copy(cli, "/usr/bin/redis-cli")
    server_libs = set(_libraries(shutil.which("redis-server") or "/usr/bin/redis-server"))
    for lib in _libraries(cli):
        if lib not in server_libs:  # each library once in the tar
            rootfs.copy(lib)
    rootfs.dir("data")
    rootfs.dir("usr/local/etc/redis")


def build_and_push_redis(env: dict[str, str], tag: str) -> None:
    """Make the redis accessory image and push it: also for a sandbox made before it existed."""
    _import(env, tag, ["EXPOSE 6379", "WORKDIR /data", 'CMD ["redis-server", "--protected-mode", "no"]'], _redis)
    system.run(["docker", "push", "-q", tag], env=env, timeout=300)


# ----- the example stack's images (examples/stack): PostgreSQL and Python from Debian's packages -----

POSTGRES_BIN = "/usr/lib/postgresql/15/bin"
POSTGRES_UID = 999
# The entrypoint: a new data directory gets a cluster (password from POSTGRES_PASSWORD, local connections
# trusted, others by scram-sha-256) and POSTGRES_DB; then the server runs in the foreground.
POSTGRES_ENTRYPOINT = """#!/bin/sh
set -e
PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  umask 077
  printf '%s\\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > /tmp/pwfile
  initdb -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile=/tmp/pwfile --auth-local=trust \\
    --auth-host=scram-sha-256 --locale=C --encoding=UTF8 >/dev/null
  rm -f /tmp/pwfile
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ -n "$POSTGRES_DB" ] && [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \\"$POSTGRES_DB\\";" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
"""


def postgres_image(spec: Spec) -> str:
    proc = system.run([f"{POSTGRES_BIN}/postgres", "--version"], check=False) \
        if os.path.exists(f"{POSTGRES_BIN}/postgres") else None
    match = re.search(r"\) (\d+)\.", proc.stdout) if proc else None  # the major version: a stable tag
    return f"{spec.registry}/postgres:{match.group(1) if match else 'latest'}"


def python_image(spec: Spec) -> str:
    proc = system.run(["/usr/bin/python3", "--version"], check=False) if os.path.exists("/usr/bin/python3") else None
    match = re.search(r"(\d+\.\d+)\.\d+", proc.stdout) if proc else None  # major.minor: a stable tag
    return f"{spec.registry}/python:{match.group(1) if match else 'latest'}"


def _postgres(rootfs: _Rootfs) -> None:
    rootfs.base(users=f"postgres:x:{POSTGRES_UID}:{POSTGRES_UID}:PostgreSQL:/var/lib/postgresql:/bin/sh\n",
                groups=f"postgres:x:{POSTGRES_UID}:\n")
    _busybox_applets(rootfs)
    for name in ("postgres", "initdb", "pg_ctl", "psql", "pg_isready", "pg_dump"):
        rootfs.binary(f"{POSTGRES_BIN}/{name}")
    rootfs.tree("/usr/lib/postgresql/15/lib", skip=("bitcode", "llvmjit.so", "llvmjit_types.bc"))
    rootfs.tree("/usr/share/postgresql/15", skip=("man",))
    for zone in ("UTC", "Etc/UTC"):
        if os.path.exists(f"/usr/share/zoneinfo/{zone}"):
            rootfs.copy(f"/usr/share/zoneinfo/{zone}")
    rootfs.dir("var/lib/postgresql", 0o755, POSTGRES_UID)
    rootfs.dir("var/lib/postgresql/data", 0o700, POSTGRES_UID)
    rootfs.dir("var/run/postgresql", 0o2775, POSTGRES_UID)
    rootfs.file("usr/local/bin/docker-entrypoint.sh", POSTGRES_ENTRYPOINT.encode(), 0o755)


def _python(rootfs: _Rootfs) -> None:
    rootfs.base()
    _busybox_applets(rootfs)
    rootfs.binary("/usr/bin/python3.11")
    rootfs.symlink("/usr/bin/python3", "python3.11")
    rootfs.tree("/usr/lib/python3.11", skip=("test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip",
                                             "lib2to3", "__pycache__", "config-3.11-x86_64-linux-gnu"))
    rootfs.tree("/usr/lib/python3/dist-packages/psycopg2", skip=("__pycache__",))
    rootfs.dir("app")


def build_and_push_example(env: dict[str, str], name: str, tag: str) -> None:
    """Make the example stack's ``postgres`` or ``python`` image and push it."""
    if name == "postgres":
        _import(env, tag, ["EXPOSE 5432", "USER postgres", f"ENV PATH={POSTGRES_BIN}:/bin:/usr/bin",
                           "ENV TZ=UTC", 'CMD ["/usr/local/bin/docker-entrypoint.sh"]'], _postgres)
    else:
        _import(env, tag, ["ENV PATH=/usr/bin:/bin", "ENV PYTHONUNBUFFERED=1", "WORKDIR /app"], _python)
    system.run(["docker", "push", "-q", tag], env=env, timeout=600)


def _import_registry(env: dict[str, str], tag: str) -> None:
    # No VOLUME (unlike registry:3): its data goes with the container, so `registry remove` leaves nothing.
    _import(env, tag, ["EXPOSE 5000", 'ENTRYPOINT ["/bin/registry", "serve"]', f'CMD ["{REGISTRY_CONFIG_PATH}"]'],
            _registry)


def build_and_push_registry(env: dict[str, str], tag: str) -> None:
    """Make the local registry image and push it: also for a sandbox made before it existed."""
    _import_registry(env, tag)
    system.run(["docker", "push", "-q", tag], env=env, timeout=300)


def _build_app(env: dict[str, str], base: str, tag: str, version: str) -> None:
    package = resources.files("kamalpy.builtin_plugins.sandbox")
    with tempfile.TemporaryDirectory(prefix="kamalpy-sandbox-app-") as context:
        Path(context, "Dockerfile").write_text(package.joinpath("files/app.Dockerfile").read_text())
        Path(context, "app-start.sh").write_text(package.joinpath("files/app-start.sh").read_text())
        healthy = "0" if version in UNHEALTHY_VERSIONS else "1"
        serving = "0" if version in FAILING_VERSIONS else "1"
        system.run(["docker", "build", "-q", "--build-arg", f"BASE={base}", "--build-arg", f"VERSION={version}",
                    "--build-arg", f"HEALTHY={healthy}", "--build-arg", f"SERVING={serving}", "-t", tag, context],
                   env=env, timeout=300)


def _build_kamal_proxy(env: dict[str, str], base: str, tag: str) -> None:
    package = resources.files("kamalpy.builtin_plugins.sandbox")
    with tempfile.TemporaryDirectory(prefix="kamalpy-sandbox-proxy-") as context:
        Path(context, "Dockerfile").write_text(package.joinpath("files/kamal-proxy.Dockerfile").read_text())
        Path(context, "kamal-proxy-standin.sh").write_text(package.joinpath("files/kamal-proxy-standin.sh").read_text())
        system.run(["docker", "build", "-q", "--build-arg", f"BASE={base}", "-t", tag, context], env=env, timeout=300)


def build_and_push_kamal_proxy(env: dict[str, str], busybox: str, tag: str) -> None:
    """Make the kamal-proxy stand-in from the (pushed) busybox image and push it: also for a sandbox made
    before the stand-in existed."""
    _build_kamal_proxy(env, busybox, tag)
    system.run(["docker", "push", "-q", tag], env=env, timeout=300)


def service_images(env: dict[str, str], registry: str, image: str, service: str,
                   versions: tuple[str, ...] = APP_VERSIONS) -> str:
    """Tag the sandbox app as ``<registry>/<image>:<version>`` with the ``service`` label Kamal's pull checks.

    A deploy of a configuration with ``service: SERVICE`` and ``image: IMAGE`` can then pull every version
    (``-P``) without a builder. Returns the repository. Each tag is a label layer on the app: quick.
    """
    repository = f"{registry}/{image}"

    def make(version: str) -> None:
        dockerfile = f"FROM {registry}/sandbox-app:{version}\nLABEL service=\"{service}\"\n"
        system.run(["docker", "build", "-q", "-t", f"{repository}:{version}", "-"], input=dockerfile, env=env,
                   timeout=300)
        system.run(["docker", "push", "-q", f"{repository}:{version}"], env=env, timeout=300)

    system.parallel(make, versions)
    return repository


def build_and_push(env: dict[str, str], images: dict[str, str], auth: tuple[str, str] | None) -> None:
    """Make every image with the docker CLI env ``env`` (host or a server's dockerd) and push it."""
    if auth:
        system.run(["docker", "login", images["busybox"].split("/")[0], "-u", auth[0], "--password-stdin"],
                   input=auth[1], env=env)
    def push(*tags: str) -> None:
        system.parallel(lambda tag: system.run(["docker", "push", "-q", tag], env=env, timeout=300), tags)

    def small_images() -> None:
        _import(env, images["busybox"], ['CMD ["sh"]'], _busybox)
        system.parallel(lambda job: job(), [
            lambda: push(images["busybox"]),
            lambda: _build_app(env, images["busybox"], images["app"], APP_VERSIONS[0]),
            lambda: _build_app(env, images["busybox"], images["app_v2"], APP_VERSIONS[1]),
            lambda: _build_app(env, images["busybox"], images["app_v3"], APP_VERSIONS[2]),
            lambda: _build_app(env, images["busybox"], images["app_v4"], APP_VERSIONS[3]),
            lambda: _build_kamal_proxy(env, images["busybox"], images["kamal_proxy"]),
        ])
        push(images["app"], images["app_v2"], images["app_v3"], images["app_v4"], images["kamal_proxy"])

    def caddy() -> None:  # the big one (40 MB, its push compresses it): runs beside the others
        _import(env, images["caddy"], [
            "ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data HOME=/data",
            "EXPOSE 80 443 2019",
            'CMD ["/usr/bin/caddy", "run", "--config", "/etc/caddy/caddy.json"]',
        ], _caddy)
        # Also as `caddy:2`, the caddy driver's default image, so `proxy.run.registry` alone selects it.
        major = images["caddy"].rsplit(":", 1)[0] + ":2"
        system.run(["docker", "tag", images["caddy"], major], env=env)
        # One after the other: two pushes of the same layers at once have ended in "manifest blob unknown".
        push(images["caddy"])
        push(major)

    def local_registry() -> None:
        if "registry" in images:
            build_and_push_registry(env, images["registry"])

    def redis() -> None:
        if "redis" in images:
            build_and_push_redis(env, images["redis"])

    system.parallel(lambda job: job(), [caddy, small_images, local_registry, redis])


def remove_local(env: dict[str, str], registry: str) -> None:
    """Remove from a dockerd every image tagged for the sandbox registry."""
    proc = system.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"], env=env, check=False)
    tags = [tag for tag in proc.stdout.split() if tag.startswith(registry + "/")]
    if tags:
        system.run(["docker", "image", "rm", "-f", *tags], env=env, check=False)
