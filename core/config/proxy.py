"""The ``proxy:`` section (root, per role, per accessory): hosts, TLS, routing options and the ``run`` settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kamalpy.config.args import is_present
from kamalpy.errors import ConfigurationError

DEFAULT_APP_PORT = 80
DEFAULT_PROXY_DRIVER = "kamal-proxy"
PROXY_ROOT_ONLY_KEYS = ("driver", "caddy")  # kamalpy keys: one proxy per host, so set once for all
DEFAULT_LOG_REQUEST_HEADERS = ("Cache-Control", "Last-Modified", "User-Agent")
# Where kamal-proxy sees the per-app config directory (bind mount of .kamal/proxy/apps-config).
APPS_CONFIG_CONTAINER_DIRECTORY = "/home/kamal-proxy/.apps-config"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """ActiveSupport ``deep_merge``: nested mappings merge, everything else in ``override`` wins."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_proxy(raw: Any, context: str) -> None:
    """Kamal's proxy rules beyond plain types, for one proxy hash as written or as merged for a role.

    The host rules are the schema's for each section as written; they are repeated here because a role's
    proxy is the root's with the role's merged over it (``host`` from one, ``hosts`` from the other), which
    no schema of a single section sees. Certificates and ``run`` are checked only here.
    """
    if not isinstance(raw, Mapping):
        return
    if not is_present(raw.get("host")) and not is_present(raw.get("hosts")) and _truthy(raw.get("ssl")):
        raise ConfigurationError(f"{context}: Must set a host to enable automatic SSL")
    if "host" in raw and "hosts" in raw:
        raise ConfigurationError(f"{context}: Specify one of 'host' or 'hosts', not both")
    ssl = raw.get("ssl")
    if isinstance(ssl, Mapping):
        cert, key = is_present(ssl.get("certificate_pem")), is_present(ssl.get("private_key_pem"))
        if cert and not key:
            raise ConfigurationError(
                f"{context}: Missing private_key_pem setting (required when certificate_pem is present)")
        if key and not cert:
            raise ConfigurationError(
                f"{context}: Missing certificate_pem setting (required when private_key_pem is present)")
    run = raw.get("run")
    # Ports count when set at all (0 too, as in Ruby); an empty bind_ips list does not.
    if isinstance(run, Mapping) and run.get("publish") is False and (
        _truthy(run.get("http_port")) or _truthy(run.get("https_port")) or is_present(run.get("bind_ips"))
    ):
        raise ConfigurationError(f"{context}: Cannot set http_port, https_port or bind_ips when publish is false")


def _truthy(value: Any) -> bool:
    """Ruby truthiness: only nil and false are false."""
    return value is not None and value is not False


class Proxy:
    """One effective proxy configuration (for a role: the root proxy with the role's hash merged over it)."""

    def __init__(self, raw: Mapping[str, Any] | None, context: str = "proxy") -> None:
        self.raw: dict[str, Any] = dict(raw or {})
        self.context = context

    def merge(self, override: Mapping[str, Any]) -> Proxy:
        return Proxy(deep_merge(self.raw, override), self.context)

    @property
    def hosts(self) -> list[str]:
        if self.raw.get("hosts"):
            return [str(h) for h in self.raw["hosts"]]
        host = self.raw.get("host")
        return str(host).split(",") if host else []

    @property
    def app_port(self) -> int:
        return self.raw.get("app_port", DEFAULT_APP_PORT)

    @property
    def ssl(self) -> bool:
        return bool(self.raw.get("ssl", False))

    @property
    def custom_ssl_certificate(self) -> bool:
        ssl = self.raw.get("ssl")
        return isinstance(ssl, Mapping) and is_present(ssl.get("certificate_pem")) and is_present(
            ssl.get("private_key_pem"))

    @property
    def certificate_pem_secret(self) -> str | None:
        return self.raw["ssl"]["certificate_pem"] if self.custom_ssl_certificate else None

    @property
    def private_key_pem_secret(self) -> str | None:
        return self.raw["ssl"]["private_key_pem"] if self.custom_ssl_certificate else None

    @property
    def path_prefixes(self) -> list[str]:
        if self.raw.get("path_prefixes"):
            return [str(p) for p in self.raw["path_prefixes"]]
        prefix = self.raw.get("path_prefix")
        return str(prefix).split(",") if prefix else []

    @property
    def run(self) -> dict[str, Any] | None:
        """The ``run`` settings (how the proxy container runs on the host), None when not set."""
        run = self.raw.get("run")
        return dict(run) if isinstance(run, Mapping) else None

    def deploy_options(self, *, deploy_timeout: int, drain_timeout: int, tls_directory: str | None = None,
                       error_pages_directory: str | None = None) -> dict[str, Any]:
        """kamal-proxy ``deploy`` flags in Kamal's order (without ``target``); None values are dropped.

        ``tls_directory`` is the container path of the role's custom certificate files;
        ``error_pages_directory`` the container path of this version's error pages.
        """
        raw = self.raw
        healthcheck = raw.get("healthcheck") or {}
        buffering = raw.get("buffering") or {}
        logging = raw.get("logging") or {}
        custom = self.custom_ssl_certificate and tls_directory
        options: dict[str, Any] = {
            "host": self.hosts,
            "tls": True if raw.get("ssl") else None,
            "tls-certificate-path": f"{tls_directory}/cert.pem" if custom else None,
            "tls-private-key-path": f"{tls_directory}/key.pem" if custom else None,
            "deploy-timeout": _seconds(deploy_timeout),
            "drain-timeout": _seconds(drain_timeout),
            "health-check-interval": _seconds(healthcheck.get("interval")),
            "health-check-timeout": _seconds(healthcheck.get("timeout")),
            "health-check-path": healthcheck.get("path"),
            "target-timeout": _seconds(raw.get("response_timeout")),
            "buffer-requests": buffering.get("requests", True),
            "buffer-responses": buffering.get("responses", True),
            "buffer-memory": buffering.get("memory"),
            "max-request-body": buffering.get("max_request_body"),
            "max-response-body": buffering.get("max_response_body"),
            "path-prefix": self.path_prefixes,
            "strip-path-prefix": raw.get("strip_path_prefix"),
            "forward-headers": raw.get("forward_headers"),
            "tls-redirect": raw.get("ssl_redirect"),
            "log-request-header": logging.get("request_headers") or list(DEFAULT_LOG_REQUEST_HEADERS),
            "log-response-header": logging.get("response_headers"),
            "error-pages": error_pages_directory,
        }
        return {k: v for k, v in options.items() if v is not None and v != []}


def _seconds(value: Any) -> str | None:
    """Ruby's ``"#{value}s" if value``: 0 is truthy there, so it gives "0s"."""
    return None if value is None or value is False else f"{value}s"
