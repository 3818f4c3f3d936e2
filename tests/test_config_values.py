"""Values Kamal puts into the remote shell unquoted: what passes, what is refused, and that nothing unsafe passes.

Each refused value must fail when the configuration loads, naming its key; every value of the kind's class
must be one plain shell word (so Kamal's exact string can never run a command), and realistic values of
every kind must still load (the dry-run parity and differential tests check their strings).
"""

from __future__ import annotations

import json
import os
import re
import shlex

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kamalpy.config import values
from kamalpy.config.model import Configuration
from kamalpy.errors import ConfigurationError

BASE = {"service": "app", "image": "a/b", "registry": {"username": "u", "password": "p"},
        "builder": {"arch": "amd64"}, "servers": ["1.1.1.1"]}
ACCESSORY = {"image": "mysql:8.0", "host": "1.1.1.5"}
KINDS = {name: kind for name, kind in vars(values).items() if isinstance(kind, values.Kind)}
HOSTILE = ["a;touch /tmp/x", "$(id)", "`id`", "a b", "a|b", "a&&b", "a\nb", "-oProxyCommand=x", "a'b", 'a"b',
           "a>b", "*", "a{b,c}", "a\\b"]


@pytest.fixture(autouse=True)
def _empty_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no secrets files, no hooks
    monkeypatch.setenv("VERSION", "abc123")


def load(**changes) -> Configuration:
    raw = {**BASE, **changes}
    return Configuration(yaml.safe_load(yaml.safe_dump(raw)))


def accessory(**settings) -> dict:
    return {"accessories": {"db": {**ACCESSORY, **settings}}}


# (the key named in the message, the configuration change putting `value` there)
PLACES = [
    ("image", lambda v: {"image": v}),
    ("registry/server", lambda v: {"registry": {"server": v, "username": "u", "password": "p"}}),
    ("servers/web/hosts", lambda v: {"servers": [v]}),
    ("servers", lambda v: {"servers": {"web": ["1.1.1.1"], v: ["1.1.1.2"]}}),
    ("volumes/0", lambda v: {"volumes": [v]}),
    ("labels", lambda v: {"labels": {v: "x"}}),
    ("env", lambda v: {"env": {v: "x"}}),
    ("env/clear", lambda v: {"env": {"clear": {v: "x"}}}),
    ("servers/web/options", lambda v: {"servers": {"web": {"hosts": ["1.1.1.1"], "options": {v: "x"}}}}),
    ("logging/options", lambda v: {"logging": {"options": {v: "x"}}}),
    ("asset_path", lambda v: {"asset_path": v}),
    ("proxy/run/registry", lambda v: {"proxy": {"run": {"registry": v}}}),
    ("proxy/run/repository", lambda v: {"proxy": {"run": {"repository": v}}}),
    ("proxy/run/version", lambda v: {"proxy": {"run": {"version": v}}}),
    ("proxy/run/bind_ips/0", lambda v: {"proxy": {"run": {"bind_ips": [v]}}}),
    ("accessories/db/image", lambda v: accessory(image=v)),
    ("accessories/db/service", lambda v: accessory(service=v)),
    ("accessories/db/hosts", lambda v: accessory(host=v)),
    ("accessories/db/registry/server", lambda v: accessory(registry={"server": v, "username": "u", "password": "p"})),
    ("accessories/db/volumes/0", lambda v: accessory(volumes=[v])),
    ("accessories/db/labels", lambda v: accessory(labels={v: "x"})),
    ("accessories/db/files/0", lambda v: accessory(files=[f"my.cnf:{v}"])),
    ("accessories/db/directories/0", lambda v: accessory(directories=[f"{v}:/data"])),
    ("accessories/db/files/0/mode", lambda v: accessory(files=[{"local": "a", "remote": "/a", "mode": v}])),
    ("accessories/db/files/0/owner", lambda v: accessory(files=[{"local": "a", "remote": "/a", "owner": v}])),
]


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize(("key", "place"), PLACES, ids=[key for key, _ in PLACES])
def test_unsafe_values_are_refused_naming_the_key(key, place, hostile):
    with pytest.raises(ConfigurationError) as refused:
        load(**place(hostile))
    message = str(refused.value)
    assert message.startswith(f"{key}: "), message
    assert "cannot be passed safely to a remote shell" in message


REALISTIC = {
    "image": ["dhh/app", "ghcr.io/basecamp/app", "registry:5000/team/app", "app", "mysql:8.0",
              "postgres@sha256:0123abcd"],
    "registry/server": ["ghcr.io", "localhost:5000", "registry.digitalocean.com/team", "123.dkr.ecr.aws.com"],
    "servers/web/hosts": ["1.1.1.1", "web-1.example.com", "2001:db8::1", "fe80::1%eth0", "deploy@host"],
    "volumes/0": ["/data:/data", "data:/rails/storage", "$PWD/x:/x:ro,z", "${HOME}/y:/y", "~/z:/z",
                  "/var/run/docker.sock:/var/run/docker.sock"],
    "labels": ["traefik.http.routers.app.rule", "com.example/team", "backup"],
    "env": ["RAILS_ENV", "my.var", "A_1"],
    "servers/web/options": ["cap-add", "memory", "add-host"],
    "accessories/db/files/0": ["my.cnf", "conf.d/extra.cnf", "docker-entrypoint-initdb.d/setup.sql"],
    "accessories/db/files/0/mode": ["0644", "755", "u+rwx,g-w"],
    "accessories/db/files/0/owner": ["999:999", "mysql", "www-data:www-data"],
}


@pytest.mark.parametrize(("key", "value"), [(key, value) for key, found in REALISTIC.items() for value in found])
def test_realistic_values_load(key, value):
    place = dict(PLACES)[key]
    config = load(**place(value))
    assert str(value) in json.dumps(config.raw)  # kept as written


def test_cmd_is_a_shell_command_by_design():
    """``cmd`` is the user's own command: Kamal's string, unchecked beyond its type."""
    config = load(servers={"web": {"hosts": ["1.1.1.1"], "cmd": "bin/jobs && echo $HOME | tee x"}},
                  **accessory(cmd="--character-set-server=utf8mb4; echo `date`"))
    assert config.roles[0].cmd == "bin/jobs && echo $HOME | tee x"


SHELL_SPECIAL = set(" \t\n\r'\"`;&|<>()\\*?[]{}#!")


# Every printable ASCII character, and shell variables, as the pieces of candidate values.
PIECES = [chr(code) for code in range(32, 127)] + ["\n", "\t", "$HOME", "${HOME}", "$(", "${a:-x}", "é"]


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(sorted(KINDS)), st.lists(st.sampled_from(PIECES), min_size=1, max_size=12).map("".join))
def test_every_allowed_value_is_one_plain_shell_word(name, value):
    """Whatever a kind allows is one word to sh, with no command in it and no option for the command."""
    if not KINDS[name].allows(value):
        return
    assert shlex.split(value) == [value]
    assert not value.startswith("-")
    plain = re.sub(values._SHELL_VARIABLE, "", value)  # $NAME / ${NAME}: a variable, never a command
    if KINDS[name] is values.HOST and value.startswith("["):
        plain = plain[1:].replace("]", "", 1)  # [IPv6], as Kamal writes it itself
    assert not set(plain) & SHELL_SPECIAL and "$" not in plain and plain.isascii(), value


def test_no_kind_allows_a_hostile_value():
    for name, kind in KINDS.items():
        for hostile in HOSTILE:
            assert not kind.allows(hostile), (name, hostile)
    assert os.environ["VERSION"] == "abc123"
