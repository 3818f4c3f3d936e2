"""``--dry-run`` of the proxy, app and build-pull commands: Kamal 2.11's command strings, exactly.

The hosts are loopback addresses with a listener on the configured SSH port: a connection attempt
would be left pending there, and the test checks none was. Timestamps read ``<TS>``, the lock payload
``<B64>`` (test_dry_run.py checks its layout).
"""

from __future__ import annotations

import re

import pytest
from helpers import assert_no_connection, dry_run_environment, write_project

H1, H2 = "127.0.0.2", "127.0.0.3"
PASSWORD = "pa$$w0rd-never-shown"
PERFORMER = "deployer@example.com"
DEPLOY_YML = f"""\
service: app
image: dhh/app
servers:
  - {H1}
  - {H2}
ssh:
  port: {{port}}
registry:
  server: hub.docker.com
  username: dhh
  password: {PASSWORD}
builder:
  arch: amd64
"""
PROXY_RUN = "proxy:\n  run:\n    registry: registry:4443\n    debug: true\n    metrics_port: 9090\n"




@pytest.fixture
def project(tmp_path, monkeypatch, listeners):
    def write(extra: str = "", server: str = "hub.docker.com") -> None:
        text = DEPLOY_YML.format(port=listeners[0]).replace("server: hub.docker.com", f"server: {server}")
        write_project(tmp_path, text + extra)

    write()
    dry_run_environment(monkeypatch, tmp_path, version="123", name="Dee Ployer", email=PERFORMER)
    return write


@pytest.fixture
def dry(kamalpy, project, listeners):
    def run(*args: str) -> list[str]:
        result = kamalpy("--dry-run", *args)
        assert result.code == 0, result.err
        assert PASSWORD not in result.out + result.err
        assert_no_connection(listeners[1])
        text = re.sub(r'echo "[A-Za-z0-9+/=\\n]*" > \.kamal/lock', 'echo "<B64>" > .kamal/lock', result.out)
        return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<TS>", text).splitlines()

    return run


def lines(*pairs: tuple[str, str]) -> list[str]:
    return [f"{host}\t{command}" for host, command in pairs]


def locked(*body: tuple[str, str]) -> list[str]:
    # The primary's run directory goes with the acquire, after the other hosts'.
    return lines((H2, "/usr/bin/env mkdir -p .kamal"), (H1, "/usr/bin/env mkdir -p .kamal"),
                 (H1, '/usr/bin/env mkdir .kamal/lock-app && echo "<B64>" > .kamal/lock-app/details'), *body,
                 (H1, "/usr/bin/env rm .kamal/lock-app/details && rm -r .kamal/lock-app"))


def audit(host: str, message: str) -> tuple[str, str]:
    return (host, f'/usr/bin/env mkdir -p .kamal && echo "[<TS>] [{PERFORMER}] {message}" >> .kamal/app-audit.log')


LEGACY_RUN = ('echo $(cat .kamal/proxy/options 2> /dev/null || echo "--publish 80:80 --publish 443:443 '
              '--log-opt max-size=10m") $(cat .kamal/proxy/image 2> /dev/null || echo "basecamp/kamal-proxy"):'
              '$(cat .kamal/proxy/image_version 2> /dev/null || echo "v0.9.2") $(cat .kamal/proxy/run_command '
              '2> /dev/null || echo "") | xargs docker run --name kamal-proxy --network kamal --detach --restart '
              'unless-stopped --volume kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy --volume '
              '$PWD/.kamal/proxy/apps-config:/home/kamal-proxy/.apps-config')
CONFIG_RUN = ("docker run --name kamal-proxy --network kamal --detach --restart unless-stopped --volume "
              "kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy --volume "
              "$PWD/.kamal/proxy/apps-config:/home/kamal-proxy/.apps-config --publish 80:80 --publish 443:443 "
              '--log-opt max-size=10m --expose=9090 registry:4443/basecamp/kamal-proxy:v0.9.2 kamal-proxy run '
              '--debug --metrics-port "9090"')


def boot_host(host: str, run: str) -> list[tuple[str, str]]:
    return [(host, "docker login hub.docker.com -u [REDACTED] --password-stdin"),
            (host, "docker inspect kamal-proxy --format '{{.Config.Image}}' | awk -F: '{print $NF}'"),
            (host, "/usr/bin/env mkdir -p .kamal/proxy/apps-config"),
            (host, f"docker container start kamal-proxy || {run}")]


@pytest.mark.parametrize("extra, run", [("", LEGACY_RUN), (PROXY_RUN, CONFIG_RUN)], ids=["boot-files", "proxy-run"])
def test_proxy_boot(dry, project, extra, run):
    project(extra)
    # Kamal's commands in Kamal's order on each host (hosts run in parallel; kamalpy sends the network, the
    # login and the version check in one round trip, so a dry run lists them host by host).
    assert dry("proxy", "boot") == locked((H1, "docker network create kamal"), *boot_host(H1, run),
                                          (H2, "docker network create kamal"), *boot_host(H2, run))


def test_proxy_boot_with_a_local_registry_does_not_log_in(dry, project):
    project(server="localhost:5555")
    assert not [line for line in dry("proxy", "boot") if "docker login" in line]


def _stop(host: str) -> list[tuple[str, str]]:
    return [audit(host, "Stopped proxy"), (host, "docker container stop kamal-proxy")]


def _start(host: str) -> list[tuple[str, str]]:
    return [audit(host, "Started proxy"), (host, "docker container start kamal-proxy")]


def test_proxy_start_stop_restart(dry):
    assert dry("proxy", "start") == locked(*_start(H1), *_start(H2))
    assert dry("proxy", "stop") == locked(*_stop(H1), *_stop(H2))
    assert dry("proxy", "restart") == locked(*_stop(H1), *_stop(H2), *_start(H1), *_start(H2))


def test_proxy_details_and_logs(dry):
    assert dry("proxy", "details") == lines(*((h, "docker ps --filter 'name=^kamal-proxy$'") for h in (H1, H2)))
    assert dry("proxy", "logs") == lines(*((h, "docker logs kamal-proxy --tail 100 --timestamps 2>&1")
                                           for h in (H1, H2)))
    assert dry("proxy", "logs", "-s", "2h", "-g", "hello!", "-T", "-p") == lines(
        (H1, "docker logs kamal-proxy --since 2h 2>&1 | grep 'hello!'"))
    assert dry("proxy", "logs", "-n", "5", "-h", H2) == lines(
        (H2, "docker logs kamal-proxy --tail 5 --timestamps 2>&1"))


def test_proxy_remove(dry):
    def remove(message: str, command: str) -> list[tuple[str, str]]:
        return [item for h in (H1, H2) for item in (audit(h, message), (h, command))]

    assert dry("proxy", "remove") == locked(
        (H1, "/usr/bin/env ls .kamal/apps | wc -l"), (H2, "/usr/bin/env ls .kamal/apps | wc -l"),
        *_stop(H1), *_stop(H2),
        *remove("Removed proxy container",
                "docker container prune --force --filter label=org.opencontainers.image.title=kamal-proxy"),
        *remove("Removed proxy image",
                "docker image prune --all --force --filter label=org.opencontainers.image.title=kamal-proxy"),
        (H1, "/usr/bin/env rm -r .kamal/proxy"), (H2, "/usr/bin/env rm -r .kamal/proxy"))


FILTERS = "--filter label=service=app --filter label=destination= --filter label=role=web"


def _running(fmt: str) -> str:
    latest = f"docker ps --latest {fmt} {FILTERS} --filter status=running --filter status=restarting"
    ancestor = ("--filter ancestor=$(docker image ls --filter reference=hub.docker.com/dhh/app:latest "
                "--format '{{.ID}}')")
    return f"/usr/bin/env sh -c '{latest} {ancestor} ; {latest}' | head -1".replace("'{{", "'\\''{{").replace(
        "}}'", "}}'\\''")


VERSION_CMD = _running("--format '{{.Names}}'") + " | while read line; do echo ${line#app-web-}; done"


def test_app_read_only_commands_take_no_lock(dry):
    both = (H1, H2)
    assert dry("app", "details") == lines(*((h, f"docker ps {FILTERS}") for h in both))
    assert dry("app", "containers") == lines(
        *((h, "docker container ls --all --filter label=service=app --filter label=destination=") for h in both))
    assert dry("app", "images") == lines(*((h, "docker image ls hub.docker.com/dhh/app") for h in both))
    assert dry("app", "version") == lines(*((h, VERSION_CMD) for h in both))


def test_app_stale_containers(dry):
    versions = f'docker ps {FILTERS} --format "{{{{.Names}}}}" | while read line; do echo ${{line#app-web-}}; done'
    body = [item for h in (H1, H2) for item in ((h, versions), (h, VERSION_CMD))]
    assert dry("app", "stale_containers") == lines(*body)
    assert dry("app", "stale_containers", "--stop") == locked(*body)


def test_app_logs(dry):
    current = _running("--quiet")
    assert dry("app", "logs", "-p") == lines((H1, f"{current} | xargs docker logs --timestamps --tail 100 2>&1"))
    assert dry("app", "logs", "-p", "-s", "5m", "-g", "GET /", "--grep-options", "-i", "-T") == lines(
        (H1, f"{current} | xargs docker logs --since 5m 2>&1 | grep 'GET /' -i"))
    assert dry("app", "logs", "-h", H2, "-n", "3", "--container-id", "C137") == lines(
        (H2, "echo C137 | xargs docker logs --timestamps --tail 3 2>&1"))


def _pull(host: str) -> list[tuple[str, str]]:
    """Kamal's pull without its `docker image rm --force` first (kamalpy drops it on purpose: a deploy that
    finds the lock held must not remove the image a running deploy pulled; docs/moving-from-kamal.md)."""
    image = "hub.docker.com/dhh/app:123"
    return [audit(host, "Pulled image with version 123"), (host, f"docker pull {image}"),
            (host, f"docker inspect -f '{{{{ .Config.Labels.service }}}}' {image} | grep -x app || "
                   f"(echo \"Image {image} is missing the 'service' label\" && exit 1)")]


def test_build_pull(dry):
    login = "docker login hub.docker.com -u [REDACTED] --password-stdin"
    mirror = "docker info --format '{{index .RegistryConfig.Mirrors 0}}'"
    # Per host in Kamal's order (the login and the mirror query share a round trip).
    assert dry("build", "pull") == lines((H1, login), (H1, mirror), (H2, login), (H2, mirror),
                                         *_pull(H1), *_pull(H2))
    # One host: no mirror seeding.
    assert dry("build", "pull", "-h", H2) == lines((H2, login), *_pull(H2))


# -- deploy: Kamal's command trace (kamal.md 8.8) host by host -------------------------------------

IMAGE = "hub.docker.com/dhh/app:123"
CONTAINER_ID = "docker container ls --all --filter 'name=^app-web-123$' --quiet"
KAMAL_PROXY_DEPLOY = ('docker exec kamal-proxy kamal-proxy deploy app-web --target="<container id>:80" '
                      '--deploy-timeout="30s" --drain-timeout="30s" --buffer-requests --buffer-responses '
                      '--log-request-header="Cache-Control" --log-request-header="Last-Modified" '
                      '--log-request-header="User-Agent"')


def _docker_run(host: str) -> str:
    return ("docker run --detach --restart unless-stopped --name app-web-123 --network kamal "
            f"--hostname {host}-<HEX> --env KAMAL_CONTAINER_NAME=\"app-web-123\" --env KAMAL_VERSION=\"123\" "
            f"--env KAMAL_HOST=\"{host}\" --env-file .kamal/apps/app/env/roles/web.env "
            '--log-opt max-size="10m" --label service="app" --label role="web" --label destination '
            f"{IMAGE}")


# kamalpy's read-only lock check, on the primary host before anything else (in the login's round trip).
LOCK_CHECK = "/usr/bin/env test ! -d .kamal/lock-app || (cat .kamal/lock-app/details | base64 -d; false)"


def _deploy_trace(host: str, lock: bool) -> list[tuple[str, str]]:
    """What Kamal 2.11 runs on ``host`` for ``deploy -P`` (kamal.md 8.8), where kamalpy differs on purpose:
    one ``docker login`` per host and run (Kamal logs in again before booting the proxy), with the password
    on stdin; a read-only lock check first, and no ``docker image rm --force`` before the pull (a deploy
    that finds the lock held changes no server); the lock's ``mkdir -p .kamal`` in the pull's first round
    trip; the running version asked once for the stale check and the boot's clash check. The dry run knows
    no current version, so no old container is stopped."""
    versions = f'docker ps {FILTERS} --format "{{{{.Names}}}}" | while read line; do echo ${{line#app-web-}}; done'
    return [*([(host, LOCK_CHECK)] if lock else []),
            (host, "/usr/bin/env mkdir -p .kamal"),  # Kamal's, before the lock: in the first round trip
            (host, "docker login hub.docker.com -u [REDACTED] --password-stdin"),
            (host, "docker info --format '{{index .RegistryConfig.Mirrors 0}}'"), *_pull(host),
            *([(host, '/usr/bin/env mkdir .kamal/lock-app && echo "<B64>" > .kamal/lock-app/details')] if lock
              else []),
            (host, "docker network create kamal"),
            (host, "docker inspect kamal-proxy --format '{{.Config.Image}}' | awk -F: '{print $NF}'"),
            (host, "/usr/bin/env mkdir -p .kamal/proxy/apps-config"),
            (host, f"docker container start kamal-proxy || {LEGACY_RUN}"),
            (host, versions), (host, VERSION_CMD),
            (host, CONTAINER_ID),  # the boot's clash check, with the stale check (the version asked once)
            audit(host, "[web] Booted app version 123"),
            (host, "/usr/bin/env mkdir -p .kamal/apps/app/env/roles"),
            (host, "upload\tupload .kamal/apps/app/env/roles/web.env mode 0600 (1 bytes)"),  # an empty env: "\\n"
            (host, _docker_run(host)),  # its output is the id Kamal asks `docker container ls` for next
            (host, KAMAL_PROXY_DEPLOY),
            audit(host, f"Tagging {IMAGE} as the latest image"),
            (host, f"docker tag {IMAGE} hub.docker.com/dhh/app:latest"),
            audit(host, "Pruned containers"),
            (host, "docker ps -q -a --filter label=service=app --filter status=created --filter status=exited "
                   "--filter status=dead | tail -n +6 | while read container_id; do docker rm $container_id; done"),
            audit(host, "Pruned images"),
            (host, "docker image prune --force --filter label=service=app"),
            (host, "docker image ls --filter label=service=app --format '{{.ID}} {{.Repository}}:{{.Tag}}' | "
                   "grep -v -w \"$(docker container ls -a --format '{{.Image}}\\|' --filter label=service=app | "
                   "tr -d '\\n')hub.docker.com/dhh/app:latest\\|hub.docker.com/dhh/app:<none>\" | "
                   "while read image tag; do docker rmi $tag; done"),
            *([(host, "/usr/bin/env rm .kamal/lock-app/details && rm -r .kamal/lock-app")] if lock else [])]


def per_host(found: list[str]) -> dict[str, list[str]]:
    hosts: dict[str, list[str]] = {}
    for line in found:
        host, command = line.split("\t", 1)
        hosts.setdefault(host, []).append(f"{host}\t{command}")
    return hosts


def test_deploy_runs_kamals_commands_on_each_host(dry):
    found = [re.sub(r"--hostname (\S+)-[0-9a-f]{12} ", r"--hostname \1-<HEX> ", line)
             for line in dry("deploy", "-P")]
    hosts = per_host(found)
    assert hosts[H1] == lines(*_deploy_trace(H1, lock=True))
    assert hosts[H2] == lines(*_deploy_trace(H2, lock=False))


def test_app_boot_uploads_error_pages_and_certificates_and_bridges_assets(dry, project, tmp_path):
    """The steps of app boot before the new container: error pages, custom TLS files, asset extraction."""
    (tmp_path / "public").mkdir()
    for name in ("404.html", "500.html", "index.html", "4xx.html"):
        (tmp_path / "public" / name).write_text(f"<p>{name}</p>")
    (tmp_path / ".kamal").mkdir(exist_ok=True)
    (tmp_path / ".kamal" / "secrets").write_text("CERT_PEM=cert\nKEY_PEM=key\n")
    project("error_pages_path: public\nasset_path: /public/assets\nproxy:\n  host: example.com\n"
            "  ssl:\n    certificate_pem: CERT_PEM\n    private_key_pem: KEY_PEM\n")
    found = per_host(dry("app", "boot", "-h", H1, "--version", "999"))[H1][2:]  # after the lock
    pages = ".kamal/proxy/apps-config/app/error_pages/999"
    tls = ".kamal/proxy/apps-config/app/tls/web"
    assets = (f"{H1}\t/usr/bin/env mkdir -p .kamal/apps/app/assets/extracted/web-999 && docker container rm "
              "app-web-assets 2> /dev/null || true && docker container create --name app-web-assets "
              "hub.docker.com/dhh/app:999 && docker container cp -L app-web-assets:/public/assets/. "
              ".kamal/apps/app/assets/extracted/web-999 && docker container rm app-web-assets")
    expected = [f"{H1}\t/usr/bin/env mkdir -p {pages}",
                f"{H1}\tupload\tupload {pages}/404.html mode 0700 (15 bytes)",
                f"{H1}\tupload\tupload {pages}/500.html mode 0700 (15 bytes)",
                f"{H1}\t/usr/bin/env mkdir -p {tls}",
                f"{H1}\tupload\tupload {tls}/cert.pem mode 0644 (4 bytes)",
                f"{H1}\tupload\tupload {tls}/key.pem mode 0600 (3 bytes)",  # Kamal: 0644
                f"{H1}\tdocker exec --user root kamal-proxy chown kamal-proxy:kamal-proxy "
                "/home/kamal-proxy/.apps-config/app/tls/web/key.pem",  # kamal-proxy's user reads it
                assets]
    assert found[:len(expected)] == expected
    run = next(line for line in found if "docker run" in line)
    assert "--volume $PWD/.kamal/apps/app/assets/volumes/web-999:/public/assets" in run
    deploy = next(line for line in found if "kamal-proxy deploy" in line)
    assert ('--tls-certificate-path="/home/kamal-proxy/.apps-config/app/tls/web/cert.pem"' in deploy
            and '--error-pages="/home/kamal-proxy/.apps-config/app/error_pages/999"' in deploy)


def test_deploy_checks_the_lock_first_unless_it_waits_for_it(dry):
    assert dry("deploy", "-P")[0] == f"{H1}\t{LOCK_CHECK}"  # before anything, in the first round trip
    assert not [line for line in dry("deploy", "-P", "--lock-wait") if LOCK_CHECK in line]  # waits at the lock
    assert not [line for line in dry("build", "pull") if LOCK_CHECK in line]  # not a deploy: no lock involved


def test_the_lock_check_goes_where_the_lock_is(dry):
    # One host selected: it is the primary (the lock's host) too, so the check opens its first round trip.
    found = dry("deploy", "-P", "-h", H2)
    assert found[0] == f"{H2}\t{LOCK_CHECK}" and found[1] == f"{H2}\t/usr/bin/env mkdir -p .kamal"
    assert found[2].startswith(f"{H2}\tdocker login ")


def test_the_lock_directory_rides_with_the_pull_once_per_host(dry):
    # Kamal's `mkdir -p .kamal` before the lock goes in each host's first round trip, and only there.
    mkdir = "/usr/bin/env mkdir -p .kamal"
    assert [line for line in dry("deploy", "-P") if line.endswith(mkdir)] == lines((H1, mkdir), (H2, mkdir))
    assert not [line for line in dry("build", "pull") if line.endswith(mkdir)]  # no lock: no directory for it
    # With --lock-wait (no read-only check first) it rides with the pull all the same.
    assert [line for line in dry("deploy", "-P", "--lock-wait") if line.endswith(mkdir)] == lines((H1, mkdir),
                                                                                                  (H2, mkdir))
