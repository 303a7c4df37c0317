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
    Every class's ranking comes from one sort of the whole logit matrix."""
    pred = mm_logits.argmax(1)
    out = {"acc": float((pred == y).mean()), "f1": macro_f1(y, pred, num_classes)}
    support = np.bincount(y, minlength=num_classes)
    present = np.flatnonzero(support)
    scores = np.ascontiguousarray(mm_logits.T[present])  # (classes present, n)
    # Average precision reads the ranking only at the end of each run of tied scores, where
    # the count of positives so far does not depend on the order inside the run, so for
    # finite scores any sort gives the same numbers and the fastest one is used. A NaN or
    # infinite score is a run of its own (its difference to the next is not 0): there the
    # order matters, and it is the stable one (scikit-learn's).
    kind = "quicksort" if np.isfinite(scores).all() else "stable"
    order = np.argsort(-scores, axis=1, kind=kind)
    true_pos = np.cumsum(y[order] == present[:, None], axis=1)
    # per class, the last position of each run of tied scores: tied scores form one step
    # of the precision-recall curve (scikit-learn's definition). The sorted finite scores
    # are the same whichever sort ranked them, so a plain sort gives them.
    ranked = np.take_along_axis(scores, order, 1) if kind == "stable" else np.sort(-scores, 1)
    last = np.ones(ranked.shape, dtype=bool)
    last[:, :-1] = np.diff(ranked, axis=1) != 0
    per_class = last.sum(1)
    ranks = np.broadcast_to(np.arange(1, ranked.shape[1] + 1), ranked.shape)[last]
    hits = true_pos[last]
    precision = hits / ranks
    recall = hits / np.repeat(support[present], per_class)
    # the class rows one after another: each row's recall steps start from 0
    ends = np.cumsum(per_class)
    starts = ends - per_class
    step = np.empty_like(recall)
    np.subtract(recall[1:], recall[:-1], out=step[1:])
    step[starts] = recall[starts]
    area = step * precision
    out["map"] = float(np.mean([area[a:b].sum() for a, b in zip(starts.tolist(), ends.tolist())]))
    for m, z in uni_logits.items():
        out[f"acc_{m}"] = float((z.argmax(1) == y).mean())
    return out
