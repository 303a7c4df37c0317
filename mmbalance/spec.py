"""Parse `name:key=value,key=value` selector strings used by the CLI for data and samplers.

Values are parsed as int, float, bool or a '/'-separated list of those; anything else stays
a string. `parquet:PATH` style selectors keep everything after the colon as one value.
"""

from __future__ import annotations

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
