"""Parse `name:key=value,key=value` selector strings used by the CLI for data and samplers,
read the YAML configs (`YamlConfig`, dotted keys), and turn every user-given value into its
declared type before anything compares it.

Selector values stay text until `typed_fields` parses each one with the type its consumer
declares (a dataclass field or a keyword argument's annotation): `int`, `float`, `bool`,
`str`, a '/'-separated list of those, `X | None`, a mapping. Range checks then run on typed
values in the consumer's `check()`, so a word where a number belongs, a fraction where a
count belongs, or a non-finite number is one clear error naming the key, never a crash in a
comparison. `parquet:PATH` style selectors keep everything after the colon as one value.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import math
import types
import typing
from typing import Any, Self

from mmbalance.errors import ConfigError


def parse_scalar(text: str) -> bool | int | float | str:
    """int, float or bool when the text is one, else the text itself (paths keep their '/')."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


# ---------------------------------------------------------------------- typed values
class _Bad(Exception):
    """A value that does not fit its declared type (turned into a ConfigError by the caller)."""


_SEQUENCES = (list, tuple, collections.abc.Sequence)
_NULLS = ("none", "null")


def _parts(hint) -> tuple[object, tuple]:
    origin = typing.get_origin(hint)
    return origin, typing.get_args(hint)


def describe(hint) -> str:
    """What a type hint asks for, in words (for error messages)."""
    origin, args = _parts(hint)
    if origin in (typing.Union, types.UnionType):
        words = [describe(a) for a in args if a is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in args else "")
    if origin in _SEQUENCES:
        item = args[0] if args else Any
        plural = {int: "integers", float: "finite numbers", bool: "booleans", str: "names"}
        return f"a list of {plural.get(item, 'values')} (a/b/...)"
    if hint is dict or origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a finite number", bool: "true or false",
            str: "text"}.get(hint, getattr(hint, "__name__", str(hint)))


def _int(value) -> int:
    if isinstance(value, bool):
        raise _Bad
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    number = _float(value)  # 1e3 or 2.0: a count written as a float
    if not number.is_integer():
        raise _Bad
    return int(number)


def _float(value) -> float:
    if isinstance(value, bool):
        raise _Bad
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _Bad from None
    else:
        raise _Bad
    if not math.isfinite(number):
        raise _Bad
    return number


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise _Bad


def _typed(value, hint):
    """`value` (selector text or a YAML value) as `hint`; raises _Bad when it does not fit."""
    if hint is Any or hint is object or hint is inspect.Parameter.empty:
        return value
    origin, args = _parts(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if type(None) in args and (value is None or (
                isinstance(value, str) and value.strip().lower() in _NULLS)):
            return None
        listy = isinstance(value, (list, tuple)) or (isinstance(value, str) and "/" in value)
        options.sort(key=lambda a: (typing.get_origin(a) in _SEQUENCES) != listy)
        for option in options:
            try:
                return _typed(value, option)
            except _Bad:
                continue
        raise _Bad
    if origin in _SEQUENCES or hint in (list, tuple):
        item = args[0] if args else Any
        if isinstance(value, str):
            items = value.split("/")
        elif isinstance(value, (list, tuple)):
            items = list(value)
        elif value is None:
            raise _Bad
        else:
            items = [value]
        out = [_typed(v, item) for v in items]
        return tuple(out) if origin is tuple or hint is tuple else out
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise _Bad
        return value
    if hint is int:
        return _int(value)
    if hint is float:
        return _float(value)
    if hint is bool:
        return _bool(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Bad
        return value
    return value


def typed_value(what: str, key: str, value, hint):
    """One value as its declared type, or a ConfigError naming `what` and `key`."""
    try:
        return _typed(value, hint)
    except _Bad:
        raise ConfigError(f"{what}: '{key}' expects {describe(hint)}, got {value!r}") from None


def declared_types(target) -> dict[str, object]:
    """Field name -> type hint of a dataclass, or keyword -> annotation of a callable."""
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target)
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(target)}
    hints = typing.get_type_hints(target)
    params = inspect.signature(target).parameters.values()
    return {p.name: hints.get(p.name, Any) for p in params
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def typed_fields(what: str, data: dict, target, noun: str = "key") -> dict:
    """`data` with every value parsed as the type `target` declares for it; unknown keys
    are refused with the allowed ones. Ranges are the consumer's `check()` job, after."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expects a mapping of keys to values, got {data!r}")
    hints = declared_types(target)
    unknown = sorted(set(data) - set(hints), key=str)
    if unknown:
        raise ConfigError(f"{what}: unknown {noun}(s) {unknown}; allowed: {sorted(hints)}")
    return {k: typed_value(what, k, v, hints[k]) for k, v in data.items()}


def reject_non_finite(what: str, data, path: str = "") -> None:
    """Refuse NaN and infinities anywhere in a nested config (YAML reads `.nan`, `.inf`)."""
    if isinstance(data, dict):
        for k, v in data.items():
            reject_non_finite(what, v, f"{path}.{k}" if path else str(k))
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            reject_non_finite(what, v, f"{path}[{i}]")
    elif isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(f"{what}: '{path}' is {data}; a finite number is required")


# ---------------------------------------------------------------------- YAML
def yaml_problem(exc: Exception) -> str:
    """A YAML error as one line: where and what (a tag such as !!python/... is refused)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    if "constructor for the tag" in problem:
        problem = f"YAML tags are not allowed ({problem.split('tag', 1)[-1].strip()})"
    return where + problem


# A config is a few hundred nodes; these limits only stop hostile files (an alias bomb
# composes instantly but every walk of the result expands each alias again).
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000


def _yaml_loader():
    """The safe loader, plus checks made on the composed node graph before any Python object
    is built: expanded size (aliases counted each time they are used), recursive aliases
    and duplicate keys, each a ConfigError naming the anchor or key and its line."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_document(self):
            self.get_event()  # DocumentStart
            node = self.compose_node(None, None)
            self.get_event()  # DocumentEnd
            names = {id(n): a for a, n in self.anchors.items()}
            self.anchors = {}
            _check_graph(node, names)
            return node

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # '<<' merges are meant to be overridden
                    key = self.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    try:
                        first = seen.get(key)
                    except TypeError:  # an unhashable key: the base loader says so
                        continue
                    if first is not None:
                        raise _YamlRefused(f"line {line}: duplicate key {key!r} (first at "
                                           f"line {first}); each key may appear once")
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return Loader


class _YamlRefused(Exception):
    """A YAML document the guarded loader refuses (a ConfigError once `what` is known)."""


def _check_graph(root, names: dict[int, str]) -> None:
    """Refuse a node graph that is cyclic (a recursive alias) or whose expansion holds more
    than MAX_YAML_NODES nodes; linear in the composed graph, never in its expansion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            continue
        if key in sizes:
            continue
        if key in on_path:
            name = names.get(key, "?")
            line = node.start_mark.line + 1
            raise _YamlRefused(f"line {line}: recursive alias *{name} (an anchor used inside "
                               "itself)")
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                name = names.get(id(child), "?")
                raise _YamlRefused(f"line {child.start_mark.line + 1}: recursive alias "
                                   f"*{name} (an anchor used inside itself)")
            if id(child) not in sizes:
                stack.append((child, False))
    total = sizes[id(root)]
    if total > MAX_YAML_NODES:
        anchored = [(sizes[k], n) for k, n in names.items() if k in sizes]
        worst = max(anchored) if anchored else None
        which = (f"alias *{worst[1]} expands to {worst[0]} nodes; " if worst else "")
        raise _YamlRefused(f"expands to {total} nodes, more than {MAX_YAML_NODES} ({which}"
                           "aliases may not multiply a config)")


def _children(node) -> list:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml_text(text: str, what: str):
    """YAML text read with the safe loader; bad YAML (or a tag), a file over MAX_YAML_BYTES,
    a recursive alias, an alias expansion over MAX_YAML_NODES nodes or a duplicate key is a
    one-line ConfigError."""
    import yaml

    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{what}: {len(text)} characters, more than {MAX_YAML_BYTES}; not "
                          "a config")
    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: no tags
    except _YamlRefused as exc:
        raise ConfigError(f"{what}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what}: nested too deeply to be a config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: not valid YAML ({yaml_problem(exc)})") from None


def load_yaml_mapping(path, what: str) -> dict:
    """A YAML file read with the safe loader; a missing file or bad YAML is a ConfigError."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what}: no such file {p}")
    if p.stat().st_size > MAX_YAML_BYTES:  # before reading it all
        raise ConfigError(f"{p}: {p.stat().st_size} bytes, more than {MAX_YAML_BYTES}; not a "
                          "config")
    return load_yaml_text(p.read_text(), str(p)) or {}


class YamlConfig:
    """`from_dict` / `from_yaml` for a config dataclass read from YAML: a mapping whose keys
    are the dataclass's fields, each parsed as its declared type, then its own `check()`.
    `config_name` names it in errors; `required` lists keys a file must give."""

    config_name = "config"
    required: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.config_name}: the YAML must be a mapping of keys to values")
        missing = [k for k in cls.required if k not in data]
        if missing:
            raise ConfigError(f"{cls.config_name}: missing required key(s) {missing}")
        reject_non_finite(cls.config_name, data)
        cfg = cls(**typed_fields(cls.config_name, data, cls))
        cfg.check()
        return cfg

    @classmethod
    def from_yaml(cls, path) -> Self:
        return cls.from_dict(load_yaml_mapping(path, cls.config_name))


def set_dotted(data: dict, dotted: str, value, what: str) -> None:
    """data["a"]["b"] = value for dotted "a.b", making missing levels; `what` names the
    caller's key in the error when a level exists but is not a mapping."""
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{what}: '{part}' is not a mapping")
    node[parts[-1]] = value


# ---------------------------------------------------------------------- selectors
def parse_spec(spec: str, what: str) -> tuple[str, dict[str, str]]:
    """'dus-h:strength=2,n_min=8' -> ('dus-h', {'strength': '2', 'n_min': '8'}): values stay
    text, for `typed_fields` to parse with the consumer's declared types."""
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if not name:
        raise ConfigError(f"{what}: empty selector {spec!r}")
    options: dict[str, str] = {}
    if rest:
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"{what} '{name}': option {item!r} is not key=value")
            options[key.strip()] = value.strip()
    return name, options
