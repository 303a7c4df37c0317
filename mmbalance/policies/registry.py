"""Build samplers from selector strings such as `dus-h:strength=2` or `bss-h:lambda0=0.2`."""

from __future__ import annotations

import inspect

from mmbalance.errors import ConfigError
from mmbalance.policies.base import Sampler, UniformSampler
from mmbalance.policies.bss import BSSHeuristicSampler, BSSLearnedSampler
from mmbalance.policies.dus import DUSHeuristicSampler
from mmbalance.spec import check_options, parse_spec

SAMPLERS: dict[str, type[Sampler]] = {
    "uniform": UniformSampler,
    "dus-h": DUSHeuristicSampler,
    "bss-h": BSSHeuristicSampler,
    "bss-l": BSSLearnedSampler,
}


def make_sampler(spec: str) -> Sampler:
    name, options = parse_spec(spec, "sampler")
    if name not in SAMPLERS:
        raise ConfigError(f"sampler: unknown {name!r}; allowed: {sorted(SAMPLERS)}")
    cls = SAMPLERS[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    check_options(f"sampler '{name}'", options, allowed)
    try:
        return cls(**options)
    except TypeError as exc:  # e.g. a list where a number was expected
        raise ConfigError(f"sampler '{name}': {exc}") from None
