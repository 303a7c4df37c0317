"""BSS samplers: a curriculum from balanced to imbalanced samples (docs/architecture.md).

Every BSS sampler scores the training set itself, from forward-pass outputs the trainer
delivers: a `Scorer` (a no-grad pass over the training set, on the fusion layer's logits, as
the authors measure) or, where it `observes`, the detached logits of every trained batch,
kept until the epoch's batches run out and then turned into per-sample terms in one pass
(no extra forward). The terms are `mmbalance.balance.stacked_balance_terms`, with the
sampler's loss weights: its own `loss_weights`, else the training loss's
(`SamplerContext.loss_weights`: joint-uni's), else a plain sum.

BSS-H ranks the training set by balance degree d (ascending) and at epoch e trains on the
first floor(N λ_e) samples, shuffled; the ranking comes from a no-grad scoring pass at
epoch 0 and, optionally, again every `rerank` epochs (the public code ranks once). T_grow,
the epoch at which the whole set is in, defaults to 0.4 × the run's epochs: the paper's 40
of 100, so a shorter run still reaches all of its data.
BSS-L rescores every epoch and draws the epoch's whole order without replacement with
weights 2.01 - d. Its scores come from a no-grad pass over the training set before the
epoch (`score=pass`, the default, as the authors) or, with `score=forward`, from the
previous epoch's training forward pass (no extra pass, but the scores are an epoch old).
The authors' draw is a permutation, so the weights only change the order within an epoch;
`draw=replacement` draws N samples with replacement instead, so they change how often each
sample is seen (a deviation from the paper).
The bucket sampler of the sequence env (`bss_buckets.py`) is a BSS sampler too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from mmbalance.balance import stacked_balance_terms
from mmbalance.errors import ConfigError
from mmbalance.policies.bss_measure import (
    balance_degree,
    balance_ranking,
    pacing_fraction,
    pacing_size,
    sampling_probs,
    stable_argsort,
)
from mmbalance.trainers.sampler import (
    Batch,
    EpochOrderSampler,
    ForwardPass,
    SamplerContext,
    Scorer,
    StepFeedback,
)


def _check_weights(name: str, weights) -> tuple[float, ...] | None:
    if weights is None:
        return None
    w = tuple(float(v) for v in weights)
    if any(not math.isfinite(v) or v < 0 for v in w) or not any(v > 0 for v in w):
        raise ConfigError(f"{name}: 'loss_weights' must be >= 0 and not all 0, got {list(w)}")
    return w


class BSSSampler(EpochOrderSampler):
    """What every BSS sampler shares: loss weights, measuring forward-pass outputs, the
    observed training passes of an epoch, per-sample degrees and their log."""

    # a rescore needs every sample seen again since the last one (else a scoring pass)
    forget_observed = False

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
        # per-sample terms from observed training passes (NaN: not seen since the last use)
        self._sim = np.full(ctx.n_train, np.nan)
        self._loss = np.full(ctx.n_train, np.nan)
        self._seen: np.ndarray | None = None  # this epoch's observed rows, their logits, labels
        self._seen_logits: torch.Tensor | None = None
        self._seen_y: torch.Tensor | None = None

    def measure(self, out: ForwardPass) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample (similarity, weighted loss) of `out`'s samples, with this sampler's
        loss weights."""
        sim, loss = stacked_balance_terms(out.logits, out.y, self.loss_weights)
        return sim.cpu().numpy(), loss.cpu().numpy()

    def feedback(self, step: StepFeedback) -> None:
        """Keep a trained batch's logits; the epoch's terms come from them in one pass."""
        out = step.forward
        if out is None:
            return
        device = out.logits.device
        if self._seen_logits is None or self._seen_logits.device != device:
            n = self.ctx.n_train
            if self._seen_logits is None:
                m1, _, c = out.logits.shape
                self._seen_logits = torch.empty((n, m1, c), device=device)
                self._seen_y = torch.empty(n, dtype=out.y.dtype, device=device)
                self._seen = np.zeros(n, dtype=bool)
            else:  # restored from a checkpoint onto another device
                self._seen_logits = self._seen_logits.to(device)
                self._seen_y = self._seen_y.to(device)
        idx = torch.as_tensor(out.rows, device=device)
        self._seen_logits[idx] = out.logits.transpose(0, 1)
        self._seen_y[idx] = out.y
        self._seen[out.rows] = True

    def next_batch(self) -> Batch | None:
        batch = super().next_batch()
        if batch is None:  # the epoch is over: fold in what it observed
            self._fold_observed()
        return batch

    def _fold_observed(self) -> None:
        """The per-sample terms of every sample trained since the last fold, computed from
        the training forward passes' own logits (no extra forward)."""
        if self._seen is None or not self._seen.any():
            return
        rows = np.flatnonzero(self._seen)
        idx = torch.as_tensor(rows, device=self._seen_logits.device)
        logits = self._seen_logits[idx]
        sim, loss = self.measure(ForwardPass(rows, logits.transpose(0, 1), self._seen_y[idx]))
        self._sim[rows] = sim
        self._loss[rows] = loss
        self._seen[:] = False

    def terms(self, scorer: Scorer, fresh: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Every training sample's (similarity, loss): from the observed training passes
        where every sample has them (unless `fresh`), else from a scoring pass."""
        if fresh or np.isnan(self._sim).any():
            sim, loss = self.measure(scorer())
        else:
            sim, loss = self._sim.copy(), self._loss.copy()
        if self.forget_observed:
            self._sim[:] = np.nan
            self._loss[:] = np.nan
        return sim, loss

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self._seen is None or not self._seen.any():  # between epochs: nothing pending
            for key in ("_seen", "_seen_logits", "_seen_y"):
                state["attributes"].pop(key, None)
        else:
            state["attributes"]["_seen_logits"] = self._seen_logits.cpu()
            state["attributes"]["_seen_y"] = self._seen_y.cpu()
        return state

    def load_state_dict(self, state: dict) -> None:
        self._seen = self._seen_logits = self._seen_y = None
        super().load_state_dict(state)

    def log_metrics(self, scope: str = "epoch") -> dict[str, float]:
        return dict(self.metrics)


class BSSHeuristicSampler(BSSSampler):
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
            sim, loss = self.measure(scorer())
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

    def config(self) -> dict:
        return {"lambda0": self.lambda0, "t_grow": self.t_grow, "rerank": self.rerank,
                "loss_weights": list(self.loss_weights or ())}


class BSSLearnedSampler(BSSSampler):
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

    def epoch_order(self, epoch: int, scorer: Scorer) -> np.ndarray:
        sim, loss = self.terms(scorer, fresh=self.score == "pass")
        self.degree = balance_degree(sim, loss)
        probs = sampling_probs(self.degree)
        n = self.ctx.n_train
        if self.draw == "replacement":  # the weights change how often a sample is seen
            order = self.rng.choice(n, size=n, replace=True, p=probs)
        else:
            # Gumbel-top-k: the same law as drawing one at a time without replacement, each
            # draw proportional to the remaining weights (torch.multinomial's), O(N log N).
            keys = np.log(probs) + self.rng.gumbel(size=n)
            order = stable_argsort(-keys)
        self.metrics = {
            "subset_size": float(n),
            "mean_degree": float(self.degree.mean()),
            "first_half_mean_degree": float(self.degree[order[: n // 2]].mean()),
        }
        return order

    def config(self) -> dict:
        return {"score": self.score, "draw": self.draw,
                "loss_weights": list(self.loss_weights or ())}
