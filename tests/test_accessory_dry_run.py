"""``--dry-run`` of the ``accessory`` commands: Kamal's command strings (reference sections 7.4, 8.6, 8.7).

The app runs on H1 (where the deploy lock lives), the accessories on H2; only H2's lines are compared.
Hosts are loopback addresses with a listener on the SSH port: the test checks that nothing connected.
"""

from __future__ import annotations

import re
import sys

import pytest
from helpers import assert_no_connection, dry_run_environment, write_project

H1, H2 = "127.0.0.2", "127.0.0.3"
PASSWORD = "pa$$w0rd-never-shown"
PERFORMER = "deployer@example.com"
DEPLOY_YML = f"""\
service: app
image: dhh/app
servers: [{H1}]
ssh:
  port: {{port}}
registry: {{{{server: private.registry, username: dhh, password: {PASSWORD}}}}}
builder: {{{{arch: amd64}}}}
accessories:
  mysql:
    image: private.registry/mysql:5.7
    host: {H2}
    port: "3306"
    env:
      clear: {{{{MYSQL_ROOT_HOST: "%"}}}}
      secret: [MYSQL_ROOT_PASSWORD]
    files:
      - config/mysql/my.cnf:/etc/mysql/my.cnf
      - path: ignored
        local: config/mysql/init.sql.erb
        remote: /docker-entrypoint-initdb.d/init.sql
        mode: "0600"
        owner: "999:999"
    directories:
      - data:/var/lib/mysql
  busybox:
    service: custom-busybox
    image: busybox:latest
    registry: {{{{server: other.registry, username: user, password: {PASSWORD}}}}}
    host: {H2}
    proxy: {{{{host: busybox.example.com}}}}
"""
AUDIT = '/usr/bin/env mkdir -p .kamal && echo "[<TS>] [' + PERFORMER + '] {}" >> .kamal/app-audit.log'
MYSQL_RUN = ('docker run --name app-mysql --detach --restart unless-stopped --network kamal --log-opt max-size="10m" '
             f'--publish 3306:3306 --env KAMAL_HOST="{H2}" --env MYSQL_ROOT_HOST="%" '
             "--env-file .kamal/apps/app/env/accessories/mysql.env --volume $PWD/app-mysql/etc/mysql/my.cnf:/etc/mysql/"
             "my.cnf --volume $PWD/app-mysql/docker-entrypoint-initdb.d/init.sql:/docker-entrypoint-initdb.d/init.sql "
             '--volume $PWD/app-mysql/data:/var/lib/mysql --label service="app-mysql" private.registry/mysql:5.7')
PROXY_DEPLOY = ('docker exec kamal-proxy kamal-proxy deploy custom-busybox --target="<container id>:80" '
                '--host="busybox.example.com" --deploy-timeout="30s" --drain-timeout="30s" --buffer-requests '
                '--buffer-responses --log-request-header="Cache-Control" --log-request-header="Last-Modified" '
                '--log-request-header="User-Agent"')


class FakeStdin:
    def isatty(self) -> bool:
        return False


@pytest.fixture
def project(tmp_path, monkeypatch, listeners):
    write_project(tmp_path, DEPLOY_YML.format(port=listeners[0]), secrets="MYSQL_ROOT_PASSWORD=s3cret\n",
                  files={"config/mysql/my.cnf": "[mysqld]\n",
                         "config/mysql/init.sql.erb": "-- <%= ENV['MYSQL_ROOT_HOST'] %>\n"})
    monkeypatch.setattr(sys, "stdin", FakeStdin())
    dry_run_environment(monkeypatch, tmp_path, version="999", name="Dee Ployer", email=PERFORMER)
    return tmp_path


@pytest.fixture
def dry(kamalpy, project, listeners):
    def run(*args: str) -> list[str]:
        result = kamalpy("--dry-run", "accessory", *args)
        assert result.code == 0, result.err
        assert PASSWORD not in result.out + result.err
        assert "s3cret" not in result.out + result.err
        assert_no_connection(listeners[1])
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<TS>", result.out)
        return [line.split("\t", 1)[1] for line in text.splitlines() if line.startswith(f"{H2}\t")]

    return run


def test_boot_with_files_and_directories(dry):
    got = dry("boot", "mysql")
    assert got[0] == "/usr/bin/env mkdir -p .kamal"  # the lock's run directory on every selected host
    assert got[1:] == [
        "docker login private.registry -u [REDACTED] --password-stdin",
        "docker network create kamal",
        "docker ps -a -q --filter label=service=app-mysql",
        "/usr/bin/env mkdir -p $PWD/app-mysql/data",
        "/usr/bin/env mkdir -p app-mysql/etc/mysql",
        "upload\tupload app-mysql/etc/mysql/my.cnf mode 0644 (9 bytes)",
        "/usr/bin/env chmod 755 app-mysql/etc/mysql/my.cnf",
        "/usr/bin/env mkdir -p app-mysql/docker-entrypoint-initdb.d",
        "upload\tupload app-mysql/docker-entrypoint-initdb.d/init.sql mode 0644 (5 bytes)",
        "/usr/bin/env chmod 0600 app-mysql/docker-entrypoint-initdb.d/init.sql",
        "/usr/bin/env chown 999:999 app-mysql/docker-entrypoint-initdb.d/init.sql",
        AUDIT.format("Booted mysql accessory"),
        "/usr/bin/env mkdir -p .kamal/apps/app/env/accessories",
        "upload\tupload .kamal/apps/app/env/accessories/mysql.env mode 0600 (27 bytes)",
        MYSQL_RUN,
    ]


def test_boot_proxied(dry):
    assert dry("boot", "busybox")[1:] == [
        "docker login other.registry -u [REDACTED] --password-stdin",
        "docker network create kamal",
        "docker ps -a -q --filter label=service=custom-busybox",
        AUDIT.format("Booted busybox accessory"),
        "/usr/bin/env mkdir -p .kamal/apps/app/env/accessories",
        "upload\tupload .kamal/apps/app/env/accessories/busybox.env mode 0600 (1 bytes)",
        'docker run --name custom-busybox --detach --restart unless-stopped --network kamal --log-opt '
        f'max-size="10m" --env KAMAL_HOST="{H2}" --env-file .kamal/apps/app/env/accessories/busybox.env '
        '--label service="custom-busybox" other.registry/busybox:latest',
        "docker container ls --filter 'name=^custom-busybox$' --quiet",
        PROXY_DEPLOY,
    ]


def test_erb_file_rendered_with_accessory_env(project):
    import yaml

    from kamalpy.builtin_plugins.accessory_commands import local_files
    from kamalpy.config.model import Configuration

    config = Configuration(yaml.safe_load((project / "config/deploy.yml").read_text()), version="999")
    config._secrets = {"MYSQL_ROOT_PASSWORD": "s3cret"}
    files = local_files(config.accessory("mysql"))
    assert [data for _, data in files] == [b"[mysqld]\n", b"-- %\n"]


def test_exec_modes(dry):
    new = ('docker run --rm --network kamal --env MYSQL_ROOT_HOST="%" --env-file '
           ".kamal/apps/app/env/accessories/mysql.env --volume $PWD/app-mysql/etc/mysql/my.cnf:/etc/mysql/my.cnf "
           "--volume $PWD/app-mysql/docker-entrypoint-initdb.d/init.sql:/docker-entrypoint-initdb.d/init.sql "
           "--volume $PWD/app-mysql/data:/var/lib/mysql private.registry/mysql:5.7")
    assert dry("exec", "mysql", "mysql", "-u", "root") == [
        "docker login private.registry -u [REDACTED] --password-stdin",
        AUDIT.format("Executed cmd 'mysql -u root' on mysql accessory"),
        f"{new} mysql -u root"]
    assert dry("exec", "--reuse", "mysql", "mysql", "-u", "root") == [
        AUDIT.format("Executed cmd 'mysql -u root' on mysql accessory"),
        "docker exec app-mysql mysql -u root"]


@pytest.mark.parametrize("tty, flags", [(True, "-it"), (False, "-i")])
def test_exec_interactive(kamalpy, project, listeners, monkeypatch, tty, flags):
    """Kamal's docker_interactive_args: ``-it`` on a terminal, ``-i`` for piped input (``< dump.sql``)."""
    monkeypatch.setattr(FakeStdin, "isatty", lambda self: tty)
    port = listeners[0]
    result = kamalpy("--dry-run", "accessory", "exec", "-i", "--reuse", "mysql", "bash")
    assert result.code == 0
    assert f"local\tssh -t root@{H2} -p {port} 'docker exec {flags} app-mysql bash'" in result.out.splitlines()
    result = kamalpy("--dry-run", "accessory", "exec", "-i", "mysql", "bash")
    assert f"local\tssh -t root@{H2} -p {port} 'docker run {flags} --rm --network kamal " in result.out
    assert kamalpy("--dry-run", "accessory", "exec", "-i", "--raw", "mysql", "bash").code == 1


def test_exec_interactive_pipes_stdin_through_ssh(project, listeners, tmp_path):
    """``accessory exec -i db 'psql' < dump.sql``: the file reaches the remote command on ssh's stdin."""
    import os
    import subprocess

    from helpers import KAMALPY

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Stands for ssh: records its arguments and the input it was given, as the remote side would get it.
    (bin_dir / "ssh").write_text('#!/bin/sh\nprintf "%s\\n" "$*" > "$SSH_LOG"\ncat > "$SSH_LOG.stdin"\n')
    (bin_dir / "ssh").chmod(0o755)
    dump = tmp_path / "dump.sql"
    dump.write_bytes(b"CREATE TABLE t (x int);\n" * 1000)
    log = tmp_path / "ssh.log"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SSH_LOG": str(log)}
    with dump.open("rb") as stdin:
        proc = subprocess.run([KAMALPY, "accessory", "exec", "-i", "--reuse", "mysql", "mysql"], cwd=project,
                              env=env, stdin=stdin, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == f"-t root@{H2} -p {listeners[0]} docker exec -i app-mysql mysql\n"
    assert (tmp_path / "ssh.log.stdin").read_bytes() == dump.read_bytes()
    assert_no_connection(listeners[1])


def test_logs(dry, kamalpy, listeners):
    assert dry("logs", "mysql") == ["docker logs app-mysql  --tail 100 --timestamps 2>&1"]
    assert dry("logs", "mysql", "-s", "5m", "-n", "100", "-g", "thing", "--grep-options", "-C 2") == [
        "docker logs app-mysql  --since 5m  --tail 100 --timestamps 2>&1 | grep 'thing' -C 2"]
    assert dry("logs", "mysql", "-T", "-s", "5m") == ["docker logs app-mysql  --since 5m 2>&1"]
    result = kamalpy("--dry-run", "accessory", "logs", "mysql", "-f")
    assert (f"local\tssh -t root@{H2} -p {listeners[0]} 'docker logs app-mysql --timestamps --tail 10 --follow 2>&1'"
            in result.out.splitlines())


def test_start_stop_remove(dry):
    assert dry("start", "busybox")[1:] == [
        AUDIT.format("Started busybox accessory"), "docker container start custom-busybox",
        "docker container ls --filter 'name=^custom-busybox$' --quiet", PROXY_DEPLOY]
    assert dry("stop", "mysql")[1:] == [AUDIT.format("Stopped mysql accessory"), "docker container stop app-mysql"]
    assert dry("stop", "busybox")[1:] == [
        AUDIT.format("Stopped busybox accessory"), "docker container stop custom-busybox",
        "docker exec kamal-proxy kamal-proxy remove custom-busybox"]
    assert dry("remove", "-y", "mysql")[1:] == [
        AUDIT.format("Stopped mysql accessory"), "docker container stop app-mysql",
        AUDIT.format("Remove mysql accessory container"),
        "docker container prune --force --filter label=service=app-mysql",
        AUDIT.format("Removed mysql accessory image"), "docker image rm --force private.registry/mysql:5.7",
        "/usr/bin/env rm -rf app-mysql"]


def test_details_all(dry):
    assert dry("details", "all") == ["docker ps --filter label=service=app-mysql",
                                     "docker ps --filter label=service=custom-busybox"]


def test_unknown_name(kamalpy, project):
    result = kamalpy("--dry-run", "accessory", "boot", "x")
    assert result.code == 1
    assert result.out == ""
    assert result.err.strip().splitlines()[-1] == "No accessory by the name of 'x' (options: mysql and busybox)"


def test_missing_local_file_changes_nothing(kamalpy, project):
    (project / "config/mysql/my.cnf").unlink()
    result = kamalpy("--dry-run", "accessory", "boot", "mysql")
    assert result.code == 1
    assert result.out == ""
    assert result.err.strip() == "ERROR: Missing file: config/mysql/my.cnf"
