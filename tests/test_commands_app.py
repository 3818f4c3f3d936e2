"""App container commands: every string of kamal.md §7.2 (Kamal 2.11 where §13/decisions differ), joined and rendered.

Fixtures as Kamal's app_test.rb: ``service: app``, ``image: dhh/app``, servers web 1.1.1.1 / workers 1.1.1.2,
``env.secret: [RAILS_MASTER_KEY]``, version 999.
"""

from __future__ import annotations

import pytest
import yaml

from kamalpy.commands import app, app_proxy, assets, builder_pull, server
from kamalpy.commands.base import join, render
from kamalpy.commands.env_file import env_file, env_file_value
from kamalpy.commands.layout import container_hostname, replaced_version, volume_arg
from kamalpy.config.model import Configuration

BASE = """
service: app
image: dhh/app
registry: {username: dhh, password: secret}
builder: {arch: amd64}
"""
ENV = """
env:
  secret: [RAILS_MASTER_KEY]
"""
SERVERS = """
servers:
  web: [1.1.1.1]
  workers: [1.1.1.2]
"""
SECRETS = {"RAILS_MASTER_KEY": "456"}

STOP_FILTERS = ("--filter label=service=app --filter label=destination= --filter label=role={role} "
                "--filter status=running --filter status=restarting")
CURRENT = ("sh -c 'docker ps --latest {fmt} " + STOP_FILTERS + " --filter ancestor=$(docker image ls --filter "
           "reference=dhh/app:latest --format '\\''{{{{.ID}}}}'\\'') ; docker ps --latest {fmt} " + STOP_FILTERS
           + "' | head -1")
CURRENT_ID = CURRENT.format(fmt="--quiet", role="web")


def make(extra: str = "", *, servers: str = SERVERS, destination: str | None = None, version: str = "999",
         secrets: dict[str, str] | None = None) -> Configuration:
    # `extra` follows the env section, so it can add `  clear:`/`  tags:` to it as well as root keys.
    config = Configuration(yaml.safe_load(BASE + servers + ENV + extra), destination=destination, version=version)
    config._secrets = dict(SECRETS if secrets is None else secrets)  # no .kamal/secrets file in tests
    return config


def web(config: Configuration | None = None, name: str = "web"):
    role = (config or make()).role(name)
    assert role is not None
    return role


def run_line(*, name: str = "app-web-999", host: str = "1.1.1.1", role: str = "web", between: str = "",
             env: str = "", logging: str = '--log-opt max-size="10m"', volumes: str = "", tail: str = "",
             env_file_path: str = ".kamal/apps/app/env/roles/web.env", restart: str = "unless-stopped",
             destination_label: str = "--label destination") -> str:
    return (f"docker run --detach --restart {restart} --name {name} --network kamal {between}"
            f'--env KAMAL_CONTAINER_NAME="{name}" --env KAMAL_VERSION="999" --env KAMAL_HOST="{host}" {env}'
            f"--env-file {env_file_path} {logging} {volumes}"
            f'--label service="app" --label role="{role}" {destination_label} dhh/app:999{tail}')


# ----- 1-8: run -----

def test_run() -> None:  # 1
    cmd = app.run(web(), "1.1.1.1")
    assert join(cmd) == run_line()
    assert render(cmd) == run_line()  # starts with docker: nothing to map


def test_run_with_destination() -> None:  # 2
    cmd = app.run(web(make(destination="staging")), "1.1.1.1")
    assert join(cmd) == run_line(name="app-web-staging-999", env='--env KAMAL_DESTINATION="staging" ',
                                 env_file_path=".kamal/apps/app-staging/env/roles/web.env",
                                 destination_label='--label destination="staging"')


def test_run_with_hostname() -> None:  # 3
    assert join(app.run(web(), "1.1.1.1", hostname="myhost")) == run_line(between="--hostname myhost ")


def test_run_with_volumes() -> None:  # 4
    cmd = app.run(web(make('volumes: ["/local/path:/container/path"]')), "1.1.1.1")
    assert join(cmd) == run_line(volumes="--volume /local/path:/container/path ")


def test_run_with_custom_cmd_and_options() -> None:  # 5
    servers = ("servers:\n  web: [1.1.1.1]\n"
               "  jobs: {hosts: [1.1.1.2], cmd: bin/jobs, options: {mount: somewhere, cap-add: true}}\n")
    cmd = app.run(web(make(servers=servers), "jobs"), "1.1.1.2")
    assert join(cmd) == (
        'docker run --detach --restart unless-stopped --name app-jobs-999 --network kamal '
        '--env KAMAL_CONTAINER_NAME="app-jobs-999" --env KAMAL_VERSION="999" --env KAMAL_HOST="1.1.1.2" '
        '--env-file .kamal/apps/app/env/roles/jobs.env --log-opt max-size="10m" --label service="app" '
        '--label role="jobs" --label destination --mount "somewhere" --cap-add dhh/app:999 bin/jobs')


def test_restart_option_is_refused_by_kamal_211(monkeypatch: pytest.MonkeyPatch) -> None:  # 6
    from kamalpy.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="restart"):
        make(servers="servers:\n  web: {hosts: [1.1.1.1], options: {restart: on-failure}}\n")
    # Kamal 2.12's form, should a plugin allow the option: the policy moves to --restart, never into the options.
    role = web()
    monkeypatch.setitem(role.settings, "options", {"restart": "on-failure"})
    assert join(app.run(role, "1.1.1.1")) == run_line(restart="on-failure")


def test_run_with_logging() -> None:  # 7
    expected = run_line(logging='--log-driver "local" --log-opt max-size="100m" --log-opt max-file="3"')
    cmd = app.run(web(make('logging: {driver: local, options: {max-size: 100m, max-file: "3"}}')), "1.1.1.1")
    assert join(cmd) == expected
    servers = ("servers:\n  web: {hosts: [1.1.1.1], logging: {driver: local, options: {max-size: 100m}}}\n"
               "  workers: [1.1.1.2]\n")
    cmd = app.run(web(make('logging: {options: {max-size: 10m, max-file: "3"}}', servers=servers)), "1.1.1.1")
    assert join(cmd) == expected


def test_run_with_env_tags() -> None:  # 8
    config = make("  tags:\n    tag1: {ENV1: value1}\n", servers='servers:\n  - "1.1.1.1": tag1\n')
    assert join(app.run(web(config), "1.1.1.1")) == run_line(env='--env ENV1="value1" ')


def test_run_escapes_hostile_clear_env() -> None:
    config = make("  clear:\n    Q: \"a\\\"b'c\"\n    D: \"$HOME ${TOKEN}\"\n    N: \"one\\ntwo\"\n"
                  "    B: \"`id`\"\n    U: \"caf\u00e9 \u4e2d\"\n    H: \"#{x}\"\n    E: \"\"\n")
    line = join(app.run(web(config), "1.1.1.1"))
    assert ('--env Q="a\\"b\'c" --env D="\\$HOME ${TOKEN}" --env N="one\\ntwo" --env B="\\`id\\`" '
            '--env U="caf"\u00e9" "\u4e2d --env H="\\#{x}" --env E --env-file') in line


def test_run_with_asset_path() -> None:  # 24 (the volume)
    line = join(app.run(web(make("asset_path: /public/assets\nvolumes: [/a:/b]\n")), "1.1.1.1"))
    assert ("--volume /a:/b --volume $PWD/.kamal/apps/app/assets/volumes/web-999:/public/assets "
            '--label service="app"') in line
    line = join(app.run(web(make("asset_path: /public/assets:ro\n")), "1.1.1.1"))
    assert "--volume $PWD/.kamal/apps/app/assets/volumes/web-999:/public/assets:ro --label" in line
    # Only proxied roles bridge assets.
    assert "assets" not in join(app.run(web(make("asset_path: /public/assets\n"), "workers"), "1.1.1.2"))


# ----- env file -----

def test_env_file_body_for_a_role_on_a_host() -> None:
    config = make("  tags:\n    tag1: {secret: [DB_PASSWORD:MAIN_DB]}\n",
                  servers='servers:\n  web:\n    - "1.1.1.1": tag1\n    - 1.1.1.3\n',
                  secrets={"RAILS_MASTER_KEY": "456", "MAIN_DB": "pw"})
    assert app.env_file_body(web(config), "1.1.1.1") == "RAILS_MASTER_KEY=456\nDB_PASSWORD=pw\n"
    assert app.env_file_body(web(config), "1.1.1.3") == "RAILS_MASTER_KEY=456\n"


def test_env_file_with_hostile_values() -> None:
    assert env_file({"A": 'say "hi"', "B": "it's", "C": "$HOME ${X}", "D": "one\ntwo", "E": "`id`",
                     "F": "back\\slash", "G": "#{x} #$y #@z #plain", "H": "caf\u00e9 \u4e2d!", "I": "tab\there",
                     "J": "\x01\x7f", "K": ""}) == (
        'A=say "hi"\nB=it\'s\nC=$HOME ${X}\nD=one\\ntwo\nE=`id`\nF=back\\\\slash\nG=#{x} #$y #@z #plain\n'
        "H=caf\u00e9 \u4e2d!\nI=tab\\there\nJ=\\x01\\x7F\nK=\n")
    assert env_file_value('\\"') == '\\\\"'  # an escaped backslash stays escaped, the quote is unescaped
    assert env_file({}) == "\n"


# ----- names -----

def test_container_names() -> None:
    role = web()
    assert app.container_name(role) == "app-web-999"
    assert app.container_name(role, "123") == "app-web-123"
    assert app.exec_container_name(role, "a1b2c3") == "app-web-exec-999-a1b2c3"
    assert len(app.exec_container_name(role)) == len("app-web-exec-999-") + 6
    assert role.container_prefix == "app-web"
    assert web(make(destination="staging")).container_prefix == "app-web-staging"
    assert replaced_version("999", "0123456789abcdef") == "999_replaced_0123456789abcdef"
    assert len(replaced_version("999")) == len("999_replaced_") + 16


def test_container_hostname() -> None:
    assert container_hostname("1.1.1.1", "0123456789ab") == "1.1.1.1-0123456789ab"
    assert container_hostname("a" * 60, "0123456789ab") == "a" * 51 + "-0123456789ab"
    assert container_hostname("a" * 50 + ".b", "x") == "a" * 50 + "-x"  # cut at 51, trailing dot dropped
    assert len(container_hostname("host")) == len("host-") + 12


def test_volume_arg() -> None:
    assert volume_arg("/abs", "/c") == ["--volume", "/abs:/c"]
    assert volume_arg("rel/dir", "/c", "ro") == ["--volume", "$PWD/rel/dir:/c:ro"]


# ----- 9-12: stop, status -----

def test_stop_current_container() -> None:  # 9
    cmd = app.stop(web())
    assert join(cmd) == CURRENT_ID + " | xargs docker stop"
    assert render(cmd) == "/usr/bin/env " + CURRENT_ID + " | xargs docker stop"


def test_stop_args() -> None:  # 10
    workers = CURRENT.format(fmt="--quiet", role="workers")
    assert join(app.stop(web(make("drain_timeout: 20\n"), "workers"))) == workers + " | xargs docker stop -t 20"
    assert join(app.stop(web(make(), "workers"))) == workers + " | xargs docker stop -t 30"
    # stop_timeout is Kamal 2.12's (2.11's schema refuses it); honoured when present.
    role = web(make(), "workers")
    role.settings["stop_timeout"] = 60
    assert app.stop_args(role) == ["-t", "60"]
    proxied = web()
    assert app.stop_args(proxied) == []
    proxied.config.raw["stop_timeout"] = 30
    assert join(app.stop(proxied)).endswith("| xargs docker stop -t 30")


def test_stop_a_version() -> None:  # 11
    assert join(app.stop(web(), "123")) == (
        "docker container ls --all --filter 'name=^app-web-123$' --quiet | xargs docker stop")


def test_status() -> None:  # 12
    assert join(app.status(web(make(), "workers"), "999")) == (
        "docker container ls --all --filter 'name=^app-workers-999$' --quiet | xargs docker inspect --format "
        "'{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}'")


@pytest.mark.parametrize(("statuses", "delay", "code", "last"), [
    (["", "starting 0", "starting 0", "healthy 0"], 0, 0, "healthy"),  # missing at first, then its health check
    (["running 0", "running 0"], 0.2, 0, "running"),                  # running still after readiness_delay
    (["running 0", "exited 0"], 0.1, 1, "exited"),                    # exits at once: not ready, times out
    ([f"running {n}" for n in range(20)], 0.5, 1, "restarting"),    # Docker restarts it: never settled
    (["unhealthy 0"], 0, 1, "unhealthy"),
])
def test_wait_until_ready_loop_on_the_server(tmp_path, statuses, delay, code, last) -> None:
    """The loop against a fake ``docker`` that answers each ``inspect`` with the next status (then the last)."""
    import subprocess

    (tmp_path / "answers").write_text("\n".join(statuses) + "\n")
    (tmp_path / "docker").write_text(
        "#!/bin/sh\nn=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count\n"
        "line=$(sed -n \"${n}p\" answers); [ -n \"$line\" ] || line=$(tail -n 1 answers)\n"
        '[ "$line" = "" ] && exit 1; echo "$line"\n')
    (tmp_path / "docker").chmod(0o755)
    loop = join(app.wait_until_ready(web(make(), "workers"), "999", timeout=2, readiness_delay=delay))
    assert "docker inspect --format" in loop and "{{.RestartCount}}' app-workers-999 " in loop
    proc = subprocess.run(["sh", "-c", loop], cwd=tmp_path, env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=20)
    assert (proc.returncode, proc.stdout.strip().splitlines()[-1]) == (code, last)


def test_start_and_info() -> None:
    assert join(app.start(web())) == "docker start app-web-999"
    assert join(app.info(web())) == (
        "docker ps --filter label=service=app --filter label=destination= --filter label=role=web")


# ----- 13-16: kamal-proxy -----

DEFAULT_DEPLOY_TAIL = ('--deploy-timeout="30s" --drain-timeout="30s" --buffer-requests --buffer-responses '
                       '--log-request-header="Cache-Control" --log-request-header="Last-Modified" '
                       '--log-request-header="User-Agent"')


def test_proxy_deploy() -> None:  # 13
    cmd = app_proxy.deploy(web(), "172.1.0.2")
    assert join(cmd) == ('docker exec kamal-proxy kamal-proxy deploy app-web --target="172.1.0.2:80" '
                         + DEFAULT_DEPLOY_TAIL)
    assert render(cmd) == join(cmd)


def test_proxy_deploy_with_ssl_and_hosts() -> None:  # 14
    cmd = app_proxy.deploy(web(make("proxy: {ssl: true, hosts: [example.com, anotherexample.com]}\n")), "172.1.0.2")
    assert join(cmd) == ('docker exec kamal-proxy kamal-proxy deploy app-web --target="172.1.0.2:80" '
                         '--host="example.com" --host="anotherexample.com" --tls ' + DEFAULT_DEPLOY_TAIL)


def test_proxy_deploy_with_role_proxy() -> None:  # 15 (deploy_with_proxy_roles.yml)
    servers = ("servers:\n  web: {hosts: [1.1.1.1, 1.1.1.2]}\n"
               "  web2: {hosts: [1.1.1.3, 1.1.1.4], proxy: {response_timeout: 15}}\n")
    config = make("proxy: {response_timeout: 10}\nreadiness_delay: 0\ndeploy_timeout: 6\n", servers=servers)
    assert join(app_proxy.deploy(web(config, "web2"), "123")) == (
        'docker exec kamal-proxy kamal-proxy deploy app-web2 --target="123:80" --deploy-timeout="6s" '
        '--drain-timeout="30s" --target-timeout="15s" --buffer-requests --buffer-responses '
        '--log-request-header="Cache-Control" --log-request-header="Last-Modified" --log-request-header="User-Agent"')
    assert '--target-timeout="10s"' in join(app_proxy.deploy(web(config), "123"))


def test_proxy_deploy_flag_order_with_everything() -> None:
    proxy = ("proxy:\n  host: a.example.com\n  ssl: {certificate_pem: CERT, private_key_pem: KEY}\n  app_port: 3000\n"
             "  healthcheck: {interval: 3, timeout: 4, path: /health}\n  response_timeout: 10\n"
             "  buffering: {requests: false, responses: true, memory: 2000, max_request_body: 40,"
             " max_response_body: 0}\n"
             "  path_prefix: /api,/oauth\n  strip_path_prefix: false\n  forward_headers: true\n  ssl_redirect: false\n"
             "  logging: {request_headers: [X-A], response_headers: [X-B]}\n")
    config = make(proxy + "error_pages_path: public\n", servers="servers:\n  web: [1.1.1.1]\n")
    assert join(app_proxy.deploy(web(config), "abc")) == (
        'docker exec kamal-proxy kamal-proxy deploy app-web --target="abc:3000" --host="a.example.com" --tls '
        '--tls-certificate-path="/home/kamal-proxy/.apps-config/app/tls/web/cert.pem" '
        '--tls-private-key-path="/home/kamal-proxy/.apps-config/app/tls/web/key.pem" '
        '--deploy-timeout="30s" --drain-timeout="30s" --health-check-interval="3s" --health-check-timeout="4s" '
        '--health-check-path="/health" --target-timeout="10s" --buffer-requests="false" --buffer-responses '
        '--buffer-memory="2000" --max-request-body="40" --max-response-body="0" --path-prefix="/api" '
        '--path-prefix="/oauth" --strip-path-prefix="false" --forward-headers --tls-redirect="false" '
        '--log-request-header="X-A" --log-response-header="X-B" '
        '--error-pages="/home/kamal-proxy/.apps-config/app/error_pages/999"')
    # The key 0600 (Kamal: 0644), then handed to kamal-proxy's own user so that it can still read it.
    assert app_proxy.tls_files(web(config)) == {".kamal/proxy/apps-config/app/tls/web/cert.pem": ("CERT", 0o644),
                                                ".kamal/proxy/apps-config/app/tls/web/key.pem": ("KEY", 0o600)}
    assert join(app_proxy.give_tls_key_to_proxy(web(config))) == (
        "docker exec --user root kamal-proxy chown kamal-proxy:kamal-proxy "
        "/home/kamal-proxy/.apps-config/app/tls/web/key.pem")
    assert join(app_proxy.create_tls_directory(web(config))) == "mkdir -p .kamal/proxy/apps-config/app/tls/web"


def test_proxy_remove_live_maintenance() -> None:  # 16
    role = web()
    assert join(app_proxy.remove(role)) == "docker exec kamal-proxy kamal-proxy remove app-web"
    assert join(app_proxy.live(role)) == "docker exec kamal-proxy kamal-proxy resume app-web"
    assert join(app_proxy.maintenance(role, drain_timeout=10, message="Hi")) == (
        'docker exec kamal-proxy kamal-proxy stop app-web --drain-timeout="10s" --message="Hi"')
    assert join(app_proxy.maintenance(role)) == "docker exec kamal-proxy kamal-proxy stop app-web"
    assert join(app_proxy.deploy(web(make(destination="staging")), "x")).startswith(
        "docker exec kamal-proxy kamal-proxy deploy app-web-staging ")


# ----- 17-19: versions, ids, containers, images -----

def test_current_running_version() -> None:  # 17
    cmd = app.current_running_version(web())
    expected = CURRENT.format(fmt="--format '\\''{{.Names}}'\\''", role="web") + (
        " | while read line; do echo ${line#app-web-}; done")
    assert join(cmd) == expected
    assert render(cmd) == "/usr/bin/env " + expected


def test_current_running_version_with_destination() -> None:  # 17, staging
    line = join(app.current_running_version(web(make(destination="staging"))))
    assert "--filter label=destination=staging" in line
    assert "reference=dhh/app:latest-staging" in line
    assert line.endswith("while read line; do echo ${line#app-web-staging-}; done")
    assert "label=destination= " not in line


def test_list_versions() -> None:  # 18
    assert join(app.list_versions(web())) == (
        'docker ps --filter label=service=app --filter label=destination= --filter label=role=web --format "{{.Names}}"'
        " | while read line; do echo ${line#app-web-}; done")
    assert join(app.list_versions(web(), "--latest", statuses=app.ACTIVE_STATUSES)).startswith(
        "docker ps --filter label=service=app --filter label=destination= --filter label=role=web "
        "--filter status=running --filter status=restarting --latest --format")


def test_containers_and_images() -> None:  # 19
    role = web()
    config = role.config
    filters = "--filter label=service=app --filter label=destination= --filter label=role=web"
    assert join(app.container_id_for_version(role)) == "docker container ls --all --filter 'name=^app-web-999$' --quiet"
    assert join(app.container_id_for_version(role, "999", only_running=True)) == (
        "docker container ls --filter 'name=^app-web-999$' --quiet")
    assert join(app.remove_container(role, "999")) == (
        "docker container ls --all --filter 'name=^app-web-999$' --quiet | xargs docker container rm")
    assert join(app.remove_containers(role)) == f"docker container prune --force {filters}"
    assert join(app.list_containers(role)) == f"docker container ls --all {filters}"
    assert join(app.list_container_names(role)) == f"docker container ls --all {filters} --format '{{{{ .Names }}}}'"
    assert join(app.list_images(config)) == "docker image ls dhh/app"
    assert join(app.remove_images(config)) == "docker image prune --all --force --filter label=service=app"
    assert join(app.tag_latest_image(config)) == "docker tag dhh/app:999 dhh/app:latest"
    assert join(app.tag_latest_image(make(destination="staging"))) == "docker tag dhh/app:999 dhh/app:latest-staging"
    latest = web(make(version="latest"))
    assert join(app.rename_container(latest, "latest", replaced_version("latest", "0123456789abcdef"))) == (
        "docker rename app-web-latest app-web-latest_replaced_0123456789abcdef")
    assert join(app_proxy.remove_proxy_app_directory(config)) == "rm -r .kamal/proxy/apps-config/app"
    assert render(app_proxy.remove_proxy_app_directory(config)) == "/usr/bin/env rm -r .kamal/proxy/apps-config/app"
    assert join(app.container_health_log(role, "999")) == (
        "docker container ls --all --filter 'name=^app-web-999$' --quiet | xargs docker inspect --format "
        "'{{json .State.Health}}'")


def test_directories() -> None:
    config = make(destination="staging")
    assert join(app.make_env_directory(web(config))) == "mkdir -p .kamal/apps/app-staging/env/roles"
    assert render(app.make_env_directory(web())) == "/usr/bin/env mkdir -p .kamal/apps/app/env/roles"
    assert join(server.remove_app_directory(config)) == "rm -r .kamal/apps/app-staging"


# ----- 20-21: logs -----

def test_logs() -> None:  # 20
    cmd = app.logs(web(), since="5m", grep="my-id", grep_options="-C 2")
    assert join(cmd) == CURRENT_ID + " | xargs docker logs --timestamps --since 5m 2>&1 | grep 'my-id' -C 2"
    assert join(app.logs(web(), lines=100, timestamps=False)) == CURRENT_ID + " | xargs docker logs --tail 100 2>&1"


def test_logs_of_a_container_id_kamal_211() -> None:  # 20, decisions.md
    cmd = app.logs(web(), container_id="C137")
    assert join(cmd) == "echo C137 | xargs docker logs --timestamps 2>&1"
    assert render(cmd) == "echo C137 | xargs docker logs --timestamps 2>&1"  # a spaced first part is sent as is


def test_follow_logs() -> None:  # 21
    assert app.follow_logs(web(), "app-1", container_id="ID321") == (
        "ssh -t root@app-1 -p 22 'echo ID321 | xargs docker logs --timestamps --follow 2>&1'")
    assert app.follow_logs(web(), "app-1", lines=123, grep="Completed") == (
        "ssh -t root@app-1 -p 22 'sh -c '\\''docker ps --latest --quiet --filter label=service=app --filter "
        "label=destination= --filter label=role=web --filter status=running --filter status=restarting --filter "
        "ancestor=$(docker image ls --filter reference=dhh/app:latest --format '\\''\\'\\'''\\''{{.ID}}'\\''\\'\\'''"
        "\\'') ; docker ps --latest --quiet --filter label=service=app --filter label=destination= --filter "
        "label=role=web --filter status=running --filter status=restarting'\\'' | head -1 | xargs docker logs "
        "--timestamps --tail 123 --follow 2>&1 | grep \"Completed\"'")


# ----- 22: exec -----

def test_exec_in_new_container() -> None:
    role = web()
    assert join(app.execute_in_new_container(role, "1.1.1.1", "bin/rails", "db:setup", env={"foo": "bar"},
                                             suffix="a1b2c3")) == (
        "docker run --rm --name app-web-exec-999-a1b2c3 --network kamal --env-file .kamal/apps/app/env/roles/web.env "
        '--env foo="bar" --log-opt max-size="10m" dhh/app:999 bin/rails db:setup')
    assert join(app.execute_in_new_container(role, "1.1.1.1", "bin/rails db:setup", detach=True, suffix="a1b2c3")) == (
        "docker run --detach --name app-web-exec-999-a1b2c3 --network kamal "
        '--env-file .kamal/apps/app/env/roles/web.env --log-opt max-size="10m" dhh/app:999 bin/rails db:setup')
    assert join(app.execute_in_new_container(role, "1.1.1.1", "ls", interactive=True, tty=False,
                                             suffix="a1b2c3")).startswith("docker run -i --rm --name")


def test_exec_in_existing_container() -> None:
    assert join(app.execute_in_existing_container(web(), "bin/rails", "db:setup", env={"foo": "bar"})) == (
        'docker exec --env foo="bar" app-web-999 bin/rails db:setup')
    assert join(app.execute_in_existing_container(web(), "ls", interactive=True)) == "docker exec -it app-web-999 ls"


def test_exec_over_ssh() -> None:
    config = make("  tags:\n    tag1: {ENV1: value1}\n", servers='servers:\n  - "1.1.1.1": tag1\n')
    assert app.execute_in_new_container_over_ssh(web(config), "1.1.1.1", "bin/rails c", suffix="a1b2c3") == (
        "ssh -t root@1.1.1.1 -p 22 'docker run -it --rm --name app-web-exec-999-a1b2c3 --network kamal "
        '--env ENV1="value1" --env-file .kamal/apps/app/env/roles/web.env --log-opt max-size="10m" '
        "dhh/app:999 bin/rails c'")
    assert app.execute_in_existing_container_over_ssh(web(config), "1.1.1.1", "bin/rails c") == (
        "ssh -t root@1.1.1.1 -p 22 'docker exec -it app-web-999 bin/rails c'")


def test_exec_never_passes_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    role = web()
    monkeypatch.setitem(role.settings, "options", {"restart": "always", "cpus": 1})
    line = join(app.execute_in_new_container(role, "1.1.1.1", "ls", suffix="x"))
    assert "restart" not in line and '--cpus "1"' in line


# ----- 24-25: assets and error pages -----

def test_assets() -> None:  # 24
    role = web(make("asset_path: /public/assets\n"))
    cmd = assets.extract_assets(role)
    assert join(cmd) == (
        "mkdir -p .kamal/apps/app/assets/extracted/web-999 && docker container rm app-web-assets 2> /dev/null || true "
        "&& docker container create --name app-web-assets dhh/app:999 && docker container cp -L "
        "app-web-assets:/public/assets/. .kamal/apps/app/assets/extracted/web-999 && "
        "docker container rm app-web-assets")
    assert render(cmd) == "/usr/bin/env " + join(cmd)
    assert join(assets.sync_asset_volumes(role, "998")) == (
        "mkdir -p .kamal/apps/app/assets/volumes/web-999 ; cp -rnT .kamal/apps/app/assets/extracted/web-999 "
        ".kamal/apps/app/assets/volumes/web-999 ; cp -rnT .kamal/apps/app/assets/extracted/web-999 "
        ".kamal/apps/app/assets/volumes/web-998 || true ; cp -rnT .kamal/apps/app/assets/extracted/web-998 "
        ".kamal/apps/app/assets/volumes/web-999 || true")
    assert join(assets.sync_asset_volumes(role)) == (
        "mkdir -p .kamal/apps/app/assets/volumes/web-999 ; cp -rnT .kamal/apps/app/assets/extracted/web-999 "
        ".kamal/apps/app/assets/volumes/web-999")
    assert join(assets.clean_up_assets(role)) == (
        "find .kamal/apps/app/assets/extracted -maxdepth 1 -name 'web-*' ! -name web-999 -exec rm -rf \"{}\" + ; "
        "find .kamal/apps/app/assets/volumes -maxdepth 1 -name 'web-*' ! -name web-999 -exec rm -rf \"{}\" +")


def test_error_pages() -> None:  # 25
    config = make(version="latest")
    assert join(app_proxy.clean_up_error_pages(config)) == (
        "find .kamal/proxy/apps-config/app/error_pages -mindepth 1 -maxdepth 1 ! -name latest -exec rm -rf {} +")
    assert join(app_proxy.create_error_pages_directory(make(destination="staging"))) == (
        "mkdir -p .kamal/proxy/apps-config/app-staging/error_pages")


# ----- build pull (§6.6) -----

def test_build_pull() -> None:
    config = make()
    assert not hasattr(builder_pull, "clean")  # Kamal's `docker image rm --force` before the pull: dropped on purpose
    assert join(builder_pull.pull(config)) == "docker pull dhh/app:999"
    cmd = builder_pull.validate_image(config)
    assert join(cmd) == ("docker inspect -f '{{ .Config.Labels.service }}' dhh/app:999 | grep -x app || "
                         "(echo \"Image dhh/app:999 is missing the 'service' label\" && exit 1)")
    assert render(cmd) == join(cmd)
    assert join(builder_pull.first_mirror()) == "docker info --format '{{index .RegistryConfig.Mirrors 0}}'"
    local = Configuration(yaml.safe_load("service: app\nregistry: {server: 'localhost:5555'}\nservers: [1.1.1.1]\n"
                                         "builder: {arch: amd64}\n"), version="1")
    assert join(builder_pull.pull(local)) == "docker pull localhost:5555/app:1"
