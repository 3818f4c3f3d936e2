"""Schema validation of the raw configuration, with Kamal 2.11's messages and error order.

The keys and types live in one JSON Schema document, ``schema/kamal.json`` (draft 2020-12), checked with
the ``jsonschema`` package. Kamal stops at the first problem it meets while walking the config, so we
collect every jsonschema error and report the one Kamal would meet first:

- a mapping's own type, then its unknown keys, then its keys in the user's order (roles by name);
- ``x-kamal-section`` nodes (the ``...`` entries of Kamal's doc examples: sections, role env/proxy/...)
  are type-checked with their parent but walked afterwards, in Kamal's construction order;
- ``x-kamal-phase`` nodes and ``allOf`` branches are checked after their parent's keys, in phase order.

Kamal's checks beyond keys and types (accessory host keys, restart policies, reserved labels, proxy
host/SSL rules, ...) belong to :mod:`kamalpy.config.model`, which runs after this.

``jsonschema`` costs ~90 ms to import (more than the rest of ``kamalpy config``), so a valid configuration
is recognised without it (:mod:`kamalpy.config.schema_check`) and it is imported only to word the errors
of an invalid one, or to check a plugin's config key.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamalpy.config import schema_check
from kamalpy.errors import ConfigurationError, PluginError

if TYPE_CHECKING:  # pragma: no cover
    from jsonschema.exceptions import ValidationError

    from kamalpy.plugin import ConfigKey

SCHEMA_PATH = Path(__file__).with_name("schema") / "kamal.json"
MAX_DEPTH = 100  # deeper YAML is certainly not a deploy config (and would exhaust jsonschema's recursion)

_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "boolean": "a boolean", "object": "a hash", "hash": "a hash",
    "array": "an array", "symbol": "a symbol", "number": "a number", "null": "nil",
}
# Terminal ranks: a node's type, then its unknown keys, come before its children; other checks after.
_TYPE_RANK, _UNKNOWN_RANK, _REQUIRED_RANK, _AFTER_CHILDREN = -3.0, -2.0, -4.0, 0.5


@functools.cache
def kamal_schema() -> dict[str, Any]:
    """The JSON Schema document of Kamal's configuration (as written, with ``$ref``s)."""
    with SCHEMA_PATH.open(encoding="utf-8") as file:
        return json.load(file)


def kamal_keys() -> frozenset[str]:
    """Kamal's top-level configuration keys."""
    return frozenset(kamal_schema()["properties"])


@functools.cache
def _inlined_schema() -> dict[str, Any]:
    """The schema with every local ``$ref`` replaced by its target, so each node carries its annotations."""
    document = kamal_schema()

    def resolve(pointer: str) -> Any:
        node: Any = document
        for part in pointer.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        result: dict[str, Any] = {}
        if "$ref" in node:
            result.update(inline(resolve(node["$ref"])))
        for key, value in node.items():
            if key in ("$ref", "$defs"):
                continue
            if key in ("const", "enum", "default", "$comment"):
                result[key] = value
            else:
                result[key] = inline(value)
        return result

    return inline(document)


@functools.cache
def _fast_check_usable() -> bool:
    return schema_check.supported(_inlined_schema())


def _fast_check_passes(instance: Any) -> bool:
    """True when the configuration is certainly valid (see :mod:`kamalpy.config.schema_check`)."""
    return _fast_check_usable() and schema_check.is_valid(_inlined_schema(), instance)


@functools.cache
def _kamal_validator() -> Any:
    from jsonschema import Draft202012Validator, validators

    # Ruby's Integer: 3.0 is a Float there, so it is no integer (jsonschema's default says it is).
    type_checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    validator_class = validators.extend(Draft202012Validator, type_checker=type_checker)
    return validator_class(_inlined_schema())


@functools.cache
def _plugin_validator(name: str, schema_json: str) -> Any:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    schema = json.loads(schema_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise PluginError(f"The schema of config key '{name}' is invalid: {error.message}") from None
    return Draft202012Validator(schema)


def validate(raw: Mapping[str, Any], extension_keys: Mapping[str, ConfigKey] | None = None) -> None:
    """Raise ConfigurationError with the first problem Kamal 2.11 would report (keys and types).

    ``extension_keys`` are plugin-owned top-level keys: accepted at the root and validated against
    their own schema (message ``<key>/<path>: <problem>``).
    """
    extension_keys = extension_keys or {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError("Configuration must be a mapping")
    clashes = sorted(set(extension_keys) & kamal_keys())
    if clashes:
        raise PluginError(f"Plugin config key '{clashes[0]}' collides with Kamal's key of the same name")

    instance, extensions = prepared(raw, extension_keys)
    # A valid configuration needs only a verdict: jsonschema (its import costs more than the rest of
    # `kamalpy config`) is asked only for the messages of an invalid one.
    if not _fast_check_passes(instance):
        errors = list(_kamal_validator().iter_errors(instance))
        if errors:
            located = [_locate(error, instance) for error in errors]
            raise ConfigurationError(min(located, key=lambda item: item[0])[1])

    for name, value in extensions.items():
        key = extension_keys[name]
        _validate_extension(name, key.schema, value)


def prepared(raw: Mapping[str, Any], extension_keys: Mapping[str, ConfigKey]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the Kamal schema checks, the plugin keys' values): a JSON-like copy with the defaults filled in."""
    instance = _normalize(raw)
    extensions = {name: instance.pop(name) for name in list(instance) if name in extension_keys}
    for name, prop in kamal_schema()["properties"].items():
        # Kamal builds these sections from `|| {}`, so a missing one is checked as empty.
        if "default" in prop and name not in instance:
            instance[name] = copy.deepcopy(prop["default"])
    return instance, extensions


def _validate_extension(name: str, schema: Mapping[str, Any], value: Any) -> None:
    from jsonschema.exceptions import best_match

    validator = _plugin_validator(name, json.dumps(schema, sort_keys=True, default=str))
    error = best_match(validator.iter_errors(value))
    if error is not None:
        path = "/".join([name, *(str(part) for part in error.absolute_path)])
        raise ConfigurationError(f"{path}: {error.message}")


def _ruby_str(value: Any) -> str:
    """How Ruby prints a value in a message (``true``, ``1.5``, ``2024-01-01``, ``""`` for nil)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def _display(key: str) -> str:
    """A key or value as Kamal prints it: the loader keeps Ruby symbols as ``":name"``, Ruby prints ``name``."""
    return key[1:] if key.startswith(":") and len(key) > 1 else key


def _normalize(value: Any, depth: int = 0, seen: tuple[int, ...] = ()) -> Any:
    """A JSON-like copy: string keys (as Ruby prints them), lists for sequences; refuses cycles and depth."""
    if isinstance(value, (Mapping, list, tuple)):
        if depth > MAX_DEPTH:
            raise ConfigurationError("Configuration is nested too deeply")
        if id(value) in seen:
            raise ConfigurationError("Configuration contains a recursive YAML alias")
        seen = (*seen, id(value))
        if isinstance(value, Mapping):
            return {_ruby_str(key): _normalize(item, depth + 1, seen) for key, item in value.items()}
        return [_normalize(item, depth + 1, seen) for item in value]
    return value


class _Walk:
    """Follows one jsonschema error from the root, building Kamal's order key and the message path."""

    def __init__(self, instance: Any) -> None:
        self.instance = instance
        self.key: list[tuple[float, float]] = []
        self.path: list[str] = []
        self.pending: float | None = None  # phase of an allOf branch, for the next step
        self.section_step = False  # the last step entered an x-kamal-section node

    def step(self, child: Any, parent_node: Mapping[str, Any], child_node: Any) -> None:
        container = self.instance
        if isinstance(container, dict):
            keys = list(container)
            if parent_node.get("x-kamal-order") == "sorted":
                keys.sort()
            position = keys.index(child) if child in keys else len(keys)
        else:
            position = child if isinstance(child, int) else 0
        node = child_node if isinstance(child_node, dict) else {}
        self.section_step = False
        if self.pending is not None:
            phase, self.pending = self.pending, None
        elif "x-kamal-phase" in node:
            phase = node["x-kamal-phase"]
        elif "x-kamal-section" in node:
            phase, self.section_step = node["x-kamal-section"], True
        else:
            phase = 0
        self.key.append((phase, position))
        self.path.append(_display(_ruby_str(child)))
        try:
            self.instance = container[child]
        except (KeyError, IndexError, TypeError):
            self.instance = None

    def terminal(self, rank: float, index: float = 0) -> None:
        if self.pending is not None:
            rank, self.pending = self.pending, None
        self.key.append((rank, index))


def _locate(error: ValidationError, instance: Any) -> tuple[list[tuple[float, float]], str]:
    """(order key, Kamal's message) of one jsonschema error."""
    walk = _Walk(instance)
    node: Any = _inlined_schema()
    tokens = list(error.absolute_schema_path)
    path = list(error.absolute_path)
    keyword = tokens[-1]
    i = 0
    while i < len(tokens) - 1:
        token = tokens[i]
        if token in ("properties", "patternProperties"):
            child_node = node[token][tokens[i + 1]]
            walk.step(path.pop(0), node, child_node)
            node, i = child_node, i + 2
            continue
        if token in ("additionalProperties", "items"):
            child_node = node[token]
            walk.step(path.pop(0), node, child_node)
            node, i = child_node, i + 1
            continue
        if token == "propertyNames":  # the failing "instance" is the key itself
            walk.step(error.instance, node, {})
            node, i = node[token], i + 1
            continue
        if token in ("allOf", "anyOf", "oneOf"):
            node, i = node[token][tokens[i + 1]], i + 2
        elif token in ("then", "else", "not"):
            node, i = node[token], i + 1
        else:  # pragma: no cover - a keyword kamal.json does not use for nesting
            break
        if isinstance(node, dict) and "x-kamal-phase" in node:
            walk.pending = node["x-kamal-phase"]

    messages = node.get("x-kamal-messages", {}) if isinstance(node, dict) else {}
    keyword_index = float(list(node).index(keyword)) if isinstance(node, dict) and keyword in node else 0.0
    if keyword == "type":
        if walk.section_step and walk.key:  # checked by the parent's walk, as the `...` in Kamal's example
            walk.key[-1] = (0, walk.key[-1][1])
        walk.terminal(_TYPE_RANK)
        message = _type_message(node)
    elif keyword == "additionalProperties":
        walk.terminal(_UNKNOWN_RANK)
        message = _unknown_keys_message(node, error.instance)
    elif keyword == "required":
        missing = next((name for name in error.validator_value
                        if error.message == f"{name!r} is a required property"), str(error.validator_value[0]))
        if "required" in messages:
            walk.terminal(_AFTER_CHILDREN, keyword_index)
            message = messages["required"]
        else:
            child_node = node.get("properties", {}).get(missing, {})
            walk.step(missing, node, child_node)
            walk.terminal(_REQUIRED_RANK)
            child_messages = child_node.get("x-kamal-messages", {}) if isinstance(child_node, dict) else {}
            message = child_messages.get("required", "is required")
    else:
        walk.terminal(_AFTER_CHILDREN, keyword_index)
        spec = messages.get(keyword, error.message)
        if isinstance(spec, dict):
            for _ in range(spec.get("at", "").count("..")):
                if walk.path:
                    walk.path.pop()
            spec = spec["message"]
        message = spec.replace("{value}", _display(_ruby_str(error.instance)))
    prefix = "/".join(walk.path)
    return walk.key, f"{prefix}: {message}" if prefix else message


def _type_message(node: Mapping[str, Any]) -> str:
    names = node.get("x-kamal-types") or node.get("type")
    if isinstance(names, str):
        names = [names]
    words = list(dict.fromkeys(_TYPE_WORDS.get(name, name) for name in names))
    return f"should be {' or '.join(words)}"


def _unknown_keys_message(node: Mapping[str, Any], instance: Mapping[str, Any]) -> str:
    known = node.get("properties", {})
    patterns = [re.compile(pattern) for pattern in node.get("patternProperties", {})]
    unknown = [key for key in instance if key not in known and not any(p.search(key) for p in patterns)]
    return f"unknown {'key' if len(unknown) == 1 else 'keys'}: {', '.join(_display(key) for key in unknown)}"
