"""Evaluation metrics: multimodal accuracy, macro-F1, mAP and each modality's accuracy.

Computed with numpy (scikit-learn's definitions, checked against it in the tests): they run at
every epoch end of every run, and for small models scikit-learn's input checks cost more
than the evaluation itself.
"""

from __future__ import annotations

import numpy as np


def macro_f1(y: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """F1 averaged over all classes 0..C-1; a class with no true and no predicted sample
    scores 0 (scikit-learn's `zero_division=0`)."""
    tp = np.bincount(y[pred == y], minlength=num_classes).astype(np.float64)
    support = np.bincount(y, minlength=num_classes)
    predicted = np.bincount(pred, minlength=num_classes)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(num_classes), where=denom > 0)
    return float(f1.mean())


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the step precision-recall curve, ties grouped (scikit-learn's definition)."""
    order = np.argsort(-scores, kind="mergesort")
    s, pos = scores[order], positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(pos)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    recall = tps / max(1, pos.sum())
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def classification_metrics(
    mm_logits: np.ndarray, uni_logits: dict[str, np.ndarray], y: np.ndarray, num_classes: int
) -> dict[str, float]:
    """Metrics from logits; mAP is the mean over classes present in y of average precision."""
    pred = mm_logits.argmax(1)
    out = {"acc": float((pred == y).mean()), "f1": macro_f1(y, pred, num_classes)}
    present = np.unique(y)
    out["map"] = float(np.mean([average_precision(mm_logits[:, c], y == c) for c in present]))
    for m, z in uni_logits.items():
        out[f"acc_{m}"] = float((z.argmax(1) == y).mean())
    return out
