"""Accessory commands: the strings of kamal.md §7.4 (Kamal's accessory_test.rb config), joined as Kamal's tests do."""

from __future__ import annotations

import pytest
import yaml

from kamalpy.commands import accessory as acc
from kamalpy.commands.base import join, render
from kamalpy.config.model import Configuration

CONFIG = """
service: app
image: dhh/app
registry: {server: private.registry, username: dhh, password: secret}
builder: {arch: amd64}
servers: [1.1.1.1]
accessories:
  mysql:
    image: private.registry/mysql:8.0
    host: 1.1.1.5
    port: "3306"
    env:
      clear: {MYSQL_ROOT_HOST: "%"}
      secret: [MYSQL_ROOT_PASSWORD]
    options: {cpus: "4", memory: 2GB}
  redis:
    image: redis:latest
    host: 1.1.1.6
    port: "6379:6379"
    labels: {cache: "true"}
    env: {SOMETHING: else}
    volumes: [/var/lib/redis:/data]
  busybox:
    service: custom-busybox
    image: busybox:latest
    registry: {server: other.registry, username: user, password: pw}
    host: 1.1.1.7
    proxy: {host: busybox.example.com}
"""

MYSQL_RUN = ('docker run --name app-mysql --detach --restart unless-stopped --network kamal --log-opt max-size="10m" '
             '--publish 3306:3306 --env MYSQL_ROOT_HOST="%" --env-file .kamal/apps/app/env/accessories/mysql.env '
             '--label service="app-mysql" --cpus "4" --memory "2GB" private.registry/mysql:8.0')


@pytest.fixture
def config() -> Configuration:
    config = Configuration(yaml.safe_load(CONFIG), version="999")
    config._secrets = {"MYSQL_ROOT_PASSWORD": "secret123"}
    return config


def _acc(config, name):
    return config.accessory(name)


def test_run(config):
    assert join(acc.run(_acc(config, "mysql"))) == MYSQL_RUN
    assert join(acc.run(_acc(config, "redis"))) == (
        'docker run --name app-redis --detach --restart unless-stopped --network kamal --log-opt max-size="10m" '
        '--publish 6379:6379 --env SOMETHING="else" --env-file .kamal/apps/app/env/accessories/redis.env '
        '--volume /var/lib/redis:/data --label service="app-redis" --label cache="true" redis:latest')
    assert join(acc.run(_acc(config, "busybox"))) == (
        'docker run --name custom-busybox --detach --restart unless-stopped --network kamal --log-opt max-size="10m" '
        '--env-file .kamal/apps/app/env/accessories/busybox.env --label service="custom-busybox" '
        "other.registry/busybox:latest")


def test_run_with_host_adds_kamal_host_after_ports(config):
    assert join(acc.run(_acc(config, "mysql"), "1.1.1.5")) == MYSQL_RUN.replace(
        "--publish 3306:3306 ", '--publish 3306:3306 --env KAMAL_HOST="1.1.1.5" ')


def test_custom_network():
    raw = yaml.safe_load(CONFIG)
    raw["accessories"]["mysql"]["network"] = "custom"
    config = Configuration(raw, version="999")
    assert "--network custom " in join(acc.run(config.accessory("mysql")))


def test_exec(config):
    mysql = _acc(config, "mysql")
    assert join(acc.execute_in_new_container(mysql, "mysql", "-u", "root")) == (
        'docker run --rm --network kamal --env MYSQL_ROOT_HOST="%" '
        '--env-file .kamal/apps/app/env/accessories/mysql.env --cpus "4" --memory "2GB" '
        'private.registry/mysql:8.0 mysql -u root')
    existing = acc.execute_in_existing_container(mysql, "mysql", "-u", "root")
    assert join(existing) == "docker exec app-mysql mysql -u root"
    assert acc.execute_in_existing_container_over_ssh(mysql, "1.1.1.5", "mysql -u root") == (
        "ssh -t root@1.1.1.5 -p 22 'docker exec -it app-mysql mysql -u root'")
    assert acc.execute_in_new_container_over_ssh(mysql, "1.1.1.5", "bash").startswith(
        "ssh -t root@1.1.1.5 -p 22 'docker run -it --rm --network kamal ")


def test_logs(config):
    mysql = _acc(config, "mysql")
    assert join(acc.logs(mysql)) == "docker logs app-mysql --timestamps 2>&1"
    assert join(acc.logs(mysql, since="5m", lines=100, grep="thing", grep_options="-C 2")) == (
        "docker logs app-mysql  --since 5m  --tail 100 --timestamps 2>&1 | grep 'thing' -C 2")
    assert join(acc.logs(mysql, timestamps=False)) == "docker logs app-mysql 2>&1"
    assert acc.follow_logs(mysql, "1.1.1.5") == (
        "ssh -t root@1.1.1.5 -p 22 'docker logs app-mysql --timestamps --tail 10 --follow 2>&1'")
    assert acc.follow_logs(mysql, "1.1.1.5", grep="x").endswith("""--follow 2>&1 | grep "x"'""")


@pytest.mark.parametrize(("builder", "expected"), [
    (acc.start, "docker container start app-mysql"),
    (acc.stop, "docker container stop app-mysql"),
    (acc.info, "docker ps --filter label=service=app-mysql"),
    (acc.remove_container, "docker container prune --force --filter label=service=app-mysql"),
    (acc.pull_image, "docker image pull private.registry/mysql:8.0"),
    (acc.remove_image, "docker image rm --force private.registry/mysql:8.0"),
    (acc.remove_service_directory, "rm -rf app-mysql"),
    (acc.ensure_env_directory, "mkdir -p .kamal/apps/app/env/accessories"),
    (acc.container_id, "docker container ls --filter 'name=^app-mysql$' --quiet"),
])
def test_simple(config, builder, expected):
    assert join(builder(_acc(config, "mysql"))) == expected


def test_info_any_state(config):
    assert join(acc.info(_acc(config, "mysql"), all_states=True, quiet=True)) == (
        "docker ps -a -q --filter label=service=app-mysql")


def test_render_maps_non_docker(config):
    assert render(acc.remove_service_directory(_acc(config, "mysql"))) == "/usr/bin/env rm -rf app-mysql"


def test_env_file(config):
    assert acc.env_file_body(_acc(config, "mysql")) == "MYSQL_ROOT_PASSWORD=secret123\n"
    assert acc.env_file_body(_acc(config, "redis")) == "\n"


def test_files_and_directories():
    raw = yaml.safe_load(CONFIG)
    raw["accessories"]["mysql"]["files"] = ["config/mysql/my.cnf:/etc/mysql/my.cnf",
                                            {"local": "a.sql.erb", "remote": "/docker-entrypoint-initdb.d/a.sql",
                                             "mode": "0600", "owner": "999"}]
    raw["accessories"]["mysql"]["directories"] = ["data:/var/lib/mysql", "/abs/dir:/x"]
    config = Configuration(raw, version="999")
    mysql = config.accessory("mysql")
    files = mysql.files
    assert [join(c) for c in acc.file_permission_commands(files[0])] == ["chmod 755 app-mysql/etc/mysql/my.cnf"]
    assert [join(c) for c in acc.file_permission_commands(files[1])] == [
        "chmod 0600 app-mysql/docker-entrypoint-initdb.d/a.sql", "chown 999 app-mysql/docker-entrypoint-initdb.d/a.sql"]
    assert join(acc.make_directory_for(files[0].host_path)) == "mkdir -p app-mysql/etc/mysql"
    dirs = mysql.directories
    assert [join(c) for c in acc.directory_commands(dirs[0])] == ["mkdir -p $PWD/app-mysql/data"]
    assert [join(c) for c in acc.directory_commands(dirs[1])] == ["mkdir -p /abs/dir"]
    assert ("--volume $PWD/app-mysql/etc/mysql/my.cnf:/etc/mysql/my.cnf --volume $PWD/app-mysql/docker-entrypoint"
            "-initdb.d/a.sql:/docker-entrypoint-initdb.d/a.sql --volume $PWD/app-mysql/data:/var/lib/mysql "
            "--volume /abs/dir:/x --label") in join(acc.run(mysql))


def test_missing_local_file(tmp_path):
    with pytest.raises(acc.MissingFile, match="Missing file: .*nope"):
        acc.ensure_local_file_present(str(tmp_path / "nope"))


def test_proxy(config):
    busybox = _acc(config, "busybox")
    assert join(acc.proxy_deploy(busybox, "172.1.0.2")) == (
        'docker exec kamal-proxy kamal-proxy deploy custom-busybox --target="172.1.0.2:80" '
        '--host="busybox.example.com" --deploy-timeout="30s" --drain-timeout="30s" --buffer-requests '
        '--buffer-responses --log-request-header="Cache-Control" --log-request-header="Last-Modified" '
        '--log-request-header="User-Agent"')
    assert join(acc.proxy_remove(busybox)) == "docker exec kamal-proxy kamal-proxy remove custom-busybox"
