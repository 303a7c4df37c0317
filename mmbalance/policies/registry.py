"""Build samplers from selector strings such as `dus-h:strength=2` or `bss-h:lambda0=0.2`."""

from __future__ import annotations

from mmbalance.errors import ConfigError
from mmbalance.policies.bss import BSSHeuristicSampler, BSSLearnedSampler
from mmbalance.policies.dus import DUSHeuristicSampler, FixedQuotaSampler
from mmbalance.policies.schedule import ScheduleQuotaSampler
from mmbalance.spec import parse_spec, typed_fields
from mmbalance.trainers.sampler import Sampler, UniformSampler

SAMPLERS: dict[str, type[Sampler]] = {
    "uniform": UniformSampler,
    "dus-h": DUSHeuristicSampler,
    "fixed": FixedQuotaSampler,
    "schedule": ScheduleQuotaSampler,
    "bss-h": BSSHeuristicSampler,
    "bss-l": BSSLearnedSampler,
}


def make_sampler(spec: str) -> Sampler:
    """A sampler from its selector; `learned:PATH` loads an exported policy (no Ray needed)."""
    head, _, rest = spec.partition(":")
    if head.strip().lower() == "learned":
        if not rest:
            raise ConfigError("sampler: 'learned' needs a path, as learned:PATH")
        from mmbalance.policies.learned import make_learned_sampler

        return make_learned_sampler(rest)
    if head.strip().lower() == "dus-rl":  # its own parser: init=PATH keeps slashes and commas
        from mmbalance.policies.dus_rl import make_dus_rl_sampler

        return make_dus_rl_sampler(rest)
    name, options = parse_spec(spec, "sampler")
    if "quota_mode" in options:  # a sampler option before it became a training option
        raise ConfigError(f"sampler '{name}': quota_mode is a training option now: "
                          f"--set quota_mode={options['quota_mode']} (in a compare grid: "
                          f"METHOD/{name}@quota_mode={options['quota_mode']})")
    if name not in SAMPLERS:
        allowed = [*sorted(SAMPLERS), "dus-rl", "learned:PATH"]
        raise ConfigError(f"sampler: unknown {name!r}; allowed: {allowed}")
    cls = SAMPLERS[name]
    # each option parsed as its keyword's declared type, then the sampler checks ranges
    options = typed_fields(f"sampler '{name}'", options, cls.__init__, noun="option")
    try:
        return cls(**options)
    except TypeError as exc:  # e.g. a list where a number was expected
        raise ConfigError(f"sampler '{name}': {exc}") from None
