"""kamalpy.config.schema: the JSON Schema of Kamal's configuration and validate()."""

from __future__ import annotations

import concurrent.futures
import copy
import shutil
import subprocess

import pytest
import yaml
from test_invalid_configs import CACHE

from kamalpy.config.loader import load_yaml
from kamalpy.config.schema import SCHEMA_PATH, kamal_keys, kamal_schema, validate
from kamalpy.errors import ConfigurationError, PluginError
from kamalpy.plugin import ConfigKey

KAMAL = shutil.which("kamal")
BASE = {
    "service": "app",
    "image": "a/b",
    "registry": {"username": "u", "password": "p"},
    "builder": {"arch": "amd64"},
    "servers": ["1.1.1.1"],
}

# Every documented key of Kamal 2.11 (one value each), which must pass.
KITCHEN_SINK = """
service: app
image: a/b
labels: {team: x}
volumes: [/a:/b]
registry: {server: r.io, username: [USER], password: [PASS]}
servers:
  web:
    hosts: [h1, {h2: tag}, {h3: [tag, other]}]
    cmd: bin/web
    options: {memory: 2g}
    logging: {driver: json-file, options: {max-size: 1m}}
    proxy: {host: a.com, app_port: 3000}
    labels: {my-label: x}
    env: {clear: {A: 1}, secret: [B]}
    asset_path: /public
  jobs: [h4]
  cron: {hosts: [h5], proxy: false}
env:
  clear: {A: b}
  secret: [C, D:E]
  tags: {tag: {F: g}, other: {clear: {H: i}, secret: [J]}}
asset_path: /assets
hooks_path: .kamal/hooks
hooks_output: {pre-deploy: verbose}
secrets_path: .kamal/secrets
error_pages_path: public
require_destination: false
primary_role: web
allow_empty_roles: false
retain_containers: 3
minimum_version: 2.0.0
readiness_delay: 4
deploy_timeout: 10
drain_timeout: 10
run_directory: /etc/kamal
ssh:
  user: app
  port: "2222"
  proxy: root@proxy
  proxy_command: ssh -W %h:%p proxy
  log_level: debug
  keys_only: false
  keys: [~/.ssh/id.pem]
  key_data: [SSH_KEY]
  config: [~/.ssh/config]
builder:
  arch: [amd64, arm64]
  remote: ssh://docker@builder
  local: true
  pack: {builder: heroku/builder:24, buildpacks: [heroku/ruby]}
  cache: {type: registry, options: mode=max, image: cache}
  context: .
  dockerfile: Dockerfile
  target: production
  args: {ENVIRONMENT: production}
  secrets: [SECRET1]
  ssh: default=$SSH_AUTH_SOCK
  driver: docker-container
  provenance: mode=max
  sbom: true
accessories:
  db:
    service: db
    image: mysql:8
    registry: {server: localhost:5000}
    host: h1
    cmd: mysqld
    port: "127.0.0.1:3306:3306"
    labels: {app: x}
    options: {cpus: 2}
    env: {clear: {A: b}, secret: [PW]}
    files: [a:/b, {local: c, remote: /d, mode: "0600", owner: "1:1", options: Z}]
    directories: [data:/var/lib/mysql, {local: logs, remote: /logs, mode: "0755"}]
    volumes: [/x:/y]
    network: custom
    proxy: {host: db.a.com}
  cache: {image: valkey, roles: [web]}
  search: {image: x, tags: [tag]}
proxy:
  hosts: [a.com, b.com]
  app_port: 3000
  ssl: {certificate_pem: CERT, private_key_pem: KEY}
  ssl_redirect: false
  forward_headers: true
  response_timeout: 10
  path_prefixes: [/api]
  strip_path_prefix: false
  healthcheck: {interval: 3, path: /health, timeout: 3}
  buffering: {requests: true, responses: true, max_request_body: 40000000, max_response_body: 0, memory: 2000000}
  logging: {request_headers: [Cache-Control], response_headers: [X-Request-ID]}
  run:
    http_port: 8080
    https_port: 8443
    metrics_port: 9090
    debug: true
    log_max_size: 30m
    publish: true
    bind_ips: [0.0.0.0]
    registry: registry:4443
    repository: my/kamal-proxy
    version: v0.9.2
    options: {memory: 512m}
sshkit: {max_concurrent_starts: 10, pool_idle_timeout: 300, dns_retries: 3}
boot: {limit: 25%, wait: 10, parallel_roles: true}
logging: {driver: json-file, options: {max-size: 100m}}
aliases: {console: app exec -i --reuse "bin/rails console", staging_deploy: deploy -d staging}
x-anchors: {anything: [1, 2]}
"""


def error_of(raw, extension_keys=None) -> str:
    with pytest.raises(ConfigurationError) as info:
        validate(raw, extension_keys or {})
    return str(info.value)


def test_schema_is_valid_draft_2020_12():
    from jsonschema import Draft202012Validator

    assert kamal_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(kamal_schema())
    assert SCHEMA_PATH.name == "kamal.json"


def test_every_documented_key_is_accepted():
    raw = load_yaml(KITCHEN_SINK, "deploy.yml")
    assert set(raw) - {"x-anchors"} == kamal_keys()  # the kitchen sink has every top-level key
    assert validate(raw) is None  # accepted: no error raised
    # ...and validate() checks each of those keys, so the acceptance means something: a value of the wrong
    # type is refused, naming the key. (hooks_output takes any value here, as in Kamal 2.11.)
    for key in sorted(kamal_keys() - {"hooks_output"}):
        value = raw[key]
        wrong = 12345 if isinstance(value, (dict, list)) else [value]
        assert error_of({**raw, key: wrong}).startswith(f"{key}: should be "), key


def test_top_level_keys_of_kamal_2_11():
    assert kamal_keys() == {
        "service", "image", "labels", "volumes", "registry", "servers", "env", "asset_path", "hooks_path",
        "hooks_output", "secrets_path", "error_pages_path", "require_destination", "primary_role",
        "allow_empty_roles", "retain_containers", "minimum_version", "readiness_delay", "deploy_timeout",
        "drain_timeout", "run_directory", "ssh", "builder", "accessories", "proxy", "sshkit", "boot", "logging",
        "aliases",
    }


@pytest.mark.parametrize(("extra", "message"), [
    ({"foo": 1, "bar": 2}, "unknown keys: foo, bar"),
    ({"servers": {"web": {"hosts": ["h"], "x-foo": 1}}}, "servers/web: unknown key: x-foo"),
    ({"env": {"FOO": [1]}}, "env/FOO: should be a string"),
    ({"builder": {"arch": {"a": 1}}}, "builder/arch: should be an array or a string"),
    ({"builder": {}}, "builder: Builder arch not set"),
    ({"builder": {"arch": "  "}}, "builder: Builder arch not set"),
    ({"builder": {"arch": "amd64", "local": False, "remote": ""}},
     "builder: Cannot disable local builds, no remote is set"),
    ({"registry": {"password": "p"}}, "registry/username: is required"),
    ({"registry": {"username": "u"}}, "registry/password: is required"),
    ({"registry": {"username": 5, "password": "p"}},
     "registry/username: should be a string or an array with one string (for secret lookup)"),
    ({"registry": {"server": "localhost:5555"}, "servers": {"web": {"hosts": "h"}}},
     "servers/web/hosts: should be an array"),
    ({"servers": [{}]}, "servers/0: multiple hosts found"),
    ({"hooks_output": {"pre-deploy": None}}, "hooks_output/pre-deploy: should be a string or a symbol"),
    ({"proxy": {"ssl": {}, "host": ""}}, "proxy: Must set a host to enable automatic SSL"),
    ({"accessories": {"db": {"image": "x", "host": "h", "labels": {"role": "x", "service": "y"}}}},
     "accessories/db/labels/role: invalid label. destination, role, and service are reserved labels"),
    ({"env": {"secret": ["A"], "B": 1, "C": 2}}, "env: unknown keys: B, C"),
    ({"env": {"tags": {"t": {"clear": {"A": 1}, "foo": 1}}}}, "env/tags/t: unknown key: foo"),
])
def test_messages(extra, message):
    assert error_of({**BASE, **extra}) == message


def test_missing_registry_and_builder_are_checked_as_empty():
    raw = {key: value for key, value in BASE.items() if key not in ("registry", "builder")}
    assert error_of(raw) == "registry/username: is required"
    assert "registry" not in raw  # the defaults went into a copy


def test_non_string_keys_print_as_ruby_does():
    assert error_of({**BASE, 1: 2}) == "unknown key: 1"
    assert error_of({**BASE, True: 2}) == "unknown key: true"
    assert error_of({**BASE, "env": {1: [1]}}) == "env/1: should be a string"


def test_recursive_and_deep_documents_are_errors_not_crashes():
    loop: list = []
    loop.append(loop)
    assert "recursive" in error_of({**BASE, "volumes": loop})
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert "nested too deeply" in error_of({**BASE, "volumes": deep})


def test_validate_leaves_the_input_alone():
    raw = copy.deepcopy(BASE)
    validate(raw)
    assert raw == BASE


# -- plugin-owned top-level keys

WINDOW = ConfigKey("deploy_window", {
    "type": "object",
    "properties": {"start": {"type": "string"}, "days": {"type": "array", "items": {"type": "integer"}}},
    "required": ["start"],
    "additionalProperties": False,
}, default={"start": "09:00"})


def test_extension_keys_are_accepted_and_validated():
    keys = {"deploy_window": WINDOW}
    validate({**BASE, "deploy_window": {"start": "09:00", "days": [1, 2]}}, keys)
    assert error_of({**BASE, "deploy_window": {"start": "9", "days": [1, "x"]}}, keys) == \
        "deploy_window/days/1: 'x' is not of type 'integer'"
    assert error_of({**BASE, "deploy_window": {}}, keys) == "deploy_window: 'start' is a required property"
    assert error_of({**BASE, "deploy_window": 3}, keys) == "deploy_window: 3 is not of type 'object'"


def test_extension_keys_are_unknown_without_their_plugin():
    assert error_of({**BASE, "deploy_window": {}}) == "unknown key: deploy_window"


def test_kamal_errors_come_before_extension_errors():
    keys = {"deploy_window": WINDOW}
    assert error_of({**BASE, "deploy_window": 3, "boot": {"wait": "x"}}, keys) == "boot/wait: should be an integer"


def test_extension_key_colliding_with_kamal_is_an_error():
    with pytest.raises(PluginError, match="builder"):
        validate(BASE, {"builder": ConfigKey("builder", {"type": "object"})})


def test_invalid_plugin_schema_is_a_plugin_error():
    with pytest.raises(PluginError, match="deploy_window"):
        validate({**BASE, "deploy_window": 1}, {"deploy_window": ConfigKey("deploy_window", {"type": "nope"})})


# -- against the real Kamal

DOC_SECTIONS = ["accessory", "alias", "boot", "builder", "env", "logging", "proxy", "registry", "role", "servers",
                "ssh", "sshkit"]


def _without_placeholders(value):
    """`...` in Kamal's examples stands for a whole section."""
    if value == "...":
        return {}
    if isinstance(value, dict):
        return {key: _without_placeholders(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_placeholders(item) for item in value]
    return value


@pytest.fixture(scope="module")
def kamal_docs() -> dict[str, str]:
    if KAMAL is None:
        pytest.skip("the reference kamal is not installed")

    def docs(section: str) -> str:
        cached = CACHE / f"docs-{section}.txt" if CACHE else None
        if cached and cached.exists():
            return cached.read_text()
        text = subprocess.run([KAMAL, "docs", section], capture_output=True, text=True, check=True).stdout
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(text)
        return text

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(DOC_SECTIONS)) as pool:
        return dict(zip(DOC_SECTIONS, pool.map(docs, DOC_SECTIONS), strict=True))


@pytest.mark.kamal
@pytest.mark.parametrize("section", DOC_SECTIONS)
def test_documented_examples_have_no_unknown_keys(section, kamal_docs):
    """Each example in `kamal docs <section>` uses only keys the schema knows."""
    documents = [yaml.safe_load(chunk) for chunk in _example_chunks(kamal_docs[section])]
    assert documents
    for document in documents:
        raw = {**BASE, **_without_placeholders(document)}
        try:
            validate(raw)
        except ConfigurationError as error:
            assert "unknown key" not in str(error), (document, str(error))


def _example_chunks(text: str) -> list[str]:
    """The YAML examples of a docs page: each run of uncommented lines starting at column 0."""
    chunks, current = [], []
    for line in text.splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        if not line.startswith(" ") and current:
            chunks.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        chunks.append("\n".join(current))
    return chunks
