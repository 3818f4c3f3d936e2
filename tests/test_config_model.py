"""The configuration object model, built from plain dicts (no files, no Kamal)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from kamalpy import KAMAL_COMPAT_VERSION
from kamalpy.config.args import argumentize, escape_shell_value, optionize
from kamalpy.config.gem_version import newer as version_newer
from kamalpy.config.loader import RubySymbol
from kamalpy.config.model import Configuration
from kamalpy.config.specifics import split_filters
from kamalpy.errors import ConfigurationError, KamalpyError
from kamalpy.plugin import ConfigKey

BASE = """
service: app
image: dhh/app
registry: {username: dhh, password: [PW]}
builder: {arch: amd64}
"""


class FakeSecrets(dict):
    pass


def make(extra: str = "servers: [1.1.1.1]", **kwargs) -> Configuration:
    raw = yaml.safe_load(BASE + extra)
    kwargs.setdefault("version", "123")
    config = Configuration(raw, destination=kwargs.pop("destination", None), **kwargs)
    config._secrets = FakeSecrets(PW="pw", A="a", B="b", KEY="k", T="t")
    return config


ROLES = """
servers:
  workers:
    hosts: [1.1.1.3, {1.1.1.4: [db]}]
    cmd: bin/jobs
    env: {clear: {W: "1"}, secret: [B]}
    labels: {team: jobs}
    logging: {options: {max-size: 1m}}
  web:
    - 1.1.1.1
    - 1.1.1.2: [db, edge]
accessories:
  db: {image: mysql, tag: db}
  cache: {image: redis, hosts: [9.9.9.9]}
env:
  clear: {A: x}
  secret: [A, DB:KEY]
  tags:
    db: {DBTAG: "1"}
    edge: {clear: {EDGE: "1", A: edge}, secret: [T]}
labels: {app: demo}
logging: {driver: json-file}
"""


def test_roles_hosts_and_names() -> None:
    config = make(ROLES, destination="staging")
    assert config.role_names == ["web", "workers"]
    assert config.all_hosts == ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "9.9.9.9"]
    assert config.primary_host == "1.1.1.1"
    web, workers = config.roles
    assert web.container_prefix == "app-web-staging"
    assert workers.container_name() == "app-workers-staging-123"
    assert workers.cmd == "bin/jobs"
    assert workers.labels == {"service": "app", "role": "workers", "destination": "staging", "app": "demo",
                              "team": "jobs"}
    assert workers.logging_args() == ["--log-driver", '"json-file"', "--log-opt", 'max-size="1m"']
    assert config.latest_image == "dhh/app:latest-staging"
    assert config.env_directory == ".kamal/apps/app-staging/env"
    assert workers.secrets_path == ".kamal/apps/app-staging/env/roles/workers.env"


def test_env_merges_root_role_and_tags_in_order() -> None:
    config = make(ROLES)
    web = config.role("web")
    env = web.env("1.1.1.2")
    assert env.clear == {"A": "edge", "DBTAG": "1", "EDGE": "1"}
    assert env.secret_names == {"A": "A", "DB": "KEY", "T": "T"}
    assert env.secrets() == {"A": "a", "DB": "k", "T": "t"}
    assert config.role("workers").env("1.1.1.3").clear == {"A": "x", "W": "1"}
    assert config.role("workers").env("1.1.1.3").secret_names == {"A": "A", "DB": "KEY", "B": "B"}
    assert web.env_args("1.1.1.1")[:2] == ["--env", 'A="x"']


def test_accessory_tags_match_exactly_in_every_role_form() -> None:
    config = make(ROLES + "\n" if False else ROLES.replace("{1.1.1.4: [db]}", "{1.1.1.4: [db]}, {1.1.1.5: dbx}"))
    assert config.accessory("db").hosts == ["1.1.1.2", "1.1.1.4"]


def test_accessory_values() -> None:
    config = make("""
servers: [1.1.1.1]
accessories:
  mysql:
    image: mysql:8
    host: 1.1.1.5
    port: 3306
    registry: {server: reg.example.com, username: u, password: [PW]}
    files: [conf/my.cnf:/etc/mysql/my.cnf, {local: init.sql.erb, remote: /init.sql, mode: "0600"}]
    directories: [data:/var/lib/mysql, /abs:/abs:ro]
    volumes: [/x:/y]
    options: {memory: 1g}
""")
    mysql = config.accessory("mysql")
    assert mysql.service_name == "app-mysql"
    assert mysql.image == "reg.example.com/mysql:8"
    assert mysql.port == "3306:3306"
    assert mysql.registry.password == "pw"
    assert [f.mode for f in mysql.files] == ["755", "0600"]
    assert mysql.files[1].erb and mysql.files[1].host_path == "app-mysql/init.sql"
    assert mysql.volume_args() == ["--volume", "/x:/y", "--volume", "$PWD/app-mysql/etc/mysql/my.cnf:/etc/mysql/my.cnf",
                                   "--volume", "$PWD/app-mysql/init.sql:/init.sql",
                                   "--volume", "$PWD/app-mysql/data:/var/lib/mysql", "--volume", "/abs:/abs:ro"]
    assert mysql.option_args() == ["--memory", '"1g"']


def test_proxy_roles_and_merge() -> None:
    config = make("""
servers:
  web: [1.1.1.1]
  api: {hosts: [1.1.1.2], proxy: {host: api.example.com, healthcheck: {path: /hc}}}
  jobs: [1.1.1.3]
proxy: {host: app.example.com, app_port: 3000, healthcheck: {interval: 2}}
""")
    assert config.proxy_role_names == ["api", "web"]
    api = config.role("api").proxy
    assert api.hosts == ["api.example.com"] and api.app_port == 3000
    assert api.raw["healthcheck"] == {"interval": 2, "path": "/hc"}
    assert config.proxy_hosts == ["1.1.1.2", "1.1.1.1"]
    options = api.deploy_options(deploy_timeout=30, drain_timeout=30)
    assert list(options)[:3] == ["host", "deploy-timeout", "drain-timeout"]
    assert options["log-request-header"] == ["Cache-Control", "Last-Modified", "User-Agent"]


def test_shared_root_proxy_run_is_not_a_conflict() -> None:
    config = make("""
servers: {web: [1.1.1.1], api: {hosts: [1.1.1.1], proxy: true}}
proxy: {host: a.com, run: {http_port: 8080}}
""")
    assert config.proxy_run("1.1.1.1") == {"http_port": 8080}


def test_accessories_only_configuration() -> None:
    config = make("accessories: {db: {image: mysql, host: 1.1.1.5}}")
    data = config.to_h()
    assert data["roles"] == [] and data["hosts"] == ["1.1.1.5"] and "primary_host" not in data


def test_boot_limit_percent_counts_accessory_hosts() -> None:
    config = make(ROLES + "boot: {limit: 50%, wait: 2}")
    assert config.boot.limit == 2 and config.boot.wait == 2
    assert make("servers: [1.1.1.1]\nboot: {limit: 10%}").boot.limit == 1


def test_builder_facts() -> None:
    config = make("servers: [1.1.1.1]").builder
    assert config.arches == ["amd64"] and config.driver == "docker-container" and not config.cached
    raw = yaml.safe_load(BASE + "servers: [1.1.1.1]")
    raw["builder"] = {"arch": ["amd64", "arm64"], "remote": "ssh://b", "cache": {"type": "registry"},
                      "driver": "cloud org/b"}
    builder = Configuration(raw, version="1").builder
    assert builder.local_arches("amd64") == ["amd64"] and builder.remote_arches("amd64") == ["arm64"]
    assert builder.cache_image_ref == "dhh/app-build-cache"  # the cache strings: kamalpy.commands.builder
    assert builder.cloud_endpoint == "org/b" and builder.platform == "linux/amd64,linux/arm64"
    assert builder.git_clone(True) and not builder.git_clone(False)


def test_local_registry_defaults_the_image() -> None:
    raw = yaml.safe_load("service: app\nregistry: {server: 'localhost:5555'}\nbuilder: {arch: amd64}\n"
                         "servers: [1.1.1.1]")
    config = Configuration(raw, version="1")
    assert config.registry.local and config.registry.local_port == 5555
    assert config.absolute_image == "localhost:5555/app:1"


def test_ssh_options_redact_key_data() -> None:
    config = make("servers: [1.1.1.1]\nssh: {proxy: bastion, key_data: [KEY], port: '2222', log_level: ':debug'}")
    assert config.ssh.to_h() == {"user": "root", "port": "2222", "proxy": "root@bastion", "keepalive": True,
                                 "keepalive_interval": 30, "key_data": ["[REDACTED]"], "log_level": "debug"}
    assert config.ssh.key_data_values(config.secret_lookup) == ["k"]


def test_version_sources(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("VERSION", "from-env")
    assert make(version=None).version == "from-env"
    assert make(version="cli").version == "cli"
    monkeypatch.delenv("VERSION")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="no git repository found in"):
        _ = make(version=None).version
    for args in (["init", "-q"], ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m",
                                  "x"]):
        subprocess.run(["git", *args], check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "dirty").write_text("x")
    assert make(version=None).version == sha  # git-clone build: local changes don't matter
    with_context = make("servers: [1.1.1.1]\nbuilder: {arch: amd64, context: .}", version=None).version
    assert re.fullmatch(sha + r"_uncommitted_[0-9a-f]{16}", with_context)


def test_specifics_filters_and_primary() -> None:
    config = make(ROLES)
    assert config.specifics(hosts="1.1.1.{2,3}").hosts == ["1.1.1.2", "1.1.1.3"]
    only = config.specifics(roles="work*")
    assert [r.name for r in only.roles] == ["workers"] and only.hosts == ["1.1.1.3", "1.1.1.4"]
    assert only.primary_host == "1.1.1.3"
    assert config.specifics(primary=True).hosts == ["1.1.1.1"]
    assert config.specifics(roles="workers", primary=True).hosts == ["1.1.1.3"]
    mixed = config.specifics(hosts="1.1.1.4,1.1.1.2")
    assert mixed.primary_host == "1.1.1.4" and [r.name for r in mixed.roles] == ["workers", "web"]
    with pytest.raises(KamalpyError, match="^No --hosts match for nope,x$"):
        config.specifics(hosts="nope,x")
    with pytest.raises(KamalpyError, match="^No --roles match for db$"):
        config.specifics(roles="db")
    assert split_filters("a,{b,c}*,d") == ["a", "{b,c}*", "d"]


def test_extension_keys() -> None:
    key = ConfigKey("deploy_window", {"type": "object"}, default={"days": []})
    assert make(extension_keys={"deploy_window": key}).extension("deploy_window") == {"days": []}
    config = make("servers: [1.1.1.1]\ndeploy_window: {days: [mon]}", extension_keys={"deploy_window": key})
    assert config.extension("deploy_window") == {"days": ["mon"]}


def test_hooks_output() -> None:
    config = make("servers: [1.1.1.1]\nhooks_output: {pre-deploy: verbose}")
    assert config.hooks_output_for("pre-deploy") == "verbose" and config.hooks_output_for("post-deploy") is None
    # A Ruby symbol (`:quiet` unquoted in deploy.yml) as kamalpy's loader reads it.
    raw = {**yaml.safe_load(BASE + "servers: [1.1.1.1]"), "hooks_output": RubySymbol(":quiet")}
    assert Configuration(raw, version="1").hooks_output_for("post-deploy") == "quiet"


@pytest.mark.parametrize(("extra", "message"), [
    ("servers: [1.1.1.1]\nretain_containers: 0", "Must retain at least 1 container"),
    ("servers: [1.1.1.1]\nminimum_version: 2.11.1", "Current version is 2.11.0, minimum required is 2.11.1"),
    ("servers: {web: {hosts: [1.1.1.1], options: {restart: always}}}",
     "servers/web: Cannot set restart policy in docker options, unless-stopped is required"),
    ("servers: {web: [1.1.1.1, {a: x, b: y}]}", "servers/web/1: multiple hosts found"),
    ("servers: [1.1.1.1]\nenv: {clear: {A: b}, C: d, E: f}", "env: unknown keys: C, E"),
])
def test_semantic_errors(extra, message) -> None:
    with pytest.raises(ConfigurationError) as error:
        make(extra)
    assert str(error.value) == message


def test_minimum_version_at_or_below_is_fine() -> None:
    for version in ("2.11.0", "2.11", "2.10.9", "2.11.0.rc1"):
        config = make(f"servers: [1.1.1.1]\nminimum_version: {version}")  # no "Current version is" error
        assert config.minimum_version == version
        assert not version_newer(version, KAMAL_COMPAT_VERSION), version
    assert KAMAL_COMPAT_VERSION == "2.11.0"  # the versions above are at or below it


def test_shell_escaping_like_kamal() -> None:
    assert escape_shell_value('a"b\\c$x${Y}`z`#{h}') == '"a\\"b\\\\c\\$x${Y}\\`z\\`\\#{h}"'
    assert escape_shell_value("abc中文def") == '"abc"中文"def"'
    assert escape_shell_value("tab\there\x01") == '"tab\\there\\x01"'
    assert argumentize("--env", {"A": "1", "B": "", "C": False, "D": 2}) == [
        "--env", 'A="1"', "--env", "B", "--env", "C=false", "--env", 'D="2"']
    assert argumentize("--volume", ["/a:/b"]) == ["--volume", "/a:/b"]
    assert optionize({"a": True, "b": [1, 2], "c": "x"}) == ["--a", "--b", '"1"', "--b", '"2"', "--c", '"x"']
    assert optionize({"tls": True, "host": "h"}, with_="=") == ["--tls", '--host="h"']
