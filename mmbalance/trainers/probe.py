"""Linear-probe accuracy per modality: what each frozen encoder has learned, head aside.

After training, a multinomial logistic regression is fit on one modality's encoder features
of the training split (standardised with the training split's statistics) and scored on the
test split. The field reads this as the measure of modality degeneration: a jointly trained
model can predict well while its weak encoder has learned little, and a method's head (a
fusion layer, a shared head, separate heads) does not enter the number, so every method is
measured alike. The probe is deterministic (lbfgs from zero weights).
"""

from __future__ import annotations

import warnings

import numpy as np

PROBE_C = 1.0  # scikit-learn's default L2 strength, on standardised features
PROBE_MAX_ITER = 500


def probe_accuracy(
    train_features: np.ndarray, train_y: np.ndarray, test_features: np.ndarray,
    test_y: np.ndarray,
) -> float:
    """Test accuracy of a logistic regression fit on (train_features, train_y)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    xtr = np.asarray(train_features, dtype=np.float64).reshape(len(train_y), -1)
    xte = np.asarray(test_features, dtype=np.float64).reshape(len(test_y), -1)
    mean, std = xtr.mean(0), xtr.std(0)
    std[std < 1e-8] = 1.0  # a dead feature (e.g. a ReLU that never fires) stays 0
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    if np.unique(train_y).size < 2:
        return float((test_y == train_y[0]).mean())
    clf = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER)
    # one BLAS thread: on small problems more threads cost more than they give (measured
    # 10x slower with two threads on a busy 2-core machine)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, train_y)
    return float((clf.predict(xte) == test_y).mean())
