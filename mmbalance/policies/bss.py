"""BSS samplers: a curriculum from balanced to imbalanced samples (DESIGN.md section 5).

BSS-H ranks the training set by balance degree d (ascending) and at epoch e trains on the
first floor(N λ_e) samples, shuffled; the ranking comes from a no-grad scoring pass at
epoch 0 and, optionally, again every `rerank` epochs (the public code ranks once). T_grow,
the epoch at which the whole set is in, defaults to 0.4 × the run's epochs: the paper's 40
of 100, so a shorter run still reaches all of its data.
BSS-L rescores every epoch and draws the epoch's whole order without replacement with
weights 2.01 - d. Its scores come from a no-grad pass over the training set before the
epoch (`score=pass`, the default, as the authors) or, with `score=forward`, from the
previous epoch's training forward pass (no extra pass, but the scores lag: see README).
The authors' draw is a permutation, so the weights only change the order within an epoch;
`draw=replacement` draws N samples with replacement instead, so they change how often each
sample is seen (a deviation, measured in the leverage benchmark).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mmbalance.errors import ConfigError
from mmbalance.policies.base import EpochOrderSampler, SamplerContext, Scorer
from mmbalance.policies.bss_measure import (
    balance_degree,
    balance_ranking,
    pacing_fraction,
    pacing_size,
    sampling_probs,
)


def _check_weights(name: str, weights) -> tuple[float, ...] | None:
    if weights is None:
        return None
    w = tuple(float(v) for v in weights)
    if any(not math.isfinite(v) or v < 0 for v in w) or not any(v > 0 for v in w):
        raise ConfigError(f"{name}: 'loss_weights' must be >= 0 and not all 0, got {list(w)}")
    return w


class _BSSBase(EpochOrderSampler):
    def __init__(self, loss_weights: Sequence[float] | None = None):
        self.loss_weights = _check_weights(self.name, loss_weights)

    def bind(self, ctx: SamplerContext) -> None:
        super().bind(ctx)
        m = len(ctx.modalities)
        if self.loss_weights is None:  # the training loss's weights, else a plain sum
            self.loss_weights = ctx.loss_weights or (1.0,) * (m + 1)
        if len(self.loss_weights) != m + 1:
            raise ConfigError(
                f"{self.name}: 'loss_weights' needs {m + 1} values (one per modality, then "
                f"the multimodal loss), got {list(self.loss_weights)}"
            )
        self.degree = np.zeros(ctx.n_train)
        self.metrics: dict[str, float] = {}


class BSSHeuristicSampler(_BSSBase):
    name = "bss-h"

    def __init__(
        self,
        lambda0: float = 0.1,
        t_grow: float | None = None,
        rerank: int = 0,
        loss_weights: Sequence[float] | None = None,
    ):
        super().__init__(loss_weights)
        if not 0.0 < lambda0 <= 1.0:
            raise ConfigError(f"bss-h: 'lambda0' must be in (0, 1], got {lambda0}")
        if t_grow is not None and not (math.isfinite(t_grow) and t_grow > 0):
            raise ConfigError(f"bss-h: 't_grow' must be > 0, got {t_grow}")
        if rerank < 0:
            raise ConfigError(f"bss-h: 'rerank' must be >= 0 (0 = rank once), got {rerank}")
        self.lambda0, self.t_grow, self.rerank = lambda0, t_grow, int(rerank)
        self.ranking: np.ndarray | None = None

    def bind(self, ctx: SamplerContext) -> None:
        super().bind(ctx)
        if self.t_grow is None:  # the paper's 40 of 100 epochs, scaled to this run's budget
            self.t_grow = max(1.0, 0.4 * ctx.epochs)

    def epoch_order(self, epoch: int, scorer: Scorer) -> np.ndarray:
        if self.ranking is None or (self.rerank and epoch % self.rerank == 0):
            sim, loss = scorer()
            self.degree = balance_degree(sim, loss)
            self.ranking = balance_ranking(self.degree)
        size = pacing_size(self.ctx.n_train, epoch, self.lambda0, self.t_grow)
        subset = self.ranking[:size]
        self.metrics = {
            "subset_size": float(size),
            "pacing": pacing_fraction(epoch, self.lambda0, self.t_grow),
            "subset_mean_degree": float(self.degree[subset].mean()),
        }
        return self.rng.permutation(subset)

    def log_metrics(self) -> dict[str, float]:
        return dict(self.metrics)

    def config(self) -> dict:
        return {"lambda0": self.lambda0, "t_grow": self.t_grow, "rerank": self.rerank,
                "loss_weights": list(self.loss_weights or ())}


class BSSLearnedSampler(_BSSBase):
    name = "bss-l"
    SCORES = ("pass", "forward")
    DRAWS = ("order", "replacement")

    def __init__(self, score: str = "pass", draw: str = "order",
                 loss_weights: Sequence[float] | None = None):
        super().__init__(loss_weights)
        if score not in self.SCORES:
            raise ConfigError(f"bss-l: 'score' got {score!r}, allowed {list(self.SCORES)}")
        if draw not in self.DRAWS:
            raise ConfigError(f"bss-l: 'draw' got {draw!r}, allowed {list(self.DRAWS)}")
        self.score, self.draw = score, draw
        self.observes = score == "forward"

    def bind(self, ctx: SamplerContext) -> None:
        super().bind(ctx)
        self._sim = np.full(ctx.n_train, np.nan)
        self._loss = np.full(ctx.n_train, np.nan)

    def observe(self, idx: np.ndarray, sim: np.ndarray, loss: np.ndarray) -> None:
        self._sim[idx] = sim
        self._loss[idx] = loss

    def epoch_order(self, epoch: int, scorer: Scorer) -> np.ndarray:
        if self.score == "pass" or np.isnan(self._sim).any():
            sim, loss = scorer()
        else:
            sim, loss = self._sim, self._loss
        self.degree = balance_degree(sim, loss)
        probs = sampling_probs(self.degree)
        n = self.ctx.n_train
        if self.draw == "replacement":  # the weights change how often a sample is seen
            order = self.rng.choice(n, size=n, replace=True, p=probs)
        else:
            # Gumbel-top-k: the same law as drawing one at a time without replacement, each
            # draw proportional to the remaining weights (torch.multinomial's), O(N log N).
            keys = np.log(probs) + self.rng.gumbel(size=n)
            order = np.argsort(-keys, kind="stable")
        self.metrics = {
            "subset_size": float(n),
            "mean_degree": float(self.degree.mean()),
            "first_half_mean_degree": float(self.degree[order[: n // 2]].mean()),
        }
        return order

    def log_metrics(self) -> dict[str, float]:
        return dict(self.metrics)

    def config(self) -> dict:
        return {"score": self.score, "draw": self.draw,
                "loss_weights": list(self.loss_weights or ())}
