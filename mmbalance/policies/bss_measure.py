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


def true_class_log_probs(
    uni_logits: Sequence[torch.Tensor], y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked log-softmax (M, n, C) of detached unimodal logits and its true-class column (M, n).

    The learning status (s_t, unimodal CE) and the BSS terms all read these, so a training
    step computes them once.
    """
    with torch.no_grad():
        logp = F.log_softmax(torch.stack([z.detach() for z in uni_logits]), dim=-1)
        index = y.view(1, -1, 1).expand(logp.shape[0], -1, 1)
        return logp, logp.gather(2, index).squeeze(2)


def terms_from_log_probs(
    logp: torch.Tensor,
    true_logp: torch.Tensor,
    mm_logits: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (similarity, weighted loss) from `true_class_log_probs` output."""
    m = logp.shape[0]
    if len(weights) != m + 1:
        raise ValueError(f"need {m + 1} loss weights, got {len(weights)}")
    with torch.no_grad():
        p = logp.exp()
        norms = p.norm(dim=-1)  # (M, n)
        if m == 2:  # the common case, in as few kernels as possible (it runs every step)
            sim = (p[0] * p[1]).sum(-1) / (norms[0] * norms[1])
        else:
            gram = torch.einsum("anc,bnc->abn", p, p) / (norms[:, None] * norms[None, :])
            a, b = torch.triu_indices(m, m, 1, device=logp.device)
            sim = gram[a, b].mean(0)
        mm_true = F.log_softmax(mm_logits.detach(), dim=-1).gather(1, y[:, None]).squeeze(1)
        if all(w == weights[0] for w in weights[:-1]):  # equal unimodal weights: one sum
            loss = -float(weights[0]) * true_logp.sum(0) - float(weights[-1]) * mm_true
        else:
            w = torch.tensor(weights[:-1], dtype=logp.dtype, device=logp.device)
            loss = -(w[:, None] * true_logp).sum(0) - float(weights[-1]) * mm_true
    return sim, loss


def balance_terms(
    uni_logits: Sequence[torch.Tensor],
    mm_logits: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (similarity, weighted loss), detached. `weights` = per-modality + mm."""
    logp, true_logp = true_class_log_probs(uni_logits, y)
    return terms_from_log_probs(logp, true_logp, mm_logits, y, weights)


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
