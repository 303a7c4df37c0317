"""Families of data sets for training a sampling policy: one drawn per episode.

A policy learned on one data set learns that data set; drawn from a family, it has to learn
a rule. An env's `data` may be
- one selector (`synthetic`, `digits`, `parquet:PATH`, ...): a family of one;
- a list of selectors: one drawn uniformly per episode;
- a selector with ranges `LOW..HIGH` in its options, e.g.
  `synthetic:separation=1.2..3/1..2,informative=0.5..0.9/1`: each range drawn uniformly per
  episode, as the option's declared type (`dim=16..64` gives integers, `separation=2..4`
  real numbers; for a loader without declared types, integer ends give integers); real
  numbers are rounded to 3 decimals, so a drawn selector is short and repeatable.
`DataFamily.draw(rng)` returns a plain selector string that `load_dataset` reads.
"""

from __future__ import annotations

import numpy as np

from mmbalance.errors import ConfigError

RANGE = ".."


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _integer_options(head: str) -> set[str] | None:
    """Options the data loader declares as integers (or lists of them); None if unknown."""
    import typing

    from mmbalance.spec import declared_types

    name = head.strip().lower()
    if name == "synthetic":
        from mmbalance.data.synthetic import SyntheticConfig as target
    elif name == "digits":
        from mmbalance.data.digits import load_digits_dataset as target
    else:
        return None
    out = set()
    for key, hint in declared_types(target).items():
        parts = {hint, *typing.get_args(hint)}
        parts |= {a for p in list(parts) for a in typing.get_args(p)}
        if int in parts and float not in parts:
            out.add(key)
    return out


class DataFamily:
    def __init__(self, spec) -> None:
        if isinstance(spec, (list, tuple)):
            if not spec or not all(isinstance(s, str) and s.strip() for s in spec):
                raise ConfigError(f"data: a list needs one or more selector strings, got {spec!r}")
            self.choices = [s.strip() for s in spec]
        elif isinstance(spec, str):
            self.choices = [spec.strip()]
        else:
            raise ConfigError(f"data: expected a selector or a list of selectors, got {spec!r}")
        self.templates = [self._parse(s) for s in self.choices]

    @property
    def fixed(self) -> bool:
        """True when every draw gives the same selector."""
        return len(self.choices) == 1 and not any(
            isinstance(v, tuple) for _, parts in self.templates[0][1] for v in parts)

    @staticmethod
    def _parse(selector: str):
        """(head, [(key, [value or (low, high, is_int)])]) of one selector with ranges."""
        head, _, rest = selector.partition(":")
        if RANGE not in rest:
            return selector, []
        if head.strip().lower() in ("parquet",) or "=" not in rest:
            raise ConfigError(f"data {selector!r}: ranges ('{RANGE}') go in key=value options")
        integers = _integer_options(head)
        options = []
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(f"data {selector!r}: option {item!r} is not key=value")
            parts = []
            for part in value.split("/"):
                if RANGE in part:
                    low, _, high = part.partition(RANGE)
                    try:
                        lo, hi = float(low), float(high)
                    except ValueError:
                        raise ConfigError(f"data {selector!r}: '{key.strip()}' range {part!r} "
                                          "is not LOW..HIGH with two numbers") from None
                    if not np.isfinite([lo, hi]).all() or lo > hi:
                        raise ConfigError(f"data {selector!r}: '{key.strip()}' range {part!r} "
                                          "needs finite LOW <= HIGH")
                    integer = (key.strip() in integers if integers is not None
                               else _is_int(low) and _is_int(high))
                    if integer and not (lo.is_integer() and hi.is_integer()):
                        raise ConfigError(f"data {selector!r}: '{key.strip()}' takes integers, "
                                          f"got the range {part!r}")
                    parts.append((lo, hi, integer))
                else:
                    parts.append(part)
            options.append((key.strip(), parts))
        return head, options

    def draw(self, rng: np.random.Generator) -> str:
        """One concrete selector."""
        i = int(rng.integers(len(self.choices))) if len(self.choices) > 1 else 0
        head, options = self.templates[i]
        if not options:
            return head
        items = []
        for key, parts in options:
            values = []
            for part in parts:
                if isinstance(part, tuple):
                    lo, hi, integer = part
                    values.append(str(int(rng.integers(int(lo), int(hi) + 1))) if integer
                                  else f"{rng.uniform(lo, hi):.3f}")
                else:
                    values.append(part)
            items.append(f"{key}={'/'.join(values)}")
        return f"{head}:{','.join(items)}"

    def describe(self) -> str:
        return self.choices[0] if len(self.choices) == 1 else " | ".join(self.choices)
