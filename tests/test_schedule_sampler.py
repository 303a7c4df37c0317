"""The two-phase schedule sampler `schedule:quotas=A/B,then=C/D,at=E` (issue 19, items 2-3):
fixed quota shares that switch at an epoch, at the uniform run's compute under `share`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmbalance.data.synthetic import SyntheticConfig, make_synthetic
from mmbalance.errors import ConfigError
from mmbalance.policies.registry import make_sampler
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.ledger import encoder_totals
from mmbalance.trainers.trainer import Trainer

B = 32
N_TRAIN = 320
PER_EPOCH = math.ceil(N_TRAIN / B)  # 10 iterations
TINY = f"synthetic:n_train={N_TRAIN},n_val=64,n_test=64,bayes_samples=500"


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig(n_train=N_TRAIN, n_val=64, n_test=64,
                                          bayes_samples=500))


@pytest.fixture(scope="module")
def three():
    return make_synthetic(SyntheticConfig(
        names=["a", "b", "c"], dim=[4, 4, 4], separation=[2, 2, 2], noise=[1, 1, 1],
        informative=[1, 1, 1], n_train=N_TRAIN, n_val=64, n_test=64, bayes_samples=500))


def fit(dataset, spec: str, method: str = "mla", epochs: int = 4, **train):
    cfg = TrainConfig(method=method, epochs=epochs, batch_size=B, probe=False, **train)
    tr = Trainer(dataset, cfg, make_sampler(spec))
    return tr, tr.fit()


def phase_updates(tr: Trainer, at: int) -> tuple[dict, dict]:
    """Per modality, the B-sample updates of each phase, from the step table's rows."""
    first = {m: 0 for m in tr.modalities}
    second = dict(first)
    for row in tr.history.steps:
        target = first if row["epoch"] < at else second
        for m in tr.modalities:
            assert row[f"rows_{m}"] % B == 0  # share: k_j updates of B
            target[m] += row[f"rows_{m}"] // B
    return first, second


@pytest.mark.parametrize("method", ["mla", "joint-uni"])
def test_quotas_switch_exactly_at_the_epoch_boundary(data, method):
    tr, _ = fit(data, "schedule:quotas=16/112,then=96/32,at=2", method)
    steps = tr.history.steps
    assert len(steps) == 4 * PER_EPOCH
    for row in steps:
        expected = (16, 112) if row["epoch"] < 2 else (96, 32)
        assert (row["quota_audio"], row["quota_visual"]) == expected, row
    # the last step of epoch 1 is the first phase's, the first of epoch 2 the second's
    switch = next(i for i, r in enumerate(steps) if r["epoch"] == 2)
    assert switch == 2 * PER_EPOCH
    assert steps[switch - 1]["quota_audio"] == 16 and steps[switch]["quota_audio"] == 96


def test_under_share_each_phase_follows_its_shares_at_uniforms_total(data):
    """16/112 is 1:7 of 2 updates per iteration, 96/32 is 3:1: over 20 iterations each,
    audio gets 5 then 30 updates, visual 35 then 10; every iteration trains 2."""
    tr, final = fit(data, "schedule:quotas=16/112,then=96/32,at=2")
    first, second = phase_updates(tr, 2)
    iterations = 2 * PER_EPOCH
    assert abs(first["audio"] - 2 * iterations / 8) <= 1
    assert abs(first["visual"] - 2 * iterations * 7 / 8) <= 1
    assert abs(second["audio"] - 2 * iterations * 3 / 4) <= 2  # the credits carry over
    assert abs(second["visual"] - 2 * iterations / 4) <= 2
    assert first["audio"] + first["visual"] == second["audio"] + second["visual"] == 2 * iterations
    for row in tr.history.steps:  # never more than a uniform iteration's updates
        assert row["rows_audio"] + row["rows_visual"] == 2 * B
    # the ledger agrees with the step table, and the total is uniform's
    ledger = final["ledger"]
    assert ledger["updates_audio"] == first["audio"] + second["audio"]
    assert ledger["updates_visual"] == first["visual"] + second["visual"]
    _, uniform = fit(data, "uniform")
    assert encoder_totals(ledger, tr.modalities)["updates"] == \
        encoder_totals(uniform["ledger"], tr.modalities)["updates"]
    assert encoder_totals(ledger, tr.modalities)["grad_samples"] == \
        encoder_totals(uniform["ledger"], tr.modalities)["grad_samples"]


def test_any_number_of_modalities(three):
    tr, final = fit(three, "schedule:quotas=32/32/64,then=8/8/112,at=1", epochs=2)
    first, second = phase_updates(tr, 1)
    updates = 3 * PER_EPOCH  # per phase: 3 updates of B per iteration
    for m, share in zip("abc", (32 / 128, 32 / 128, 64 / 128)):
        assert abs(first[m] - updates * share) <= 1
    for m, share in zip("abc", (8 / 128, 8 / 128, 112 / 128)):
        assert abs(second[m] - updates * share) <= 2  # the credits carry over the switch
    assert sum(final["ledger"][f"updates_{m}"] for m in "abc") == 3 * 2 * PER_EPOCH
    assert tr.sampler.config() == {"quotas": [32, 32, 64], "then": [8, 8, 112], "at": 1,
                                   "n_min": 8, "n_max": 112}


def test_a_restored_run_continues_the_schedule_exactly(data, tmp_path):
    spec = "schedule:quotas=16/112,then=96/32,at=2"
    full, final_full = fit(data, spec)
    cfg = TrainConfig(method="mla", epochs=4, batch_size=B, probe=False)
    first = Trainer(data, cfg, make_sampler(spec))
    for _ in range(PER_EPOCH + 3):  # mid-epoch, before the switch
        first.step()
    first.save(tmp_path / "ckpt.pt")
    second = Trainer(data, cfg, make_sampler(spec))
    second.restore(tmp_path / "ckpt.pt")
    final = second.fit()
    keys = ("epoch", "quota_audio", "quota_visual", "rows_audio", "rows_visual")
    assert [tuple(r[k] for k in keys) for r in second.history.steps] == \
        [tuple(r[k] for k in keys) for r in full.history.steps]
    assert final["test"]["acc"] == pytest.approx(final_full["test"]["acc"])


def test_a_checkpoint_restored_with_other_options_trains_on_with_them(data, tmp_path):
    """What PBT does: clone a trial's checkpoint, mutate the options. The clone's own
    schedule decides from the next epoch on, not the one saved in the checkpoint."""
    cfg = TrainConfig(method="mla", epochs=4, batch_size=B, probe=False)
    donor = Trainer(data, cfg, make_sampler("schedule:quotas=16/112,then=96/32,at=2"))
    while donor.step(stop_at_epoch_end=True) is not None:  # epoch 0, as a Tune trial does
        pass
    assert donor.epoch == 1 and not donor.in_epoch
    donor.save(tmp_path / "ckpt.pt")
    clone = Trainer(data, cfg, make_sampler("schedule:quotas=64/64,then=8/120,at=3"))
    clone.restore(tmp_path / "ckpt.pt")
    clone.fit()
    later = [(r["epoch"], r["quota_audio"], r["quota_visual"]) for r in clone.history.steps
             if r["epoch"] >= 1]
    assert {tuple(q) for e, *q in later if e < 3} == {(64, 64)}
    assert {tuple(q) for e, *q in later if e >= 3} == {(8, 120)}
    assert clone.sampler.config()["at"] == 3
    assert np.array_equal(clone.sampler.quotas, [8, 120])


def test_fixed_quotas_restored_with_other_options_train_with_them(data, tmp_path):
    """The same for `fixed`: PBT over its quotas changes what the clone trains."""
    cfg = TrainConfig(method="mla", epochs=3, batch_size=B, probe=False)
    donor = Trainer(data, cfg, make_sampler("fixed:quotas=16/112"))
    while donor.step(stop_at_epoch_end=True) is not None:
        pass
    donor.save(tmp_path / "ckpt.pt")
    clone = Trainer(data, cfg, make_sampler("fixed:quotas=96/32"))
    clone.restore(tmp_path / "ckpt.pt")
    clone.fit()
    later = {(r["quota_audio"], r["quota_visual"]) for r in clone.history.steps
             if r["epoch"] >= 1}
    assert later == {(96, 32)}
    assert clone.sampler.config()["quotas"] == [96, 32]


@pytest.mark.parametrize("spec, needle", [
    ("schedule:then=96/32,at=5", "'quotas' needs one integer >= 1 per modality"),
    ("schedule:quotas=16/112,at=5", "'then' needs"),
    ("schedule:quotas=16/112,then=96/32", "'at' needs the epoch"),
    ("schedule:quotas=16/112,then=96/32,at=0", "'at' needs the epoch"),
    ("schedule:quotas=0/112,then=96/32,at=2", "'quotas' needs"),
    ("schedule:quotas=16/112,then=96/32/8,at=2", "same number of values"),
    ("schedule:quotas=16/1.5,then=96/32,at=2", "quotas"),
    ("schedule:quotas=16/112,then=96/32,at=2,when=3", "unknown option"),
])
def test_bad_options_are_one_line_errors(spec, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        make_sampler(spec)
    assert "\n" not in str(info.value)


def test_range_checks_at_the_run_refuse_before_any_folder(refused, tmp_path):
    out = tmp_path / "run"
    base = ["train", "--data", TINY, "--method", "mla", "--batch-size", str(B),
            "--epochs", "3", "--out", out, "--no-progress", "--sampler"]
    refused([*base, "schedule:quotas=16/513,then=96/32,at=1"],
            "at most 16 x the batch size (512), got 513", out)
    refused([*base, "schedule:quotas=16/112,then=96/32,at=3"],
            "the run has 3 epochs", out)
    refused([*base, "schedule:quotas=16/16/16,then=9/9/9,at=1"],
            "need 2 values, one per modality", out)
    refused(["train", "--data", TINY, "--method", "joint", "--epochs", "3", "--out", out,
             "--sampler", "schedule:quotas=16/112,then=96/32,at=1"], "cannot train on", out)
