"""The kamal-proxy container: every string of kamal.md §7.3 (items 26-29), joined and rendered.

Fixture as Kamal's proxy_test.rb: ``service: app``, ``image: dhh/app``, ``servers: [1.1.1.1]``, version 123.
"""

from __future__ import annotations

import pytest
import yaml

from kamalpy.commands import proxy
from kamalpy.commands.base import join, render
from kamalpy.config.model import Configuration

BASE = """
service: app
image: dhh/app
registry: {username: dhh, password: secret}
builder: {arch: amd64}
servers: [1.1.1.1]
"""
LEGACY_RUN = (
    'echo $(cat .kamal/proxy/options 2> /dev/null || echo "--publish 80:80 --publish 443:443 --log-opt max-size=10m") '
    '$(cat .kamal/proxy/image 2> /dev/null || echo "basecamp/kamal-proxy"):$(cat .kamal/proxy/image_version 2> '
    '/dev/null || echo "v0.9.2") $(cat .kamal/proxy/run_command 2> /dev/null || echo "") | xargs docker run --name '
    "kamal-proxy --network kamal --detach --restart unless-stopped --volume "
    "kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy --volume "
    "$PWD/.kamal/proxy/apps-config:/home/kamal-proxy/.apps-config")
RUN_HEAD = ("docker run --name kamal-proxy --network kamal --detach --restart unless-stopped --volume "
            "kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy --volume "
            "$PWD/.kamal/proxy/apps-config:/home/kamal-proxy/.apps-config")


def make(extra: str = "", *, base: str = BASE) -> Configuration:
    return Configuration(yaml.safe_load(base + extra), version="123")


def run_with(settings: str, host: str = "1.1.1.1") -> str:
    return join(proxy.run(make(f"proxy:\n  run: {settings}\n"), host))


def test_run_from_boot_files() -> None:  # 26
    cmd = proxy.run(make(), "1.1.1.1")
    assert join(cmd) == LEGACY_RUN
    assert render(cmd) == "/usr/bin/env " + LEGACY_RUN
    start_or_run = proxy.start_or_run(make(), "1.1.1.1")
    assert join(start_or_run) == "docker container start kamal-proxy || " + LEGACY_RUN
    assert render(start_or_run) == join(start_or_run)


def test_run_with_metrics_port() -> None:  # 27
    assert run_with("{metrics_port: 9090}") == (
        RUN_HEAD + " --publish 80:80 --publish 443:443 --log-opt max-size=10m --expose=9090 "
        'basecamp/kamal-proxy:v0.9.2 kamal-proxy run --metrics-port "9090"')


def test_run_defaults() -> None:
    assert run_with("{http_port: 8080, https_port: 8443}") == (
        RUN_HEAD + " --publish 8080:80 --publish 8443:443 --log-opt max-size=10m basecamp/kamal-proxy:v0.9.2 "
        "kamal-proxy run")


def test_run_variants() -> None:  # 28
    assert ("--publish 0.0.0.0:80:80 --publish 0.0.0.0:443:443 --publish 127.0.0.1:80:80 --publish 127.0.0.1:443:443 "
            "--log-opt") in run_with("{bind_ips: [0.0.0.0, 127.0.0.1]}")
    assert "--publish [::1]:80:80 --publish [::1]:443:443 --publish [fe80::1]:80:80" in run_with(
        '{bind_ips: ["::1", "[fe80::1]"]}')
    assert run_with("{publish: false}") == (
        RUN_HEAD + " --log-opt max-size=10m basecamp/kamal-proxy:v0.9.2 kamal-proxy run")
    assert run_with("{registry: 'registry:4443'}").endswith(
        " registry:4443/basecamp/kamal-proxy:v0.9.2 kamal-proxy run")
    assert run_with("{repository: custom/repo}").endswith(" custom/repo:v0.9.2 kamal-proxy run")
    assert run_with("{version: v1.2.3}").endswith(" basecamp/kamal-proxy:v1.2.3 kamal-proxy run")
    assert "--log-opt max-size=50m basecamp" in run_with("{log_max_size: 50m}")
    assert run_with("{debug: true}").endswith(" kamal-proxy run --debug")
    assert run_with("{debug: false}").endswith(" kamal-proxy run")
    assert run_with("{options: {label: [a=b, c=d], memory: 512m}}").endswith(
        '--log-opt max-size=10m --label "a=b" --label "c=d" --memory "512m" basecamp/kamal-proxy:v0.9.2 '
        "kamal-proxy run")


def test_boot_with_proxy_run_config() -> None:  # 28, deploy_with_proxy_run_config.yml
    base = ("service: app\nimage: dhh/app\nservers:\n  web: [1.1.1.1, 1.1.1.2]\n  workers: [1.1.1.3, 1.1.1.4]\n"
            "registry: {username: user, password: pw}\nbuilder: {arch: amd64}\n"
            "proxy:\n  run: {registry: 'registry:4443', debug: true, metrics_port: 9090, options: {cpus: 1.5}}\n"
            "readiness_delay: 0\ndeploy_timeout: 6\n")
    config = make(base=base)
    cmd = proxy.start_or_run(config, "1.1.1.1")
    assert join(cmd) == (
        "docker container start kamal-proxy || " + RUN_HEAD + " --publish 80:80 --publish 443:443 "
        '--log-opt max-size=10m --expose=9090 --cpus "1.5" registry:4443/basecamp/kamal-proxy:v0.9.2 '
        'kamal-proxy run --debug --metrics-port "9090"')
    assert render(cmd) == join(cmd)
    # workers run no proxy: their hosts fall back to the boot files
    assert join(proxy.run(config, "1.1.1.3")) == LEGACY_RUN


def test_misc_commands() -> None:  # 29
    config = make()
    assert join(proxy.start()) == "docker container start kamal-proxy"
    assert join(proxy.stop()) == "docker container stop kamal-proxy"
    assert join(proxy.stop(timeout=5)) == "docker container stop --time 5 kamal-proxy"
    assert join(proxy.info()) == "docker ps --filter 'name=^kamal-proxy$'"
    assert join(proxy.version()) == "docker inspect kamal-proxy --format '{{.Config.Image}}' | awk -F: '{print $NF}'"
    assert join(proxy.logs(since="2h")) == "docker logs kamal-proxy --since 2h --timestamps 2>&1"
    assert join(proxy.logs(grep="hello!")) == "docker logs kamal-proxy --timestamps 2>&1 | grep 'hello!'"
    assert join(proxy.logs(lines=10, timestamps=False, grep="x", grep_options="-i")) == (
        "docker logs kamal-proxy --tail 10 2>&1 | grep 'x' -i")
    assert proxy.follow_logs(config, "1.1.1.1", grep="hello!") == (
        "ssh -t root@1.1.1.1 -p 22 'docker logs kamal-proxy --timestamps --tail 10 --follow 2>&1 | grep \"hello!\"'")
    assert join(proxy.remove_container()) == (
        "docker container prune --force --filter label=org.opencontainers.image.title=kamal-proxy")
    assert join(proxy.remove_image()) == (
        "docker image prune --all --force --filter label=org.opencontainers.image.title=kamal-proxy")
    cleanup = proxy.cleanup_traefik()
    assert join(cleanup) == (
        "docker container stop traefik ; docker container prune --force --filter "
        "label=org.opencontainers.image.title=Traefik && docker image prune --all --force --filter "
        "label=org.opencontainers.image.title=Traefik")
    assert render(cleanup) == join(cleanup)
    assert join(proxy.ensure_apps_config_directory()) == "mkdir -p .kamal/proxy/apps-config"
    assert render(proxy.ensure_apps_config_directory()) == "/usr/bin/env mkdir -p .kamal/proxy/apps-config"
    assert join(proxy.create_network()) == "docker network create kamal"


def test_boot_files() -> None:
    assert join(proxy.read_image_version()) == 'cat .kamal/proxy/image_version 2> /dev/null || echo "v0.9.2"'
    assert join(proxy.reset_boot_options()) == "rm .kamal/proxy/options"
    assert join(proxy.reset_run_command()) == "rm .kamal/proxy/run_command"
    assert join(proxy.ensure_proxy_directory()) == "mkdir -p .kamal/proxy"
    assert join(proxy.remove_proxy_directory()) == "rm -r .kamal/proxy"


def test_minimum_version() -> None:
    proxy.check_minimum_version("v0.9.2")
    proxy.check_minimum_version("v0.10.0\n")
    proxy.check_minimum_version("")  # no proxy yet
    proxy.check_minimum_version(None)
    with pytest.raises(proxy.ProxyVersionError) as err:
        proxy.check_minimum_version("v0.8.7\n")
    assert str(err.value) == ("kamal-proxy version v0.8.7 is too old, run `kamal proxy reboot` in order to update to "
                              "at least v0.9.2")
    with pytest.raises(proxy.ProxyVersionError, match="Malformed version number string latest"):
        proxy.check_minimum_version("latest")
    assert proxy.older_version("v0.9.1", "v0.9.2") and not proxy.older_version("v0.9.2", "v0.9.2")
