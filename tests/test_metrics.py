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
