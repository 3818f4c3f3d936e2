"""The image registry: Debian's ``docker-registry`` (distribution v2) on the bridge address, port 5000.

Every sandbox dockerd trusts it as an insecure (plain HTTP) registry. Without ``--registry-auth`` it
accepts any login; with ``--registry-auth USER:PASSWORD`` it checks an htpasswd file (bcrypt).
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

from kamalpy.builtin_plugins.sandbox import system
from kamalpy.builtin_plugins.sandbox.state import REGISTRY_PORT, SandboxError, Spec

# bcrypt's lowest cost: the registry checks the password on every request, and this is a test sandbox.
BCRYPT_COST = 4


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise SandboxError("--registry-auth must be USER:PASSWORD")
    return user, password


def htpasswd_line(user: str, password: str) -> str:
    """``user:$2b$...`` from Python's bcrypt when installed, else from apache2-utils' htpasswd."""
    try:
        import bcrypt
    except ImportError:
        if shutil.which("htpasswd") is None:
            raise SandboxError("--registry-auth needs Python's bcrypt or htpasswd (apache2-utils)") from None
        proc = system.run(["htpasswd", "-nbB", "-C", str(BCRYPT_COST), user, password])
        return proc.stdout.strip()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
    return f"{user}:{hashed}"


def registry_dir(spec: Spec) -> Path:
    return spec.dir / "registry"


def start(spec: Spec, auth: tuple[str, str] | None) -> int:
    """Write the config (and htpasswd) and start the registry; returns its pid."""
    rdir = registry_dir(spec)
    (rdir / "data").mkdir(parents=True, exist_ok=True)
    config: dict = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {"filesystem": {"rootdirectory": str(rdir / "data")}, "delete": {"enabled": True}},
        "http": {"addr": spec.registry, "secret": secrets.token_hex(16)},
    }
    if auth:
        (rdir / "htpasswd").write_text(htpasswd_line(*auth) + "\n")
        config["auth"] = {"htpasswd": {"realm": "kamalpy-sandbox", "path": str(rdir / "htpasswd")}}
    (rdir / "config.yml").write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return system.spawn_daemon(["docker-registry", "serve", str(rdir / "config.yml")], rdir / "registry.log")


def answers(spec: Spec) -> bool:
    """The registry's API root answers: 200 when open, 401 when it requires a login."""
    return system.http_status(spec.gateway, REGISTRY_PORT, "/v2/", timeout=1) in (200, 401)
