"""Parse `name:key=value,key=value` selector strings used by the CLI for data and samplers.

Values are parsed as int, float, bool or a '/'-separated list of those; anything else stays
a string. `parquet:PATH` style selectors keep everything after the colon as one value.
"""

from __future__ import annotations

from mmbalance.errors import ConfigError


def parse_value(text: str):
    if "/" in text:
        return [parse_value(t) for t in text.split("/")]
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


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
