"""Invalid configurations through the whole pipeline: ``kamalpy config`` must fail like ``kamal config``.

Each case is a complete ``config/deploy.yml`` and the message Kamal 2.11 prints for it. kamalpy must
print exactly one line ``ERROR: <message>`` on stderr and exit 1. The expected messages are stored here,
so the test runs without Kamal too; with Kamal installed, ``test_kamal_agrees`` checks them against it
(all Kamal calls in parallel). Kamal's answers are cached per document in ``$KAMALPY_TEST_CACHE``
(default ``~/.cache/kamalpy``, ``off`` disables), as in test_config_differential: Kamal costs ~1.5 s of
CPU per call.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import ANSI, kamal_cache_dir, write_project

KAMAL = shutil.which("kamal")
CACHE = kamal_cache_dir("kamal-messages")

BASE = """\
service: app
image: a/b
registry: {username: u, password: p}
builder: {arch: amd64}
servers: [1.1.1.1]
"""
NO_SERVERS = BASE.replace("servers: [1.1.1.1]\n", "")


def case(extra: str, message: str, base: str = BASE) -> tuple[str, str]:
    return base + extra, message


CASES: dict[str, tuple[str, str]] = {
    # unknown keys at several depths
    "root_unknown_key": case("foo: 1\n", "unknown key: foo"),
    "root_unknown_keys": case("foo: 1\nbar: 2\n", "unknown keys: foo, bar"),
    "root_unknown_before_types": case("service: [1]\nfoo: 1\n", "unknown key: foo"),
    "root_stop_timeout_is_2_12": case("stop_timeout: 3\n", "unknown key: stop_timeout"),
    "root_output_is_2_12": case("output: {}\n", "unknown key: output"),
    "ssh_forward_agent_is_2_12": case("ssh: {forward_agent: true}\n", "ssh: unknown key: forward_agent"),
    "extension_key_below_root": case("builder: {arch: amd64, x-foo: 1}\n", "builder: unknown key: x-foo"),
    "role_unknown_keys": case("servers: {web: {hosts: [1.1.1.1], foo: 1, bar: 2}}\n",
                              "servers/web: unknown keys: foo, bar"),
    "role_stop_timeout_is_2_12": case("servers: {web: {hosts: [1.1.1.1], stop_timeout: 1}}\n",
                                      "servers/web: unknown key: stop_timeout"),
    "proxy_run_unknown_key": case("proxy: {run: {http_port: 80, foo: 1}}\n", "proxy/run: unknown key: foo"),
    "builder_cache_unknown_key": case("builder: {arch: amd64, cache: {foo: 1}}\n", "builder/cache: unknown key: foo"),
    "accessory_unknown_key": case("accessories: {db: {image: x, host: h, foo: 1}}\n",
                                  "accessories/db: unknown key: foo"),
    "sshkit_default_env_is_unknown": case("sshkit: {default_env: {A: b}}\n", "sshkit: unknown key: default_env"),
    # wrong types
    "service_array": case("service: [1]\n", "service: should be a string"),
    "image_nil": case("image:\n", "image: should be a string"),
    "retain_containers_string": case('retain_containers: "3"\n', "retain_containers: should be an integer"),
    "readiness_delay_float": case("readiness_delay: 1.5\n", "readiness_delay: should be an integer"),
    "require_destination_string": case('require_destination: "yes"\n', "require_destination: should be a boolean"),
    "minimum_version_date": case("minimum_version: 2024-01-01\n", "minimum_version: should be a string"),
    "labels_not_hash": case("labels: 1\n", "labels: should be a hash"),
    "volumes_not_array": case("volumes: x\n", "volumes: should be an array"),
    "volumes_entry": case("volumes: [a, []]\n", "volumes/1: should be a string"),
    "root_order_is_user_order": case('require_destination: "yes"\nretain_containers: "3"\n',
                                     "require_destination: should be a boolean"),
    "hooks_output_array": case("hooks_output: []\n", "hooks_output: should be a string or a symbol"),
    "hooks_output_hook_array": case("hooks_output: {pre-deploy: []}\n",
                                    "hooks_output/pre-deploy: should be a string or a symbol"),
    # servers and hosts
    "servers_scalar": case("servers: 1.1.1.1\n", "servers: should be an array or a hash", NO_SERVERS),
    "servers_nested_array": case("servers: [[1]]\n", "servers/0: should be a string or a hash", NO_SERVERS),
    "servers_two_hosts_in_one": case("servers: [{a: x, b: y}]\n", "servers/0: multiple hosts found", NO_SERVERS),
    "servers_bad_tags": case("servers: [{a: {x: 1}}]\n", "servers/0/a: should be a string or an array", NO_SERVERS),
    "servers_bad_tag": case("servers: [h1, {a: [t, []]}]\n", "servers/1/a/1: should be a string", NO_SERVERS),
    "role_scalar": case("servers: {web: 1}\n", "servers/web: should be an array or a hash", NO_SERVERS),
    "role_hosts_scalar": case("servers: {web: {hosts: 1}}\n", "servers/web/hosts: should be an array", NO_SERVERS),
    "role_options": case("servers: {web: {hosts: [h], options: 1}}\n", "servers/web/options: should be a hash",
                         NO_SERVERS),
    "roles_by_name": case("servers: {b: {hosts: [h], cmd: []}, a: {hosts: [h], cmd: []}}\n",
                          "servers/a/cmd: should be a string", NO_SERVERS),
    "role_proxy_nil": case("servers: {web: {hosts: [h], proxy: }}\n", "servers/web/proxy: should be a hash",
                           NO_SERVERS),
    "role_env_before_logging": case("servers: {web: {hosts: [h], logging: {driver: []}, env: {A: []}}}\n",
                                    "servers/web/env/A: should be a string", NO_SERVERS),
    "role_reserved_label": case("servers: {web: {hosts: [h], labels: {service: x}}}\n",
                                "servers/web/labels/service: invalid label. destination, role, and service are "
                                "reserved labels", NO_SERVERS),
    "role_restart_option": case("servers: {web: {hosts: [h], options: {restart: always}}}\n",
                                "servers/web: Cannot set restart policy in docker options, unless-stopped is required",
                                NO_SERVERS),
    # env
    "env_not_hash": case("env: [1]\n", "env: should be a hash"),
    "env_value": case("env: {FOO: [1]}\n", "env/FOO: should be a string"),
    "env_clear_value": case("env: {clear: {A: []}}\n", "env/clear/A: should be a string"),
    "env_plain_key_beside_clear": case("env: {clear: {A: 1}, B: 2}\n", "env: unknown key: B"),
    "env_secret_not_array": case("env: {secret: A}\n", "env/secret: should be an array"),
    "env_tag_not_hash": case("env: {tags: {t: 1}}\n", "env/tags/t: should be a hash"),
    "env_tags_in_tag": case("env: {tags: {t: {tags: {}}}}\n", "env/tags/t: tags are only allowed in the root env"),
    "env_tags_in_role": case("servers: {web: {hosts: [h], env: {tags: {}}}}\n",
                             "servers/web/env: tags are only allowed in the root env", NO_SERVERS),
    "env_tags_in_accessory": case("accessories: {db: {image: x, host: h, env: {tags: {}}}}\n",
                                  "accessories/db/env: tags are only allowed in the root env"),
    # registry
    "registry_missing": case("", "registry/username: is required",
                             "service: app\nimage: a/b\nbuilder: {arch: amd64}\nservers: [1.1.1.1]\n"),
    "registry_username_empty": case('registry: {username: "", password: p}\n', "registry/username: is required"),
    "registry_password_two": case("registry: {username: u, password: [a, b]}\n",
                                  "registry/password: should be a string or an array with one string "
                                  "(for secret lookup)"),
    "registry_unknown_first": case("registry: {username: u, password: p, foo: 1, server: []}\n",
                                   "registry: unknown key: foo"),
    "registry_localhost_without_port": case("registry: {server: localhost}\n", "registry/username: is required"),
    # proxy
    "proxy_true": case("proxy: true\n", "proxy: should be a hash"),
    "proxy_ssl_number": case("proxy: {host: a.com, ssl: 1}\n", "proxy/ssl: should be a boolean or a hash"),
    "proxy_app_port_float": case("proxy: {host: a, app_port: 3.5}\n", "proxy/app_port: should be an integer"),
    "proxy_healthcheck": case('proxy: {healthcheck: {interval: "3"}, buffering: {memory: x}}\n',
                              "proxy/healthcheck/interval: should be an integer"),
    "proxy_log_headers": case("proxy: {logging: {request_headers: [[]]}}\n",
                              "proxy/logging/request_headers/0: should be a string"),
    "proxy_run_bind_ips": case("proxy: {run: {bind_ips: x}}\n", "proxy/run/bind_ips: should be an array"),
    "proxy_ssl_without_host": case("proxy: {ssl: true}\n", "proxy: Must set a host to enable automatic SSL"),
    "proxy_host_and_hosts": case("proxy: {host: a, hosts: [b]}\n", "proxy: Specify one of 'host' or 'hosts', not both"),
    "proxy_before_ssh": case("ssh: {user: []}\nproxy: {ssl: true}\n",
                             "proxy: Must set a host to enable automatic SSL"),
    # builder
    "builder_missing": case("", "builder: Builder arch not set",
                            "service: app\nimage: a/b\nregistry: {username: u, password: p}\nservers: [h]\n"),
    "builder_arch_empty": case("builder: {arch: []}\n", "builder: Builder arch not set"),
    "builder_arch_hash": case("builder: {arch: {a: 1}}\n", "builder/arch: should be an array or a string"),
    "builder_arch_entry": case("builder: {arch: [amd64, []]}\n", "builder/arch: should be an array or a string"),
    "builder_cache_type": case("builder: {arch: amd64, cache: {type: foo}}\n", "builder: Invalid cache type: foo"),
    "builder_local_false": case("builder: {arch: amd64, local: false}\n",
                                "builder: Cannot disable local builds, no remote is set"),
    "builder_args": case("builder: {arch: amd64, args: 1, secrets: x}\n", "builder/args: should be a hash"),
    "builder_sbom": case("builder: {arch: amd64, sbom: [1]}\n", "builder/sbom: should be a boolean"),
    "builder_buildpacks": case("builder: {arch: amd64, pack: {builder: x, buildpacks: x}}\n",
                               "builder/pack/buildpacks: should be an array"),
    # accessories
    "accessories_array": case("accessories: [1]\n", "accessories: should be a hash"),
    "accessory_scalar": case("accessories: {db: 1}\n", "accessories/db: should be a hash"),
    "accessory_no_host": case("accessories: {db: {image: x, env: {A: []}}}\n",
                              "accessories/db: specify one of `host`, `hosts`, `role`, `roles`, `tag` or `tags`"),
    "accessory_two_host_keys": case("accessories: {db: {image: x, host: a, hosts: [b]}}\n",
                                    "accessories/db: specify one of `host`, `hosts`, `role`, `roles`, `tag` or `tags`"),
    "accessory_files_entry": case("accessories: {db: {image: x, host: h, files: [a:b, []]}}\n",
                                  "accessories/db/files/1: should be a string or a hash"),
    "accessory_directory_owner": case("accessories: {db: {image: x, host: h, directories: [{local: a, owner: []}]}}\n",
                                      "accessories/db/directories/0/owner: should be a string"),
    "accessory_user_order": case("accessories: {b: {image: [], host: h}, a: {image: [], host: h}}\n",
                                 "accessories/b/image: should be a string"),
    "accessory_registry": case("accessories: {db: {image: x, host: h, registry: {server: r.io}}}\n",
                               "accessories/db/registry/username: is required"),
    "accessory_proxy_true": case("accessories: {db: {image: x, host: h, proxy: true}}\n",
                                 "accessories/db/proxy: should be a hash"),
    "accessory_restart": case("accessories: {db: {image: x, host: h, options: {restart: always}}}\n",
                              "accessories/db: Cannot set restart policy in docker options, "
                              "unless-stopped is required"),
    # aliases, boot, logging, ssh, sshkit
    "alias_not_string": case("aliases: {a: []}\n", "aliases/a: should be a string"),
    "alias_bad_name": case("aliases: {Bad Name: x}\n",
                           "aliases/Bad Name: Invalid alias name: 'Bad Name'. Must only contain lowercase letters, "
                           "alphanumeric, hyphens and underscores."),
    "alias_builtin": case("aliases: {deploy: x}\n",
                          "aliases/deploy: Alias 'deploy' conflicts with a built-in command."),
    "boot_limit_array": case("boot: {limit: []}\n", "boot/limit: should be a string"),
    "boot_wait_string": case('boot: {limit: 3, wait: "2"}\n', "boot/wait: should be an integer"),
    "logging_options": case("logging: {options: 1}\n", "logging/options: should be a hash"),
    "ssh_config_number": case("ssh: {config: 1}\n", "ssh/config: should be a boolean or a string or an array"),
    "ssh_keys_string": case("ssh: {keys: x}\n", "ssh/keys: should be an array"),
    "sshkit_float": case("sshkit: {max_concurrent_starts: 1.5}\n",
                         "sshkit/max_concurrent_starts: should be an integer"),
    # section order: servers, registry, accessories, aliases, boot, builder, env, logging, proxy, ssh, sshkit
    "order_servers_before_registry": case("registry: {username: u, password: p, server: []}\n"
                                          "servers: {web: {hosts: [h], cmd: []}}\n",
                                          "servers/web/cmd: should be a string"),
    "order_accessories_before_aliases": case("aliases: {a: []}\naccessories: {db: {image: x, host: [1]}}\n",
                                             "accessories/db/host: should be a string"),
    "order_boot_before_builder": case("builder: {arch: amd64, remote: []}\nboot: {limit: []}\n",
                                      "boot/limit: should be a string"),
    "order_logging_before_env_is_false": case("logging: {driver: []}\nenv: {A: []}\n", "env/A: should be a string"),
    "order_section_type_first": case("ssh: {user: []}\nsshkit: 1\n", "sshkit: should be a hash"),
    # Kamal's semantic checks (config model)
    "missing_service": case("", "Missing required configuration for service", BASE.replace("service: app\n", "")),
    "missing_image": case("", "Missing required configuration for image", BASE.replace("image: a/b\n", "")),
    "no_servers": case("", "No servers or accessories specified", NO_SERVERS),
    "bad_service_name": case("service: my.app\n",
                             "Service name can only include alphanumeric characters, hyphens, and underscores"),
    "retain_zero": case("retain_containers: 0\n", "Must retain at least 1 container"),
    "primary_role_missing": case("primary_role: workers\n", "The primary_role workers isn't defined"),
    "primary_role_empty": case("servers: {web: []}\n", "No servers specified for the web primary_role", NO_SERVERS),
    "empty_role": case("servers: {web: [h], jobs: []}\n",
                       "No servers specified for the jobs role. You can ignore this with allow_empty_roles: true",
                       NO_SERVERS),
    "hooks_output_bad": case("hooks_output: loud\n", "Invalid hooks_output 'loud', must be one of: quiet, verbose"),
    "hooks_output_hook_bad": case("hooks_output: {pre-deploy: loud}\n",
                                  "Invalid hooks_output 'loud' for hook 'pre-deploy', must be one of: quiet, verbose"),
    "minimum_version_newer": case("minimum_version: 9.0.0\n", "Current version is 2.11.0, minimum required is 9.0.0"),
    "ssl_two_hosts": case("proxy: {ssl: true, host: a.com}\n",
                          "SSL is only supported on a single server unless you provide custom certificates, found 2 "
                          "servers for role web", "service: app\nimage: a/b\nregistry: {username: u, password: p}\n"
                          "builder: {arch: amd64}\nservers: [h1, h2]\n"),
    "accessory_unknown_role": case("accessories: {db: {image: x, role: jobs}}\n", "accessories/db: unknown role jobs"),
}


def _project(root: Path, deploy_yml: str) -> Path:
    return write_project(root, deploy_yml, secrets="")


def kamal_message(deploy_yml: str) -> tuple[int, str]:
    """(exit code, message) of the real ``kamal config`` on one deploy.yml (cached)."""
    digest = hashlib.sha256(b"kamal 2.11.0 config VERSION=x\0" + deploy_yml.encode()).hexdigest()
    cached = CACHE / f"{digest}.json" if CACHE else None
    if cached and cached.exists():
        code, message = json.loads(cached.read_text())
        return code, message
    code, message = _run_kamal(deploy_yml)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps([code, message]))
    return code, message


def _run_kamal(deploy_yml: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory(prefix="kamal-") as work:
        _project(Path(work), deploy_yml)
        proc = subprocess.run([KAMAL, "config"], cwd=work, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "VERSION": "x"})
    output = ANSI.sub("", proc.stdout + proc.stderr)
    match = re.search(r"ERROR \([^)]*\): (.*)", output)
    return proc.returncode, match.group(1).strip() if match else ""


def kamal_messages(documents: list[str]) -> list[tuple[int, str]]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(kamal_message, documents))


@pytest.mark.parametrize("name", sorted(CASES))
def test_kamalpy_fails_like_kamal(name, tmp_path, monkeypatch, kamalpy):
    deploy_yml, message = CASES[name]
    _project(tmp_path, deploy_yml)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VERSION", "x")
    result = kamalpy("config")
    assert result.code == 1
    assert result.err.splitlines() == [f"ERROR: {message}"]
    assert "Traceback" not in result.out + result.err


@pytest.mark.kamal
@pytest.mark.skipif(KAMAL is None, reason="the reference kamal is not installed")
def test_kamal_agrees():
    """The stored messages are what Kamal 2.11 prints."""
    names = sorted(CASES)
    results = kamal_messages([CASES[name][0] for name in names])
    wrong = {name: got for name, got in zip(names, results, strict=True) if got != (1, CASES[name][1])}
    assert wrong == {}
