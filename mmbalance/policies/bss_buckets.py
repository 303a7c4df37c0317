"""A BSS sequence controlled from outside: a pacing fraction and weights over K buckets.

The training set is split into K buckets by quantiles of the balance degree d (bucket 0 the
most balanced). An epoch's sequence is `round(pacing · N)` samples drawn without replacement,
each with probability proportional to its bucket's weight (Gumbel-top-k), so the draw order
also runs from heavily to lightly weighted buckets. BSS-H is pacing λ_e with weight mass on
the low buckets; BSS-L is pacing 1 with weights 2.01 - d; uniform is pacing 1, equal weights.
Scores come from the previous epoch's training forward pass where every sample was seen,
otherwise from a no-grad scoring pass (`BSSSampler.terms`, shared with BSS-H and BSS-L).
"""

from __future__ import annotations

import numpy as np

from mmbalance.errors import ConfigError
from mmbalance.policies.bss import BSSSampler
from mmbalance.policies.bss_measure import balance_degree, stable_argsort
from mmbalance.trainers.sampler import SamplerContext, Scorer

WEIGHT_FLOOR = 1e-3  # a zero weight still leaves a sample drawable, last


class BucketSampler(BSSSampler):
    name = "buckets"
    observes = True
    forget_observed = True  # the next epoch must see every sample again to reuse them

    def __init__(self, buckets: int = 4, loss_weights=None):
        if buckets < 1:
            raise ConfigError(f"buckets: must be >= 1, got {buckets}")
        super().__init__(loss_weights)
        self.k = int(buckets)
        self.pacing = 1.0
        self.weights = np.ones(self.k)

    def bind(self, ctx: SamplerContext) -> None:
        super().bind(ctx)
        self.bucket_of = np.zeros(ctx.n_train, dtype=np.int64)
        self.bucket_degree = np.linspace(0.0, 2.0, self.k)  # before any scoring

    def set_action(self, pacing: float, weights) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.k,) or not np.all(np.isfinite(w)) or w.min() < 0:
            raise ValueError(f"bucket weights must be {self.k} finite values >= 0, got {w}")
        if not (np.isfinite(pacing) and 0.0 < pacing <= 1.0):
            raise ValueError(f"pacing must be in (0, 1], got {pacing}")
        self.pacing, self.weights = float(pacing), w

    def rescore(self, scorer: Scorer) -> None:
        sim, loss = self.terms(scorer)
        self.degree = balance_degree(sim, loss)
        edges = np.quantile(self.degree, np.linspace(0, 1, self.k + 1)[1:-1])
        self.bucket_of = np.searchsorted(edges, self.degree, side="right")
        self.bucket_degree = np.array([
            self.degree[self.bucket_of == b].mean() if (self.bucket_of == b).any() else 0.0
            for b in range(self.k)
        ])

    def epoch_order(self, epoch: int, scorer: Scorer) -> np.ndarray:
        self.rescore(scorer)
        n = self.ctx.n_train
        size = max(1, round(self.pacing * n))
        w = np.maximum(self.weights / max(self.weights.max(), 1e-12), WEIGHT_FLOOR)
        keys = np.log(w[self.bucket_of]) + self.rng.gumbel(size=n)
        order = stable_argsort(-keys)[:size]
        self.metrics = {"subset_size": float(size), "pacing": self.pacing,
                        "subset_mean_degree": float(self.degree[order].mean())}
        self.metrics.update({f"bucket_weight_{b}": float(v) for b, v in enumerate(w)})
        return order

    def config(self) -> dict:
        return {"buckets": self.k, "loss_weights": list(self.loss_weights or ())}
