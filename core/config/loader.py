"""Read ``config/deploy.yml`` (+ ``deploy.DEST.yml``) the way Kamal 2.11 does, and build the Configuration.

Pipeline: set ``KAMAL_DESTINATION`` -> ERB -> YAML (anchors, merge keys) -> deep-merge the destination
file -> schema -> Kamal's semantic checks -> plugin validation.

The YAML side imitates Ruby's Psych (``YAML.unsafe_load``) rather than PyYAML's YAML 1.1 defaults, because
the two type plain scalars differently (``1:20`` is 4800 in Psych, ``y`` is a string, ``1,000`` is 1000,
``:quiet`` is a symbol, kept as :class:`RubySymbol` ``":quiet"``) and merge ``<<:`` keys in another order.
Dates stay ``datetime.date`` objects: Kamal rejects them where a string is expected, and they print the
same in ``kamal config``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamalpy.errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from kamalpy.cli.options import GlobalOptions
    from kamalpy.config.model import Configuration
    from kamalpy.hooks import Hooks


class RubySymbol(str):
    """A Ruby symbol from the YAML (plain ``:name``), as the string ``":name"``.

    A str subclass, so symbols print and compare as before (``json`` writes it as a string); the type is
    what tells a symbol from the quoted string ``":name"``, which Kamal treats differently (``hooks_output``,
    role hosts).
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        """The symbol's name, as Ruby's ``Symbol#to_s`` gives it (``quiet`` for ``:quiet``)."""
        return str(self[1:])


def read_raw_config(config_file: str | Path, destination: str | None = None) -> dict[str, Any]:
    """The merged, unvalidated configuration mapping (also used to resolve aliases)."""
    from kamalpy.config.values import check_destination

    check_destination(destination)  # it names a file and goes into KAMAL_DESTINATION
    # Kamal sets this before rendering so ERB (and its shell-outs) can read it.
    if destination is None:
        os.environ.pop("KAMAL_DESTINATION", None)
    else:
        os.environ["KAMAL_DESTINATION"] = destination
    path = Path(config_file)
    raw = load_config_file(path)
    if destination is not None:
        raw = deep_merge(raw, load_config_file(destination_file(path, destination)))
    return raw


def destination_file(config_file: Path, destination: str) -> Path:
    """Ruby's ``Pathname#sub_ext(".DEST.yml")``: config/deploy.yml -> config/deploy.DEST.yml."""
    suffix = config_file.suffix
    name = config_file.name[: -len(suffix)] if suffix else config_file.name
    return config_file.with_name(f"{name}.{destination}.yml")


def load_config_file(path: Path) -> dict[str, Any]:
    """One file: ERB, then YAML; the top level must be a mapping."""
    if not path.is_file():
        if path.exists():
            raise ConfigurationError(f"Configuration file {path} is not a file")
        raise ConfigurationError(f"Configuration file not found in {os.path.abspath(path)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"Cannot read configuration file {path}: {error}") from None
    if "<%" in text:  # the ERB modules are imported only for files that use ERB (start-up time)
        from kamalpy.config.erb import render

        text = render(text, str(path), yaml=True)
    data = load_yaml(text, str(path))
    if data is None:
        raise ConfigurationError(f"{path}: the configuration file is empty")
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: the configuration must be a mapping of keys to values, "
                                 f"not {_describe(data)}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """ActiveSupport's ``Hash#deep_merge``: mappings merge recursively, anything else is replaced.

    Returns new dicts along the merged paths, so mappings shared through YAML aliases are not modified.
    """
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _describe(data: Any) -> str:
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return f"the string {data[:40]!r}"
    return f"the value {data!r}"


# ---------------------------------------------------------------------------------------------------------
# YAML with Psych's scalar typing and merge keys. PyYAML is imported on first use (start-up time).

_LOADER: Any = None
_PLAIN_TAG = "tag:kamalpy,2024:plain"  # every untagged plain scalar; typed by _psych_scalar


def load_yaml(text: str, path: str) -> Any:
    """Parse the first YAML document of ``text`` like Psych's ``unsafe_load``; ``None`` when there is none."""
    import yaml

    loader = _loader_class()(text)
    try:
        node = loader.get_node() if loader.check_node() else None
        if node is None:
            return None
        _check_expansion(node, path)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        raise ConfigurationError(_yaml_message(error, path, text)) from None
    except yaml.YAMLError as error:  # pragma: no cover - unmarked errors are rare
        raise ConfigurationError(f"({path}): {error}") from None
    except RecursionError:
        raise ConfigurationError(f"({path}): the YAML nests too deeply") from None
    finally:
        loader.dispose()


MAX_YAML_VALUES = 100_000  # after alias expansion; real configurations have hundreds


def _check_expansion(root: Any, path: str) -> None:
    """Refuse a document whose aliases expand it beyond ``MAX_YAML_VALUES`` (an alias bomb).

    Aliases share one node, so the count is linear in the text: each node's expanded size is computed
    once, depth-first without recursion. Later steps (merging, validation, printing) walk the expanded
    values, which is what an alias bomb makes explode.
    """
    from yaml.nodes import MappingNode, SequenceNode

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the current path from the root: an alias to one of them loops
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, SequenceNode):
            children = node.value
        else:
            sizes[key] = 1
            continue
        if finished:
            open_nodes.discard(key)
            sizes[key] = size = 1 + sum(sizes.get(id(child), 1) for child in children)
            if size > MAX_YAML_VALUES:
                raise ConfigurationError(f"({path}): aliases expand the YAML to more than {MAX_YAML_VALUES:,} "
                                         f"values (at line {node.start_mark.line + 1}); kamalpy refuses it "
                                         "as an alias bomb")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            continue  # an alias inside the value it names: the constructor refuses it, naming the position
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _yaml_message(error: Any, path: str, text: str) -> str:
    """Psych's wording: ``(<file>): <problem> <context> at line L column C``."""
    problem = error.problem or ""
    if problem.startswith("found undefined alias"):
        # libyaml's message lacks the name: read it at the error position.
        mark = error.problem_mark
        found = re.match(r"\*([^\s,\[\]{}]+)", text[mark.index :]) if mark else None
        name = found.group(1) if found else problem.partition("'")[2].rstrip("'")
        problem, context = f"An alias referenced an unknown anchor: {name}", None
    else:
        context = error.context
    mark = error.context_mark or error.problem_mark  # libyaml through Psych reports the context mark
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
    return f"({path}): {' '.join(part for part in (problem, context) if part)}{where}"


def _loader_class() -> Any:
    global _LOADER
    if _LOADER is None:
        _LOADER = _make_loader()
    return _LOADER


def _make_loader() -> Any:
    import yaml
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml, the parser Psych uses too
    # `kamalpy config` dumps raw values with yaml.safe_dump, which refuses str subclasses without this.
    yaml.SafeDumper.add_representer(RubySymbol, yaml.SafeDumper.represent_str)

    class PsychLoader(base):  # type: ignore[misc, valid-type]
        yaml_implicit_resolvers: dict = {}
        yaml_constructors = dict(base.yaml_constructors)

    # One implicit resolver for every plain scalar: typing happens in the constructor, Psych's way.
    PsychLoader.add_implicit_resolver(_PLAIN_TAG, re.compile(""), None)
    PsychLoader.add_implicit_resolver(_PLAIN_TAG, re.compile(""), [""])

    def construct_plain(loader: Any, node: Any) -> Any:
        return _psych_scalar(node.value)

    def construct_str(loader: Any, node: Any) -> str:
        return node.value

    def expect(node: Any, kind: type, name: str) -> None:
        if not isinstance(node, kind):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a {name} node, but found {node.id}", node.start_mark
            )

    def construct_seq(loader: Any, node: Any) -> list:
        expect(node, SequenceNode, "sequence")
        return [loader.construct_object(child, deep=True) for child in node.value]

    def is_merge_key(node: Any) -> bool:
        # Psych merges on a "<<" key unless it is tagged !!str (quoted "<<" merges too).
        return isinstance(node, ScalarNode) and node.value == "<<" and (node.tag == _PLAIN_TAG or bool(node.style))

    def construct_map(loader: Any, node: Any) -> dict:
        expect(node, MappingNode, "mapping")
        result: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            value = loader.construct_object(value_node, deep=True)
            if is_merge_key(key_node) and isinstance(value_node, (MappingNode, SequenceNode)):
                _psych_merge(result, value, isinstance(value_node, SequenceNode))
                continue
            try:
                result[key] = value
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark
                ) from None
        return result

    def construct_other(loader: Any, node: Any) -> Any:
        # Unknown tags (!foo, !ruby/...): plain data, never objects.
        if isinstance(node, MappingNode):
            return construct_map(loader, node)
        if isinstance(node, SequenceNode):
            return construct_seq(loader, node)
        return node.value if node.style else _psych_scalar(node.value)

    def checked(constructor: Any) -> Any:
        # Explicit tags with bad values (`!!int x`) become positioned YAML errors, not tracebacks.
        def construct(loader: Any, node: Any) -> Any:
            try:
                return constructor(loader, node)
            except (ValueError, TypeError, OverflowError) as error:
                raise yaml.constructor.ConstructorError(
                    None, None, f"invalid value for {node.tag}: {node.value!r} ({error})", node.start_mark
                ) from None

        return construct

    for tag, constructor in list(PsychLoader.yaml_constructors.items()):
        PsychLoader.yaml_constructors[tag] = checked(constructor)
    PsychLoader.add_constructor(_PLAIN_TAG, construct_plain)
    PsychLoader.add_constructor("tag:yaml.org,2002:str", construct_str)
    PsychLoader.add_constructor("tag:yaml.org,2002:seq", construct_seq)
    PsychLoader.add_constructor("tag:yaml.org,2002:map", construct_map)
    PsychLoader.add_constructor(None, construct_other)
    return PsychLoader


def _psych_merge(result: dict, value: Any, is_sequence: bool) -> None:
    """Psych's ``<<``: a mapping is merged over the keys so far; in a list the earlier mappings win."""
    if not is_sequence:
        if isinstance(value, dict):
            result.update(value)
        else:
            result["<<"] = value
        return
    merged: dict = {}
    for item in reversed(value):
        if not isinstance(item, dict):
            result["<<"] = value
            return
        merged.update(item)
    result.update(merged)


# Psych::ScalarScanner#tokenize, branch by branch (psych/scalar_scanner.rb). Patterns are compiled on
# first use (re's cache), not at import.
_WORDISH = (r"[^\d.:-]?[A-Za-z_\s!@#$%^&*(){}<>|/\\~;=]+")
_TIME = (
    r"(-?\d{4})-(\d{1,2})-(\d{1,2})(?:[Tt]|\s+)(\d{1,2}):(\d\d):(\d\d)(?:\.(\d*))?(?:\s*(Z|[-+]\d{1,2}:?(?:\d\d)?))?"
)
_DATE = (r"\d{4}-(?:1[012]|0\d|\d)-(?:[12]\d|3[01]|0\d|\d)")
_SEXAGESIMAL_INT = (r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+")
_SEXAGESIMAL_FLOAT = (r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*")
_FLOAT = (r"[-+]?(?:[0-9][0-9_,]*)?\.[0-9]*(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_INTEGER = (r"[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+")
_RUBY_INT_PREFIX = (r"[-+]?\d+(?:_\d+)*")
_RUBY_FLOAT_PREFIX = (r"[-+]?\d+(?:_\d+)*(?:\.\d+(?:_\d+)*)?")


def _psych_scalar(value: str) -> Any:
    """The Ruby value Psych gives an untagged plain scalar, in Python terms."""
    if not value:
        return None
    if re.match(_WORDISH, value) or "\n" in value:
        if len(value) > 5 or value[0].lower() not in "ytonf~":
            return value
        lowered = value.lower()
        if lowered in ("~", "null"):
            return None
        if lowered in ("yes", "true", "on"):
            return True
        if lowered in ("no", "false", "off"):
            return False
        return value
    if re.fullmatch(_TIME, value):
        return _psych_time(value)
    if re.fullmatch(_DATE, value):
        import datetime

        try:
            return datetime.date(*(int(part) for part in value.split("-")))
        except ValueError:
            return value
    lowered = value.lower()
    if lowered in (".inf", "+.inf"):
        return float("inf")
    if lowered == "-.inf":
        return float("-inf")
    if lowered == ".nan":
        return float("nan")
    if len(value) > 1 and value[0] == ":":
        quoted = re.fullmatch(r":([\"'])(.*)\1", value)
        return RubySymbol(":" + (quoted.group(2).removeprefix(":") if quoted else value[1:]))
    if re.fullmatch(_SEXAGESIMAL_INT, value):
        return _sexagesimal(value, _ruby_to_i)
    if re.fullmatch(_SEXAGESIMAL_FLOAT, value):
        return _sexagesimal(value, _ruby_to_f)
    if re.fullmatch(_FLOAT, value):
        if re.fullmatch(r"[-+]?\.", value):
            return value
        try:
            return float(re.sub(r"[,_]|\.$", "", value))
        except ValueError:
            return value
    digits = re.sub(r"[,_]", "", value)
    if re.fullmatch(_INTEGER, digits):
        return _ruby_integer(digits)
    return value


def _sexagesimal(value: str, convert: Any) -> Any:
    # Psych weights part e by 60 ** |e - 2|, so "1:20" is 1*3600 + 20*60 = 4800; kept for fidelity.
    return sum(convert(part) * 60 ** abs(index - 2) for index, part in enumerate(value.split(":")))


def _ruby_to_i(text: str) -> int:
    match = re.match(_RUBY_INT_PREFIX, text)
    return int(match.group().replace("_", "")) if match else 0


def _ruby_to_f(text: str) -> float:
    match = re.match(_RUBY_FLOAT_PREFIX, text)
    return float(match.group().replace("_", "")) if match else 0.0


def _ruby_integer(text: str) -> int:
    """Ruby's ``Integer()``: 0b binary, 0x hex, a leading 0 means octal."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body.startswith("0b"):
        return sign * int(body[2:], 2)
    if body.startswith("0x"):
        return sign * int(body[2:], 16)
    if len(body) > 1 and body.startswith("0"):
        return sign * int(body[1:], 8)
    return sign * int(body)


def _psych_time(value: str) -> Any:
    import datetime

    match = re.fullmatch(_TIME, value)
    assert match is not None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "0").ljust(6, "0")[:6])
    zone = match.group(8)
    offset = datetime.timedelta(0)
    if zone and zone != "Z":
        parts = re.fullmatch(r"([-+])(\d{1,2}):?(\d\d)?", zone)
        assert parts is not None
        sign = -1 if parts.group(1) == "-" else 1
        offset = sign * datetime.timedelta(hours=int(parts.group(2)), minutes=int(parts.group(3) or 0))
    try:
        return datetime.datetime(year, month, day, hour, minute, second, micro, datetime.timezone(offset))
    except ValueError:
        return value


def load_configuration(options: GlobalOptions, hooks: Hooks) -> Configuration:
    from kamalpy.config.model import Configuration

    raw = hooks.raw_config(options)  # config_loading: read_raw_config, unless a plugin has another source
    config = Configuration(
        raw,
        destination=options.destination,
        version=options.version,
        config_file=Path(options.config_file),
        extension_keys=hooks.config_keys(),
        hooks=hooks,
    )
    hooks.validate_config(config)
    return config
