"""kamalpy.config.schema_check: the same verdict as jsonschema, so that a valid config skips jsonschema's import."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_config import KEY_NAMES, WORDS, mutated, values
from test_invalid_configs import CASES
from test_schema import BASE, KITCHEN_SINK

from kamalpy.config import schema, schema_check
from kamalpy.config.loader import load_yaml
from kamalpy.errors import ConfigurationError

CONFIGS = Path(__file__).parent / "configs"


def verdicts(raw) -> tuple[bool, bool]:
    """(schema_check's, jsonschema's) verdict on what validate() checks for ``raw``."""
    try:
        instance, _ = schema.prepared(raw, {})
    except ConfigurationError:  # too deep or recursive: refused before either check
        return True, True
    return schema_check.is_valid(schema._inlined_schema(), instance), schema._kamal_validator().is_valid(instance)


def test_the_kamal_schema_uses_only_checked_keywords():
    # Otherwise every configuration would pay for jsonschema's import again.
    assert schema_check.supported(schema._inlined_schema())


@pytest.mark.parametrize("unknown", [{"uniqueItems": True}, {"format": "email"}, {"type": "nope"},
                                     {"properties": {"a": {"dependentRequired": {}}}}, {"$ref": "#/x"}])
def test_other_keywords_are_not_guessed(unknown):
    assert not schema_check.supported({"type": "object", **unknown})


def test_documented_configs_and_kitchen_sink_are_valid_for_both():
    documents = [yaml.safe_load(KITCHEN_SINK), BASE]
    documents += [load_yaml(path.read_text(), str(path)) for path in sorted(CONFIGS.glob("*/config/deploy.yml"))
                  if "<%" not in path.read_text()]
    for document in documents:
        assert verdicts(document) == (True, True), document


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_config_cases_agree(name):
    document = load_yaml(CASES[name][0], "deploy.yml")
    if isinstance(document, dict):
        fast, slow = verdicts(document)
        assert fast == slow


# The keywords only kamalpy's own keys use (not in the kitchen sink), at and beside their limits.
REGISTRY = {"username": "u", "password": "p"}
EDGES = [
    ({"registry": {**REGISTRY, "local_image": ""}}, False),
    ({"registry": {**REGISTRY, "local_image": "x"}}, True),
    ({"registry": {**REGISTRY, "strategy": ""}}, False),
    ({"registry": {**REGISTRY, "password": []}}, False),
    ({"registry": {**REGISTRY, "password": ["a", "b"]}}, False),
    ({"registry": {**REGISTRY, "password": ["a"]}}, True),
    ({"proxy": {"caddy": {"admin_port": 0}}}, False),
    ({"proxy": {"caddy": {"admin_port": 1}}}, True),
    ({"proxy": {"caddy": {"admin_port": 65535}}}, True),
    ({"proxy": {"caddy": {"admin_port": 65536}}}, False),
    ({"proxy": {"caddy": {"admin_port": 80.0}}}, False),
    ({"proxy": {"caddy": {"admin_port": True}}}, False),
    ({"ssh": {"connect_timeout": 0}}, False),
    ({"ssh": {"connect_timeout": 1}}, True),
    ({"x-anchor": {"anything": [1]}}, True),
    ({"y-anchor": 1}, False),
]


@pytest.mark.parametrize(("extra", "valid"), EDGES)
def test_limits_agree(extra, valid):
    assert verdicts({**BASE, **extra}) == (valid, valid)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


SINK = yaml.safe_load(KITCHEN_SINK)
SINK_PATHS = [path for path in _paths(SINK) if path]


def _replaced(path, value):
    document = copy.deepcopy(SINK)
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return document


def _added(path, key, value):
    document = copy.deepcopy(SINK)
    node = document
    for part in path:
        node = node[part]
    node[key] = value
    return document


def _node(path):
    node = SINK
    for part in path:
        node = node[part]
    return node


# Every documented key with one value changed to anything, or one key added to any mapping (reserved
# label and alias names among them): reaches every node of the schema.
NEW_KEYS = st.sampled_from([*KEY_NAMES, *WORDS, "role", "destination", "deploy", "my_alias", "Bad", "a\n"])
sink_mutations = (st.builds(_replaced, st.sampled_from(SINK_PATHS), values)
                  | st.builds(_added, st.sampled_from([p for p in _paths(SINK) if isinstance(_node(p), dict)]),
                              NEW_KEYS | st.text(max_size=6), values))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sink_mutations | mutated)
def test_random_configs_agree(document):
    fast, slow = verdicts(document)
    assert fast == slow


def test_jsonschema_is_imported_only_for_an_invalid_config():
    code = ("import sys, kamalpy.config.schema as s; assert 'jsonschema' not in sys.modules\n"
            "valid = {'service': 'a', 'image': 'b', 'registry': {'server': 'localhost:5000'},"
            " 'builder': {'arch': 'amd64'}, 'servers': ['h']}\n"
            "s.validate(valid); assert 'jsonschema' not in sys.modules\n"
            "for bad, message in (({**valid, 'foo': 1}, 'unknown key: foo'),"
            " ({**valid, 'servers': 'h'}, 'servers: should be an array or a hash')):\n"
            "    try: s.validate(bad)\n"
            "    except Exception as e: assert str(e) == message, e\n"
            "    else: raise AssertionError(bad)\n"
            "assert 'jsonschema' in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
