"""Parse `name:key=value,key=value` selector strings used by the CLI for data and samplers,
and read the YAML configs (`YamlConfig`, dotted keys).

Values are parsed as int, float, bool or a '/'-separated list of those; anything else stays
a string. `parquet:PATH` style selectors keep everything after the colon as one value.
"""

from __future__ import annotations

from typing import Self

from mmbalance.errors import ConfigError, reject_unknown_keys


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


def parse_value(text: str):
    """A scalar, or a '/'-separated list of scalars (per-modality values)."""
    if "/" in text:
        return [parse_scalar(t) for t in text.split("/")]
    return parse_scalar(text)


def load_yaml_mapping(path, what: str) -> dict:
    """A YAML file read with the safe loader; a missing file or bad YAML is a ConfigError."""
    from pathlib import Path

    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what}: no such file {p}")
    try:
        return yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc.__class__.__name__}: {exc})") from None


class YamlConfig:
    """`from_dict` / `from_yaml` for a config dataclass read from YAML: a mapping whose keys
    are the dataclass's fields, then its own `check()`. `config_name` names it in errors."""

    config_name = "config"

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.config_name}: the YAML must be a mapping of keys to values")
        reject_unknown_keys(cls.config_name, data, cls)
        cfg = cls(**data)
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


def parse_spec(spec: str, what: str) -> tuple[str, dict]:
    """'dus-h:strength=2,n_min=8' -> ('dus-h', {'strength': 2, 'n_min': 8})."""
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if not name:
        raise ConfigError(f"{what}: empty selector {spec!r}")
    options: dict = {}
    if rest:
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"{what} '{name}': option {item!r} is not key=value")
            options[key.strip()] = parse_value(value.strip())
    return name, options


def check_options(what: str, options: dict, allowed: list[str]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{what}: unknown option(s) {unknown}; allowed: {sorted(allowed)}"
        )
