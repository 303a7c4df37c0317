"""The `shifting` preset: the data family where the best quota share changes during training
(benchmarks/adaptivity.py)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from mmbalance.data.synthetic import PRESETS, SyntheticConfig, make_synthetic
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.trainer import Trainer


def _shifting(**options):
    return make_synthetic(SyntheticConfig.from_options(
        {"preset": "shifting", "n_val": 500, "n_test": 1000, "bayes_samples": 6000,
         **options}))


def test_shifting_preset_has_an_easy_partial_modality_and_a_mirrored_complete_one():
    ds = _shifting()
    cfg = ds.info["config"]
    assert ds.modalities == ["audio", "visual"]
    assert cfg["mirrored"] == [0, 1] and cfg["n_train"] == 2000 == PRESETS["shifting"]["n_train"]
    assert cfg["informative"] == [0.7, 1.0]
    best = ds.best_accuracy
    # audio alone cannot know the 30% of samples it is uninformative on; visual knows them
    assert best["audio"] < 0.7 + 0.3 / ds.num_classes + 0.03
    assert best["visual"] > best["audio"]
    assert best["all"] > max(best["audio"], best["visual"]) + 0.08
    tr, te = ds.splits["train"], ds.splits["test"]
    linear = {m: (LogisticRegression(max_iter=300).fit(tr.x[m], tr.y).predict(te.x[m])
                  == te.y).mean() for m in ds.modalities}
    assert linear["audio"] > best["audio"] - 0.05  # a linear reader gets audio's all
    assert linear["visual"] < 1 / ds.num_classes + 0.08  # mirrored: no linear reader


def test_shifting_audio_fits_within_two_epochs_while_visual_is_still_far_from_its_best():
    """The premise of the family: under the fusion-dominated loss the strong modality is
    fitted early and the model leans on it alone, while the weak one is far from learned."""
    ds = _shifting()
    config = TrainConfig.from_dict({"method": "joint-uni", "uni_loss_weights": 0.03,
                                    "epochs": 2, "lr": 0.03, "seed": 0})
    test = Trainer(ds, config).fit()["test"]
    best = ds.best_accuracy
    assert test["probe_acc_audio"] > best["audio"] - 0.05
    assert abs(test["acc"] - best["audio"]) < 0.05  # all the model knows is audio's
    assert test["probe_acc_visual"] < best["visual"] - 0.3


def test_presets_beside_shifting_are_unchanged():
    """Adding a preset changes no existing data (the golden runs use these)."""
    a = make_synthetic(SyntheticConfig.from_options(
        {"preset": "competition", "n_train": 100, "n_val": 20, "n_test": 20,
         "bayes_samples": 200}))
    b = make_synthetic(SyntheticConfig(separation=[6.0, 4.0], informative=[0.8, 1.0],
                                       dim=[64, 64], mirrored=[0, 1], n_train=100, n_val=20,
                                       n_test=20, bayes_samples=200))
    for m in a.modalities:
        assert np.array_equal(a.splits["train"].x[m], b.splits["train"].x[m])
