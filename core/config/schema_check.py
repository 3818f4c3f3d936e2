"""A yes/no check of an instance against the inlined Kamal schema, without importing ``jsonschema``.

``jsonschema`` (with ``referencing``, ``attrs`` and ``rpds``) costs more to import than the rest of
``kamalpy config`` together. A valid configuration needs no message, only the verdict, so
:func:`kamalpy.config.schema.validate` asks this module first and goes to ``jsonschema`` (and its exact
errors) only when this check fails or cannot decide. The verdict must therefore be ``jsonschema``'s
``Draft202012Validator.is_valid`` with kamalpy's integer type, for each keyword below; a schema with any
other keyword (not an annotation) is "cannot decide" (``None``), never a guess.
tests/test_schema_check.py compares the two on every configuration under tests/ and on generated ones.
"""

from __future__ import annotations

import functools
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

# Annotations: jsonschema ignores them when validating ("then"/"else" count only beside "if").
_IGNORED = frozenset({"$comment", "$schema", "$id", "$anchor", "title", "description", "default", "examples",
                      "deprecated", "readOnly", "writeOnly", "then", "else"})
_CHECKED = frozenset({"type", "properties", "patternProperties", "additionalProperties", "propertyNames", "required",
                      "minProperties", "maxProperties", "items", "minItems", "maxItems", "enum", "const", "pattern",
                      "minLength", "minimum", "maximum", "not", "anyOf", "allOf", "oneOf", "if"})

_TYPES = {
    "string": lambda value: isinstance(value, str),
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
    # Ruby's Integer (kamalpy's redefinition): 3.0 is no integer, True is none either.
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, numbers.Number) and not isinstance(value, bool),
}


def supported(schema: Any) -> bool:
    """Whether every keyword of ``schema`` (and its subschemas) is one :func:`is_valid` implements."""
    return _supported(schema)


def _supported(node: Any) -> bool:
    if isinstance(node, bool):
        return True
    if not isinstance(node, dict):
        return False
    for key, value in node.items():
        if key.startswith("x-") or key in _IGNORED:
            continue
        if key not in _CHECKED:
            return False
        if key == "type" and not all(name in _TYPES for name in ([value] if isinstance(value, str) else value)):
            return False
        if key in ("properties", "patternProperties") and not all(_supported(sub) for sub in value.values()):
            return False
        if key in ("additionalProperties", "propertyNames", "items", "not") and not _supported(value):
            return False
        if key in ("anyOf", "allOf", "oneOf") and not all(_supported(sub) for sub in value):
            return False
        if key == "if" and not all(_supported(node.get(name, True)) for name in ("if", "then", "else")):
            return False
    return True


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def is_valid(schema: Any, instance: Any) -> bool:
    """``jsonschema``'s verdict for a :func:`supported` schema (draft 2020-12, kamalpy's integer)."""
    if schema is True:
        return True
    if schema is False:
        return False
    for key, value in schema.items():
        check = _KEYWORDS.get(key)
        if check is not None and not check(value, instance, schema):
            return False
    return True


def _equal(one: Any, two: Any) -> bool:
    """jsonschema's ``equal``: True is not 1, sequences and mappings compared item by item."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_equal(i, j) for i, j in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(key in two and _equal(one[key], two[key]) for key in one)
    return bool(_unbool(one) == _unbool(two))


_TRUE, _FALSE = object(), object()


def _unbool(value: Any) -> Any:
    return _TRUE if value is True else _FALSE if value is False else value


def _type(types: Any, instance: Any, _schema: Any) -> bool:
    return any(_TYPES[name](instance) for name in ([types] if isinstance(types, str) else types))


def _properties(properties: Any, instance: Any, _schema: Any) -> bool:
    if not isinstance(instance, dict):
        return True
    return all(is_valid(sub, instance[name]) for name, sub in properties.items() if name in instance)


def _pattern_properties(patterns: Any, instance: Any, _schema: Any) -> bool:
    if not isinstance(instance, dict):
        return True
    return all(is_valid(sub, value) for pattern, sub in patterns.items()
               for key, value in instance.items() if _regex(pattern).search(key))


def _additional_properties(additional: Any, instance: Any, schema: Any) -> bool:
    if not isinstance(instance, dict):
        return True
    known = schema.get("properties", {})
    patterns = [_regex(pattern) for pattern in schema.get("patternProperties", {})]
    extras = [key for key in instance if key not in known and not any(p.search(key) for p in patterns)]
    if isinstance(additional, dict):
        return all(is_valid(additional, instance[key]) for key in extras)
    return bool(additional) or not extras


def _property_names(names: Any, instance: Any, _schema: Any) -> bool:
    return not isinstance(instance, dict) or all(is_valid(names, key) for key in instance)


def _required(required: Any, instance: Any, _schema: Any) -> bool:
    return not isinstance(instance, dict) or all(name in instance for name in required)


def _items(items: Any, instance: Any, _schema: Any) -> bool:
    return not isinstance(instance, list) or all(is_valid(items, item) for item in instance)


def _if(condition: Any, instance: Any, schema: Any) -> bool:
    branch = "then" if is_valid(condition, instance) else "else"
    return branch not in schema or is_valid(schema[branch], instance)


def _one_of(subschemas: Any, instance: Any, _schema: Any) -> bool:
    return sum(1 for sub in subschemas if is_valid(sub, instance)) == 1


def _is_number(value: Any) -> bool:
    return _TYPES["number"](value)


_KEYWORDS = {
    "type": _type,
    "properties": _properties,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "propertyNames": _property_names,
    "required": _required,
    "minProperties": lambda limit, instance, _s: not isinstance(instance, dict) or len(instance) >= limit,
    "maxProperties": lambda limit, instance, _s: not isinstance(instance, dict) or len(instance) <= limit,
    "items": _items,
    "minItems": lambda limit, instance, _s: not isinstance(instance, list) or len(instance) >= limit,
    "maxItems": lambda limit, instance, _s: not isinstance(instance, list) or len(instance) <= limit,
    "enum": lambda values, instance, _s: any(_equal(value, instance) for value in values),
    "const": lambda value, instance, _s: _equal(instance, value),
    "pattern": lambda pattern, instance, _s: not isinstance(instance, str) or bool(_regex(pattern).search(instance)),
    "minLength": lambda limit, instance, _s: not isinstance(instance, str) or len(instance) >= limit,
    "minimum": lambda limit, instance, _s: not _is_number(instance) or not instance < limit,
    "maximum": lambda limit, instance, _s: not _is_number(instance) or not instance > limit,
    "not": lambda sub, instance, _s: not is_valid(sub, instance),
    "anyOf": lambda subs, instance, _s: any(is_valid(sub, instance) for sub in subs),
    "allOf": lambda subs, instance, _s: all(is_valid(sub, instance) for sub in subs),
    "oneOf": _one_of,
    "if": _if,
}
