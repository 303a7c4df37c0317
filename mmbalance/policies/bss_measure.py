"""BSS's measurer and pacing function (DESIGN.md section 5).

Per training sample i: `sim_i` is the cosine between the modalities' softmax outputs (the
mean of pairwise cosines for M > 2) and `loss_i = sum_j w_j CE(z_i^(j)) + w_mm CE(z_i^(mm))`.
Both are min-max normalised over the training set; the balance degree is
`d_i = (1 - S̃_i) + L̃_i` in [0, 2]: low means the modalities agree and the sample is easy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F


def balance_terms(
    uni_logits: Sequence[torch.Tensor],
    mm_logits: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (similarity, weighted loss), detached. `weights` = per-modality + mm."""
    if len(weights) != len(uni_logits) + 1:
        raise ValueError(f"need {len(uni_logits) + 1} loss weights, got {len(weights)}")
    with torch.no_grad():
        probs = [F.softmax(z.detach(), dim=-1) for z in uni_logits]
        pair_cos = [
            F.cosine_similarity(probs[a], probs[b], dim=-1)
            for a in range(len(probs))
            for b in range(a + 1, len(probs))
        ]
        sim = torch.stack(pair_cos).mean(0)
        loss = weights[-1] * F.cross_entropy(mm_logits.detach(), y, reduction="none")
        for w, z in zip(weights[:-1], uni_logits):
            loss = loss + w * F.cross_entropy(z.detach(), y, reduction="none")
    return sim, loss


def _minmax(v: np.ndarray) -> np.ndarray:
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 0.0:
        return np.zeros_like(v)
    return (v - lo) / (hi - lo)


def balance_degree(sim: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """d = (1 - minmax(sim)) + minmax(loss), in [0, 2]; low = balanced."""
    return (1.0 - _minmax(np.asarray(sim, dtype=np.float64))) + _minmax(
        np.asarray(loss, dtype=np.float64)
    )


def balance_ranking(d: np.ndarray) -> np.ndarray:
    """Sample indices, most balanced first (stable, so ties keep index order)."""
    return np.argsort(d, kind="stable")


def sampling_probs(d: np.ndarray, offset: float = 2.01) -> np.ndarray:
    """BSS-L's probabilities (offset - d) / sum; offset > 2 keeps every weight positive."""
    w = offset - np.asarray(d, dtype=np.float64)
    return w / w.sum()


def pacing_fraction(epoch: int, lambda0: float = 0.1, t_grow: float = 40.0) -> float:
    """Root competence pacing: min(1, sqrt((1 - λ0²) / T_grow · (e + 1) + λ0²)), e 0-based."""
    return min(1.0, math.sqrt((1.0 - lambda0**2) / t_grow * (epoch + 1) + lambda0**2))


def pacing_size(n: int, epoch: int, lambda0: float = 0.1, t_grow: float = 40.0) -> int:
    """How many of the most balanced samples BSS-H trains on at this epoch (at least 1)."""
    return max(1, math.floor(n * pacing_fraction(epoch, lambda0, t_grow)))
