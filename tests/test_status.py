import numpy as np
import pytest

from mmbalance.balance import LearningStatus
from mmbalance.errors import ConfigError


def test_running_mean_is_the_mean_of_batch_scores():
    st = LearningStatus(["a", "v"])
    scores = [0.2, 0.4, 0.9, 0.5]
    st.fold([([s, 1 - s], [1.0, 2.0]) for s in scores])
    assert st.s_hat[0] == pytest.approx(np.mean(scores))
    assert st.s_hat[1] == pytest.approx(1 - np.mean(scores))
    assert st.s[0] == 0.5 and st.loss[1] == 2.0
    assert st.discrepancy == pytest.approx(abs(2 * np.mean(scores) - 1))


def test_ema_tracks_recent_scores_faster_than_mean():
    mean, ema = LearningStatus(["a", "v"]), LearningStatus(["a", "v"], "ema", 0.3)
    steps = [([s, 0.5], [0.0, 0.0]) for s in [0.1] * 50 + [0.9] * 10]
    for st in (mean, ema):
        st.fold(steps)
    assert ema.s_hat[0] > 0.8
    assert mean.s_hat[0] < 0.3


def test_only_trained_modalities_update_and_gap_for_three():
    st = LearningStatus(["r", "d", "f"])
    st.fold([([0.9, 0.6, 0.3], [0, 0, 0]), ([0.9, 0.0, 0.0], [0, 0, 0])],
            trained=[[True, True, True], [True, False, False]])
    assert list(st.t) == [2, 1, 1]
    assert st.discrepancy == pytest.approx(0.6)
    np.testing.assert_allclose(st.gap, [0.3, 0.0, -0.3])
    assert set(st.as_dict()) >= {"discrepancy", "s_hat_r", "s_d", "loss_f"}


def test_bad_accumulation():
    with pytest.raises(ConfigError, match="allowed"):
        LearningStatus(["a", "v"], "median")


@pytest.mark.parametrize("accumulation", ["mean", "ema"])
def test_folding_many_steps_is_folding_them_one_by_one(accumulation):
    """The trainer folds a run of steps at once; it must give the very same numbers as
    folding each step as it comes, and rows in the step log's column order."""
    rng = np.random.default_rng(0)
    steps = [(rng.random(3).tolist(), (3 * rng.random(3)).tolist()) for _ in range(40)]
    one, many = (LearningStatus(["r", "d", "f"], accumulation, 0.2) for _ in range(2))
    rows = []
    for step in steps:
        one.fold([step])
        rows.append(one.as_dict())
    folded = many.fold(steps)
    assert [dict(zip(many.keys(), r)) for r in folded] == rows  # exactly
    assert many.keys() == list(rows[0])  # in the step log's column order
    for key in ("t", "s", "s_hat", "loss"):
        assert np.array_equal(getattr(one, key), getattr(many, key))
    # the running mean is the plain mean of the batch scores, in float64
    if accumulation == "mean":
        assert one.s_hat[0] == pytest.approx(np.mean([s[0][0] for s in steps]), rel=1e-12)
