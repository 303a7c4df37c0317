"""The sampler registry: a sampler is built from its name and typed options.

`build_sampler("dus-h", {"strength": 2.0})` is the one way to build a sampler: each option is
parsed as the type its keyword declares, then the sampler checks ranges. A selector string
(`dus-h:strength=2`, `learned:PATH`, `dus-rl:k=5,init=PATH`) is only the CLI's spelling of
a name and its options: `make_sampler` reads it with the entry's own reader (`key=value`
pairs unless the entry says otherwise) and builds the same sampler. Adding a sampler is one
line in `SAMPLERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mmbalance.errors import ConfigError, UserError
from mmbalance.policies.bss import BSSHeuristicSampler, BSSLearnedSampler
from mmbalance.policies.dus import DUSHeuristicSampler, FixedQuotaSampler
from mmbalance.policies.dus_rl import DUSRLSampler, dus_rl_options
from mmbalance.policies.dus_rl.options import parse_selector
from mmbalance.policies.learned import make_learned_sampler
from mmbalance.policies.schedule import ScheduleQuotaSampler
from mmbalance.spec import parse_spec, typed_fields
from mmbalance.trainers.sampler import Sampler, UniformSampler


@dataclass(frozen=True)
class Entry:
    """How a sampler is built: `build(**options)`; `options` declares the options' types
    (default: `build` itself); `read` turns a selector's text after `NAME:` into options
    (default: `key=value` pairs)."""

    build: Callable[..., Sampler]
    options: Callable | None = None
    read: Callable[[str], dict] | None = None


SAMPLERS: dict[str, Entry] = {
    "uniform": Entry(UniformSampler),
    "dus-h": Entry(DUSHeuristicSampler),
    "fixed": Entry(FixedQuotaSampler),
    "schedule": Entry(ScheduleQuotaSampler),
    "bss-h": Entry(BSSHeuristicSampler),
    "bss-l": Entry(BSSLearnedSampler),
    # init=PATH keeps its slashes and commas
    "dus-rl": Entry(DUSRLSampler, options=dus_rl_options, read=parse_selector),
    # an exported policy (no Ray needed): learned:PATH
    "learned": Entry(make_learned_sampler, read=lambda rest: {"path": rest} if rest else {}),
}


def build_sampler(name: str, options: dict | None = None) -> Sampler:
    """The sampler `name` with `options` (each parsed as its declared type), or a
    ConfigError naming the sampler and the option."""
    options = dict(options or {})
    if name not in SAMPLERS:
        raise ConfigError(f"sampler: unknown {name!r}; allowed: {sorted(SAMPLERS)}")
    if "quota_mode" in options:  # what a quota means is a training option, not a sampler's
        raise ConfigError(f"sampler '{name}': quota_mode is a training option: --set "
                          f"quota_mode={options['quota_mode']} (in a compare grid: "
                          f"METHOD/{name}@quota_mode={options['quota_mode']})")
    entry = SAMPLERS[name]
    what = f"sampler '{name}'"
    target = entry.options or (entry.build.__init__ if isinstance(entry.build, type)
                               else entry.build)
    options = typed_fields(what, options, target, noun="option")
    try:
        return entry.build(**options)
    except UserError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. a list where a number was expected
        raise ConfigError(f"{what}: {exc}") from None


def make_sampler(selector: str) -> Sampler:
    """A sampler from its selector `NAME[:OPTIONS]` (the CLI's spelling)."""
    head, _, rest = selector.partition(":")
    name = head.strip().lower()
    if name not in SAMPLERS:
        raise ConfigError(f"sampler: unknown {name!r}; allowed: {sorted(SAMPLERS)}")
    read = SAMPLERS[name].read
    options = read(rest) if read is not None else parse_spec(selector, "sampler")[1]
    return build_sampler(name, options)
