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


def classification_metrics(
    mm_logits: np.ndarray, uni_logits: dict[str, np.ndarray], y: np.ndarray, num_classes: int
) -> dict[str, float]:
    """Metrics from logits; mAP is the mean over classes present in y of average precision.
    Every class's ranking comes from one sort of the whole logit matrix (a stable sort per
    column: the same order, so the same numbers, as sorting each class on its own)."""
    pred = mm_logits.argmax(1)
    out = {"acc": float((pred == y).mean()), "f1": macro_f1(y, pred, num_classes)}
    present = np.unique(y)
    scores = np.ascontiguousarray(mm_logits.T[present])  # (classes present, n)
    order = np.argsort(-scores, axis=1, kind="mergesort")
    ranked = np.take_along_axis(scores, order, 1)
    true_pos = np.cumsum(y[order] == present[:, None], axis=1)
    # per class, the last position of each run of tied scores: tied scores form one step
    # of the precision-recall curve (scikit-learn's definition)
    last = np.ones(ranked.shape, dtype=bool)
    last[:, :-1] = np.diff(ranked, axis=1) != 0
    precision = true_pos / np.arange(1, ranked.shape[1] + 1)
    recall = true_pos / np.maximum(1, np.bincount(y, minlength=num_classes)[present])[:, None]
    out["map"] = float(np.mean([
        np.sum(np.diff(np.concatenate(([0.0], recall[j][last[j]]))) * precision[j][last[j]])
        for j in range(len(present))]))
    for m, z in uni_logits.items():
        out[f"acc_{m}"] = float((z.argmax(1) == y).mean())
    return out
