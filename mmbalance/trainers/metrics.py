"""Evaluation metrics: multimodal accuracy, macro-F1, mAP and each modality's accuracy."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import average_precision_score, f1_score


def classification_metrics(
    mm_logits: np.ndarray, uni_logits: dict[str, np.ndarray], y: np.ndarray, num_classes: int
) -> dict[str, float]:
    """Metrics from logits; mAP is the mean over classes present in y of average precision."""
    pred = mm_logits.argmax(1)
    out = {
        "acc": float((pred == y).mean()),
        "f1": float(f1_score(y, pred, average="macro", labels=np.arange(num_classes), zero_division=0)),
    }
    present = np.unique(y)
    onehot = np.eye(num_classes)[y][:, present]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["map"] = float(average_precision_score(onehot, mm_logits[:, present], average="macro"))
    for m, z in uni_logits.items():
        out[f"acc_{m}"] = float((z.argmax(1) == y).mean())
    return out
