"""The numpy metrics agree with scikit-learn's definitions."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from mmbalance.trainers.metrics import classification_metrics


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n, c = 300, 6
    y = rng.integers(0, c - 1, size=n)  # class c-1 never occurs: present-classes mAP, F1 zeros
    logits = np.round(rng.normal(size=(n, c)) + 2 * np.eye(c)[y], 1)  # rounding makes ties
    uni = {"a": rng.normal(size=(n, c))}
    got = classification_metrics(logits, uni, y, c)
    assert got["acc"] == pytest.approx((logits.argmax(1) == y).mean())
    assert got["f1"] == pytest.approx(
        f1_score(y, logits.argmax(1), average="macro", labels=np.arange(c), zero_division=0))
    present = np.unique(y)
    onehot = np.eye(c)[y][:, present]
    assert got["map"] == pytest.approx(
        average_precision_score(onehot, logits[:, present], average="macro"))
    assert got["acc_a"] == pytest.approx((uni["a"].argmax(1) == y).mean())


def _reference_map(logits, y, c):
    """Average precision per present class from a stable sort of each class on its own."""
    aps = []
    for j in np.unique(y):
        order = np.argsort(-logits[:, j], kind="stable")
        ranked, hit = logits[order, j], y[order] == j
        last = np.append(np.diff(ranked) != 0, True)
        tp = np.cumsum(hit)
        precision, recall = tp / np.arange(1, len(y) + 1), tp / hit.sum()
        aps.append(np.sum(np.diff(np.concatenate(([0.0], recall[last]))) * precision[last]))
    return float(np.mean(aps))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scores", ["ties", "nan", "inf", "signed zeros"])
def test_map_is_the_stable_sorts_to_the_bit(scores, dtype):
    """Finite scores are ranked by the fastest sort, non-finite ones by the stable one; the
    numbers are those of a stable sort per class either way."""
    rng = np.random.default_rng(7)
    n, c = 400, 5
    y = rng.integers(0, c, size=n)
    logits = np.round(rng.normal(size=(n, c)), 1).astype(dtype)
    if scores == "signed zeros":  # -0.0 and 0.0 tie
        logits[np.abs(logits) < 0.5] = 0.0
        logits[rng.random(logits.shape) < 0.3] *= -1
    elif scores != "ties":
        logits[rng.integers(0, n, size=20), rng.integers(0, c, size=20)] = (
            np.nan if scores == "nan" else np.inf)
    with np.errstate(invalid="ignore"):
        assert classification_metrics(logits, {}, y, c)["map"] == _reference_map(logits, y, c)
