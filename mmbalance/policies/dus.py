"""DUS: per-modality sampling quotas driven by the cumulative modality discrepancy.

`QuotaSampler` draws, every iteration, `quota[j]` samples for modality j from that
modality's own stream (a fresh permutation of the training set whenever it runs out), so
the weak modality can see more samples than the strong one. An epoch is ceil(N / B)
iterations. Subclasses (or an RL policy, through `set_quotas`) decide the quotas.

DUS-H's rule (the paper's exact rule is not public; this is ours): with gap
`g_j = ŝ_j - mean(ŝ)` and strength κ, `n_j ∝ exp(-κ g_j)`, scaled so the quotas sum to the
budget M·B, rounded and clamped to [n_min, n_max]. κ = 0 is uniform; the modality that is
behind (negative gap) gets more samples, the one ahead fewer.
"""

from __future__ import annotations

import math

import numpy as np

from mmbalance.errors import ConfigError
from mmbalance.policies.base import Batch, Sampler, SamplerContext, Scorer


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
        self._streams = [np.empty(0, dtype=np.int64) for _ in range(m)]
        self._steps_per_epoch = math.ceil(ctx.n_train / b)

    def set_quotas(self, quotas) -> None:
        q = np.asarray(quotas, dtype=np.int64)
        if q.shape != self.quotas.shape:
            raise ValueError(f"quotas need shape {self.quotas.shape}, got {q.shape}")
        self.quotas = np.clip(q, self.n_min, self.n_max)

    def start_epoch(self, epoch: int, scorer: Scorer) -> None:
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
        return {m: self._take(j, int(self.quotas[j])) for j, m in enumerate(self.ctx.modalities)}

    def log_metrics(self) -> dict[str, float]:
        return {f"quota_{m}": float(q) for m, q in zip(self.ctx.modalities, self.quotas)}

    def config(self) -> dict:
        return {"n_min": self.n_min, "n_max": self.n_max}


def dus_quotas(
    s_hat: np.ndarray, batch_size: int, strength: float, n_min: int, n_max: int
) -> np.ndarray:
    """DUS-H's quotas for cumulative scores `s_hat` (see the module docstring).

    Plain Python over the M values: it runs after every training step, and for a handful
    of modalities numpy's per-call overhead would cost more than the arithmetic.
    """
    values = [float(v) for v in s_hat]
    mean = sum(values) / len(values)
    w = [math.exp(-strength * (v - mean)) for v in values]
    scale = batch_size * len(values) / sum(w)
    q = [min(n_max, max(n_min, round(scale * wi))) for wi in w]
    return np.asarray(q, dtype=np.int64)


class DUSHeuristicSampler(QuotaSampler):
    """DUS-H: after every step, quotas follow the learning status."""

    name = "dus-h"

    def __init__(self, strength: float = 4.0, n_min: int | None = None, n_max: int | None = None):
        super().__init__(n_min, n_max)
        if strength < 0 or not math.isfinite(strength):
            raise ConfigError(f"dus-h: 'strength' must be a finite number >= 0, got {strength}")
        self.strength = strength

    def update(self, status) -> None:
        if status.t.min() == 0:  # every modality needs a score first
            return
        self.quotas = dus_quotas(
            status.s_hat, self.ctx.batch_size, self.strength, self.n_min, self.n_max
        )

    def config(self) -> dict:
        return {"strength": self.strength, **super().config()}
