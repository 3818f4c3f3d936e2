"""An app role's calls to kamal-proxy (``docker exec kamal-proxy kamal-proxy ...``) and its proxy-side files.

The kamal-proxy service of a role is its container prefix (``<service>-<role>[-<destination>]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kamalpy.commands.base import Command, docker, file_join, make_directory, remove_directory
from kamalpy.commands.layout import (
    PROXY_CONTAINER,
    error_pages_container_directory,
    error_pages_directory,
    proxy_app_directory,
    tls_container_directory,
    tls_directory,
)
from kamalpy.config.args import optionize

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.config.model import Configuration
    from kamalpy.config.proxy import Proxy
    from kamalpy.config.roles import Role


def _proxy_exec(*command: Any) -> Command:
    return docker("exec", PROXY_CONTAINER, "kamal-proxy", *command)


def _role_proxy(role: Role) -> Proxy:
    proxy = role.proxy
    if proxy is None:
        raise ValueError(f"role {role.name} runs no proxy")  # a caller bug: only proxied roles get here
    return proxy


def deploy_options(role: Role) -> dict[str, Any]:
    """kamal-proxy ``deploy`` flags of the role in Kamal's order (without the target)."""
    config = role.config
    proxy = _role_proxy(role)
    return proxy.deploy_options(
        deploy_timeout=config.deploy_timeout, drain_timeout=config.drain_timeout,
        tls_directory=tls_container_directory(config, role.name) if proxy.custom_ssl_certificate else None,
        error_pages_directory=(file_join(error_pages_container_directory(config), config.version)
                               if config.error_pages_path else None))


def deploy_command_args(role: Role, target: str) -> list[str]:
    """``--target="<target>:<app_port>"`` then the deploy flags, each as ``--flag="value"``."""
    options = {"target": f"{target}:{_role_proxy(role).app_port}", **deploy_options(role)}
    return optionize(options, with_="=")


def deploy(role: Role, target: str) -> Command:
    """Route the role's traffic to ``target`` (the new container's id); blocks until healthy or timed out."""
    return _proxy_exec("deploy", role.container_prefix, *deploy_command_args(role, target))


def remove(role: Role) -> Command:
    return _proxy_exec("remove", role.container_prefix)


def live(role: Role) -> Command:
    """Resume a service stopped for maintenance."""
    return _proxy_exec("resume", role.container_prefix)


def maintenance(role: Role, *, drain_timeout: int | str | None = None, message: str | None = None) -> Command:
    """Stop serving the role (kamal-proxy answers with its maintenance page and ``message``)."""
    options = {"drain-timeout": f"{drain_timeout}s" if drain_timeout else None, "message": message}
    return _proxy_exec("stop", role.container_prefix,
                       *optionize({k: v for k, v in options.items() if v is not None}, with_="="))


def remove_proxy_app_directory(config: Configuration) -> Command:
    """``rm -r .kamal/proxy/apps-config/<service>[-<destination>]`` (``app remove``)."""
    return remove_directory(proxy_app_directory(config))


# ----- error pages and custom certificates (uploaded into the proxy's apps-config) -----

def create_error_pages_directory(config: Configuration) -> Command:
    return make_directory(error_pages_directory(config))


def clean_up_error_pages(config: Configuration, version: str | None = None) -> Command:
    """Remove every version's error pages but ``version`` (default: the configuration's)."""
    return ["find", error_pages_directory(config), "-mindepth", "1", "-maxdepth", "1", "!", "-name",
            version or config.version, "-exec", "rm", "-rf", "{} +"]


def create_tls_directory(role: Role) -> Command:
    return make_directory(tls_directory(role.config, role.name))


TLS_CERTIFICATE_MODE, TLS_KEY_MODE = 0o644, 0o600  # Kamal uploads both 0644; a private key stays private
TLS_KEY = "key.pem"


def tls_files(role: Role) -> dict[str, tuple[str, int]]:
    """``{host path: (secret name, mode)}`` of the role's custom certificate and key (empty without them)."""
    proxy = _role_proxy(role)
    if not proxy.custom_ssl_certificate:
        return {}
    directory = tls_directory(role.config, role.name)
    return {file_join(directory, "cert.pem"): (str(proxy.certificate_pem_secret), TLS_CERTIFICATE_MODE),
            file_join(directory, TLS_KEY): (str(proxy.private_key_pem_secret), TLS_KEY_MODE)}


def give_tls_key_to_proxy(role: Role) -> Command:
    """kamal-proxy runs as its own non-root user: the 0600 key becomes that user's (root chowns, in the container)."""
    key = file_join(tls_container_directory(role.config, role.name), TLS_KEY)
    return docker("exec", "--user", "root", PROXY_CONTAINER, "chown", "kamal-proxy:kamal-proxy", key)


