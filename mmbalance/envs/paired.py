"""The paired reference run of an episode: common random numbers for the reward.

The policy's run and its reference run share the data, the run seed (so the initial
weights) and, where the sampler allows, the data stream; they differ only in what the
samplers decide. The advantage A = measure(policy run) - measure(reference run) is read on
a fixed validation subset at every decision, so the noise of the subset and of the seed is
common to both terms and cancels; the reward pays the change of A (`policies/signals.py`).

The reference's sampler does not depend on the policy, so its trajectory (the measure at
each global step the policy asks about) is cached per episode set-up (data selector, run
seed): with an env's episode `pool`, each reference run is trained once and then costs
nothing; without one, every episode trains it beside the policy's run (about twice the cost).
Measures: `val_loss` (minus the mean cross-entropy of the model's prediction, so higher is
better), `val_acc`, `weak_probe` (the weak modality's linear-probe test accuracy at the end of
the run, 0 before: a terminal reward; the weak modality is the one the reference run's probe
rates lower). With `pay: end` A is read at the episode's last decision only (0 before), so
a reference run is measured once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np
import torch
from torch.nn import functional as F

from mmbalance.policies.signals import RewardConfig

CACHE_SIZE = 256  # reference trajectories kept per env (a pool's worth, and then some)


def validation_subset(n_val: int, size: int) -> torch.Tensor:
    """The fixed validation samples a measure reads: the first `size` of a permutation
    seeded by nothing but the split's size, the same for every run on that data."""
    order = np.random.default_rng(n_val).permutation(n_val)
    return torch.as_tensor(np.sort(order[: min(size, n_val)]))


@torch.no_grad()
def measure_on(trainer, measure: str, subset: torch.Tensor) -> float:
    """`val_loss` (negated) or `val_acc` of the run's current model on the subset."""
    model = trainer.model
    was_training = model.training
    model.eval()
    idx = subset.to(trainer.device)
    x = {m: trainer.x["val"][m][idx] for m in trainer.modalities}
    logits, _ = model(x)
    y = trainer.y["val"][idx]
    if was_training:
        model.train()
    if measure == "val_loss":
        return -float(F.cross_entropy(logits, y))
    return float((logits.argmax(1) == y).float().mean())


class _Trajectory:
    """One reference run, advanced lazily, and its measures by global step."""

    def __init__(self, build: Callable[[], object]) -> None:
        self.build = build
        self.trainer = None
        self.values: dict[int, float] = {}
        self.probe: dict[str, float] | None = None

    def _at(self, step: int):
        if self.trainer is None or self.trainer.global_step > step:
            self.trainer = self.build()  # from scratch (a step asked out of order)
        t = self.trainer
        while t.global_step < step and not t.done:
            t.step()
        return t

    def value(self, step: int, measure: str, subset: torch.Tensor) -> float:
        if step not in self.values:
            self.values[step] = measure_on(self._at(step), measure, subset)
        return self.values[step]

    def final_probe(self, total_steps: int) -> dict[str, float]:
        if self.probe is None:
            t = self._at(total_steps)
            self.probe = t.probe()
            self.trainer = None  # finished: only its numbers are kept
        return self.probe


class PairedAdvantage:
    """The advantage of an env's run over its paired reference run (see module docstring).

    `build_reference(key)` returns a fresh reference Trainer for the episode set-up `key`;
    `start(trainer, key)` begins an episode, `advantage(trainer, terminated)` reads A now.
    """

    def __init__(self, cfg: RewardConfig, build_reference: Callable[[Hashable], object]):
        self.cfg = cfg
        self.build_reference = build_reference
        self.cache: OrderedDict[Hashable, _Trajectory] = OrderedDict()
        self.enabled = bool(cfg.paired) and cfg.reference != "none"
        self.ref: _Trajectory | None = None
        self.subset: torch.Tensor | None = None
        self.weak: str | None = None

    def start(self, trainer, key: Hashable) -> None:
        if not self.enabled:
            return
        if key not in self.cache:
            self.cache[key] = _Trajectory(lambda: self.build_reference(key))
            while len(self.cache) > CACHE_SIZE:
                self.cache.popitem(last=False)
        self.cache.move_to_end(key)
        self.ref = self.cache[key]
        self.subset = validation_subset(int(trainer.y["val"].shape[0]), self.cfg.val_subset)
        self.weak = None

    def advantage(self, trainer, terminated: bool) -> float:
        if not self.enabled:
            return 0.0
        if self.cfg.measure == "weak_probe":
            if not terminated:
                return 0.0
            ref = self.ref.final_probe(trainer.global_step)
            self.weak = min(ref, key=ref.get)
            return float(trainer.probe()[self.weak] - ref[self.weak])
        if self.cfg.pay == "end" and not terminated:
            return 0.0  # paid once, at the end: the return is the same final advantage
        step = trainer.global_step
        mine = measure_on(trainer, self.cfg.measure, self.subset)
        return float(mine - self.ref.value(step, self.cfg.measure, self.subset))
