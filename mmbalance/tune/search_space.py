"""The sweep YAML's search-space DSL, checked before any trial starts.

Each entry maps a dotted key (into the sweep's `base`) to exactly one of:

    {grid: [v1, v2, ...]}        every value, crossed with the other grids
    {choice: [v1, v2, ...]}      one value drawn per sample
    {uniform: [low, high]}       a float in [low, high)
    {loguniform: [low, high]}    a float, log-uniform; 0 < low < high
    {randint: [low, high]}       an int in [low, high)
"""

from __future__ import annotations

import math

from mmbalance.errors import ConfigError
from mmbalance.spec import set_dotted

KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


def check_entry(key: str, spec) -> None:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(
            f"search_space.{key}: must be one of {{kind: values}} with kind in {list(KINDS)}, "
            f"got {spec!r}"
        )
    kind, values = next(iter(spec.items()))
    if kind not in KINDS:
        raise ConfigError(f"search_space.{key}: unknown kind {kind!r}; allowed: {list(KINDS)}")
    if kind in ("grid", "choice"):
        if not isinstance(values, list) or not values:
            raise ConfigError(f"search_space.{key}.{kind}: needs a non-empty list of values")
        return
    if (not isinstance(values, list) or len(values) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise ConfigError(f"search_space.{key}.{kind}: needs [low, high] numbers, got {values!r}")
    low, high = values
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError(f"search_space.{key}.{kind}: needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"search_space.{key}.loguniform: needs 0 < low, got {low}")
    if kind == "randint" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"search_space.{key}.randint: needs integer bounds, got {values!r}")


def representative(spec: dict):
    """A value the entry can take, to validate the base config with before Ray starts."""
    kind, values = next(iter(spec.items()))
    if kind in ("grid", "choice"):
        return values[0]
    if kind == "randint":
        return int(values[0])
    return float(values[0])


def all_values(spec: dict) -> list:
    """Values to validate: every grid/choice value, both bounds of ranges."""
    kind, values = next(iter(spec.items()))
    if kind in ("grid", "choice"):
        return list(values)
    if kind == "randint":
        return [int(values[0]), int(values[1]) - 1]
    return [float(values[0]), float(values[1])]


def to_tune(spec: dict):
    from ray import tune

    kind, values = next(iter(spec.items()))
    if kind == "grid":
        return tune.grid_search(list(values))
    if kind == "choice":
        return tune.choice(list(values))
    if kind == "uniform":
        return tune.uniform(*values)
    if kind == "loguniform":
        return tune.loguniform(*values)
    return tune.randint(int(values[0]), int(values[1]))


def set_path(data: dict, dotted: str, value) -> None:
    set_dotted(data, dotted, value, f"search_space.{dotted} (in base)")
