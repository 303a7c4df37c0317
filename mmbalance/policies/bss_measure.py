"""BSS's balance degree and pacing: the scheduler side of the BSS authors' measurer.

The per-sample terms (`sim_i`, the weighted loss `loss_i`) come from `mmbalance/balance.py`.
Both are min-max normalised over the training set; the balance degree is
`d_i = (1 - S̃_i) + L̃_i` in [0, 2]: low means the modalities agree and the sample is easy.
BSS-H trains on the lowest degrees first, paced by the root competence function; BSS-L draws
with weights 2.01 - d. Sources: docs/architecture.md.
"""

from __future__ import annotations

import math

import numpy as np


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


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """`np.argsort(keys, kind="stable")` (ascending; ties and NaNs keep index order), at the
    cost of a quicksort where no two keys tie: distinct finite keys have one sorted order, so
    any sort finds it. It runs every epoch over the training set; the stable sort is several
    times slower and only needed when keys repeat or are not finite."""
    order = np.argsort(keys)
    ranked = keys[order]
    if ranked.size == 0 or (np.isfinite(ranked[0]) and np.isfinite(ranked[-1])
                            and (ranked[1:] != ranked[:-1]).all()):
        return order
    return np.argsort(keys, kind="stable")


def balance_ranking(d: np.ndarray) -> np.ndarray:
    """Sample indices, most balanced first (stable, so ties keep index order)."""
    return stable_argsort(np.asarray(d))


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
