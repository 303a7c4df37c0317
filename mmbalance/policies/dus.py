"""DUS: per-modality sampling quotas driven by the cumulative modality discrepancy.

`QuotaSampler` draws, every iteration, `quota[j]` samples for modality j from that
modality's own stream (a fresh permutation of the training set whenever it runs out), so
the weak modality can see more samples than the strong one. An epoch is ceil(N / B)
iterations. Subclasses (or an RL policy, through `set_quotas`) decide the quotas;
the run's quota meaning (`TrainConfig.quota_mode`, `mmbalance/trainers/quota.py`) says
what a quota does to learning: under `share` (the default) the quotas are shares of the
uniform iteration's fixed budget of M updates of B samples.

DUS-H's rule (the paper's exact rule is not public; this is ours): with gap
`g_j = ŝ_j - mean(ŝ)` and strength κ, `n_j ∝ exp(-κ g_j)`, scaled so the quotas sum to the
budget M·B, rounded and clamped to [n_min, n_max]. κ = 0 is uniform; the modality that is
behind (negative gap) gets more samples, the one ahead fewer.
"""

from __future__ import annotations

import math

import numpy as np

from mmbalance.errors import ConfigError
from mmbalance.policies.quota_actions import spread_budget
from mmbalance.trainers.sampler import (
    PAIRED,
    Batch,
    Sampler,
    SamplerContext,
    Scorer,
    StepFeedback,
)

# the largest fixed quota, in batch sizes: a quota of 10^8 under `extra-steps` would run
# millions of optimizer steps per iteration
MAX_QUOTA_BATCHES = 16


class QuotaSampler(Sampler):
    """Per-modality batches of externally set sizes (uniform quotas until told otherwise)."""

    name = "quota"
    unimodal_batches = True

    def __init__(self, n_min: int | None = None, n_max: int | None = None):
        self.n_min_cfg, self.n_max_cfg = n_min, n_max

    def bind(self, ctx: SamplerContext) -> None:
        super().bind(ctx)
        b = ctx.batch_size
        self.n_min = self.n_min_cfg if self.n_min_cfg is not None else max(1, b // 4)
        self.n_max = self.n_max_cfg if self.n_max_cfg is not None else 2 * b
        if not 1 <= self.n_min <= self.n_max:
            raise ConfigError(
                f"{self.name}: need 1 <= n_min <= n_max, got n_min={self.n_min}, n_max={self.n_max}"
            )
        m = len(ctx.modalities)
        self.quotas = np.full(m, int(np.clip(b, self.n_min, self.n_max)), dtype=np.int64)
        # one stream per modality, plus one for the paired batch where the method wants it
        self._streams = [np.empty(0, dtype=np.int64) for _ in range(m + ctx.paired_with_quotas)]
        self._steps_per_epoch = ctx.steps_per_epoch
        self.plan = ctx.quota_plan

    def set_quotas(self, quotas) -> None:
        """The quotas of the coming iterations; they are in [n_min, n_max] already (an action
        map or a rule clamps them where it computes them), so this only checks."""
        q = np.asarray(quotas, dtype=np.int64)
        if q.shape != self.quotas.shape:
            raise ValueError(f"quotas need shape {self.quotas.shape}, got {q.shape}")
        if q.min() < self.n_min or q.max() > self.n_max:
            raise ValueError(f"quotas must be in [{self.n_min}, {self.n_max}], got {q.tolist()}")
        self.quotas = q

    def start_epoch(self, epoch: int, scorer: Scorer, last_epoch: dict | None = None) -> None:
        self._step = 0

    def _take(self, j: int, k: int) -> np.ndarray:
        stream = self._streams[j]
        while stream.size < k:
            stream = np.concatenate([stream, self.rng.permutation(self.ctx.n_train)])
        self._streams[j] = stream[k:]
        return stream[:k]

    def next_batch(self) -> Batch | None:
        if self._step >= self._steps_per_epoch:
            return None
        self._step += 1
        remaining = self.ctx.n_train - (self._step - 1) * self.ctx.batch_size
        rows, paired = self.plan.draw(self.quotas, self._take, self.ctx.paired_with_quotas,
                                      remaining)
        batch = dict(zip(self.ctx.modalities, rows))
        if paired is not None:
            batch[PAIRED] = paired
        return batch

    def log_metrics(self, scope: str = "epoch") -> dict[str, float]:
        return {f"quota_{m}": float(q) for m, q in zip(self.ctx.modalities, self.quotas)}

    def config(self) -> dict:
        return {"n_min": self.n_min, "n_max": self.n_max}


class FixedQuotaSampler(QuotaSampler):
    """Fixed per-modality quotas for the whole run (`fixed:quotas=16/128`): the extreme
    policies a quota's leverage is measured with, and a baseline a learned policy must beat."""

    name = "fixed"
    option_attributes = ("fixed", "n_min", "n_max", "n_min_cfg", "n_max_cfg")

    def __init__(self, quotas: list[int] | None = None, n_min: int | None = None,
                 n_max: int | None = None):
        super().__init__(n_min, n_max)
        values = quotas if isinstance(quotas, (list, tuple)) else [quotas]
        if quotas is None or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values
        ):
            raise ConfigError(f"fixed: 'quotas' needs one integer >= 1 per modality "
                              f"(e.g. quotas=16/128), got {quotas!r}")
        self.fixed = [int(v) for v in values]

    def bind(self, ctx: SamplerContext) -> None:
        if len(self.fixed) != len(ctx.modalities):
            raise ConfigError(f"fixed: 'quotas' needs {len(ctx.modalities)} values, one per "
                              f"modality {ctx.modalities}, got {self.fixed}")
        lo, hi = min(self.fixed), max(self.fixed)
        if hi > MAX_QUOTA_BATCHES * ctx.batch_size:
            raise ConfigError(f"fixed: 'quotas' must be at most {MAX_QUOTA_BATCHES} x the batch "
                              f"size ({MAX_QUOTA_BATCHES * ctx.batch_size}), got {hi}")
        # the fixed quotas set the clamp unless given: a fixed policy is never clipped
        self.n_min_cfg = lo if self.n_min_cfg is None else self.n_min_cfg
        self.n_max_cfg = hi if self.n_max_cfg is None else self.n_max_cfg
        super().bind(ctx)
        if lo < self.n_min or hi > self.n_max:
            raise ConfigError(f"fixed: 'quotas' {self.fixed} must be in [n_min, n_max] = "
                              f"[{self.n_min}, {self.n_max}]")
        self.set_quotas(self.fixed)

    def load_state_dict(self, state: dict) -> None:
        """The streams from the checkpoint, the quotas from this sampler's options
        (`option_attributes`): a PBT trial that clones another's checkpoint with mutated
        quotas trains with its own."""
        super().load_state_dict(state)
        self.set_quotas(self.fixed)

    def config(self) -> dict:
        return {"quotas": list(self.fixed), **super().config()}


def dus_quotas(
    s_hat: np.ndarray, batch_size: int, strength: float, n_min: int, n_max: int
) -> np.ndarray:
    """DUS-H's quotas for cumulative scores `s_hat` (see the module docstring): weights
    exp(-κ (ŝ_j - mean ŝ)) share the budget M·B (`spread_budget`)."""
    values = [float(v) for v in s_hat]
    mean = sum(values) / len(values)
    return spread_budget([math.exp(-strength * (v - mean)) for v in values], batch_size,
                         n_min, n_max)


class DUSHeuristicSampler(QuotaSampler):
    """DUS-H: after every step, quotas follow the learning status."""

    name = "dus-h"
    needs_status = True
    option_attributes = ("strength",)

    def __init__(self, strength: float = 4.0, n_min: int | None = None,
                 n_max: int | None = None):
        super().__init__(n_min, n_max)
        if strength < 0 or not math.isfinite(strength):
            raise ConfigError(f"dus-h: 'strength' must be a finite number >= 0, got {strength}")
        self.strength = strength

    def feedback(self, step: StepFeedback) -> None:
        status = step.status
        if status.t.min() == 0:  # every modality needs a score first
            return
        self.quotas = dus_quotas(
            status.s_hat, self.ctx.batch_size, self.strength, self.n_min, self.n_max
        )

    def config(self) -> dict:
        return {"strength": self.strength, **super().config()}
