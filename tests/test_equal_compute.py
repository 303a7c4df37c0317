"""Quotas at equal compute (`quota_mode: share`) and the compute ledger of every run.

The ledger counts as the run trains (its encoders report their outputs, the optimizer its
steps); these tests count again by hand, by watching which encoder's
parameters change at each optimizer step, so a ledger that miscounts cannot pass."""

import math

import numpy as np
import pytest
import torch

from mmbalance.data.synthetic import SyntheticConfig, make_synthetic
from mmbalance.policies.registry import make_sampler
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.ledger import encoder_totals, stop_counting
from mmbalance.trainers.quota import QuotaPlan
from mmbalance.trainers.trainer import Trainer

B = 32


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig(n_train=320, n_val=64, n_test=64, bayes_samples=500))


def _train(data, method, sampler, mode="share", epochs=2, **train):
    """Train and count, per encoder, the optimizer steps that changed its parameters."""
    cfg = TrainConfig(method=method, epochs=epochs, batch_size=B, probe=False, quota_mode=mode,
                      **train)
    tr = Trainer(data, cfg, make_sampler(sampler))
    changed = {m: 0 for m in tr.modalities}
    steps = 0
    opt_step = tr.optimizer.step

    def counting_step(*args, **kwargs):
        nonlocal steps
        before = {m: [p.detach().clone() for p in tr.model.encoders[m].parameters()]
                  for m in tr.modalities}
        out = opt_step(*args, **kwargs)
        steps += 1
        for m in tr.modalities:
            after = list(tr.model.encoders[m].parameters())
            changed[m] += any(not torch.equal(a, b.detach()) for a, b in zip(before[m], after))
        return out

    tr.optimizer.step = counting_step
    final = tr.fit()
    return tr, final, changed, steps


def test_credits_give_each_modality_its_cumulative_share_within_one():
    rng = np.random.default_rng(0)
    for m in (2, 3, 5):
        plan = QuotaPlan("share", B, m)
        done, target = np.zeros(m), np.zeros(m)
        for _ in range(2000):
            quotas = rng.integers(1, 4 * B, size=m) if rng.random() < 0.3 else \
                rng.choice([1, 8, 200], size=m)
            k = plan.allocate(quotas)
            assert k.sum() == m and k.min() >= 0  # the budget of a uniform iteration
            done += k
            target += m * quotas / quotas.sum()
            assert np.abs(done - target).max() <= 1.0 + 1e-9


def _numpy_allocate(credit: np.ndarray, quotas) -> tuple[np.ndarray, np.ndarray]:
    """The credit rounding written with numpy arrays, as it first was."""
    q = np.asarray(quotas, dtype=np.float64)
    m = len(q)
    credit = credit + m * q / q.sum()
    k = np.zeros(m, dtype=np.int64)
    for _ in range(m):
        j = int(np.argmax(credit))
        k[j] += 1
        credit[j] -= 1.0
    return k, credit - credit.mean()


def test_credit_rounding_in_plain_floats_repeats_numpys_to_the_bit():
    rng = np.random.default_rng(1)
    for m in (2, 3, 5):
        plan = QuotaPlan("share", B, m)
        credit = np.zeros(m)
        for _ in range(3000):
            quotas = rng.integers(0, 4 * B, size=m)
            if quotas.sum() == 0:
                continue
            quotas = quotas if rng.random() < 0.5 else quotas * rng.random(m)
            k = plan.allocate(quotas)
            k_ref, credit = _numpy_allocate(credit, quotas)
            np.testing.assert_array_equal(k, k_ref)
            assert plan.credit == credit.tolist()
    with pytest.raises(ValueError, match="finite values"):
        plan.allocate([1.0, float("nan"), 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="finite values"):
        plan.allocate([1, 2])


@pytest.mark.parametrize("method", ["mla", "joint-uni"])
def test_fixed_shares_of_one_to_three_give_one_to_three_updates_at_uniforms_total(data, method):
    """fixed:quotas=32/96 under `share`: audio gets a quarter of the encoder updates, visual
    three quarters, and the total is uniform's, counted by parameter changes."""
    _tr_u, fin_u, changed_u, _ = _train(data, method, "uniform")
    tr, fin, changed, _ = _train(data, method, "fixed:quotas=32/96")
    iterations = 2 * math.ceil(320 / B)
    assert changed_u == {"audio": iterations, "visual": iterations}
    assert changed["audio"] + changed["visual"] == 2 * iterations
    assert abs(changed["audio"] - iterations / 2) <= 1
    assert abs(changed["visual"] - 3 * iterations / 2) <= 1
    # the ledger counts what happened, and gradient samples are uniform's too
    for m in tr.modalities:
        assert fin["ledger"][f"updates_{m}"] == changed[m]
        assert fin["ledger"][f"grad_samples_{m}"] == changed[m] * B
        assert fin_u["ledger"][f"updates_{m}"] == changed_u[m]
    totals, base = (encoder_totals(f["ledger"], tr.modalities) for f in (fin, fin_u))
    assert totals["updates"] == base["updates"]
    assert totals["grad_samples"] == base["grad_samples"]


def test_joint_uni_share_at_equal_shares_is_the_uniform_step(data):
    """B/B under `share`: one optimizer step per iteration updating every encoder on the
    paired batch, as uniform sampling does; no extra forward of any kind."""
    _, fin_u, _, steps_u = _train(data, "joint-uni", "uniform")
    _, fin, _, steps = _train(data, "joint-uni", f"fixed:quotas={B}/{B}")
    assert steps == steps_u
    for key in ("optimizer_steps", "updates_audio", "updates_visual", "grad_samples_audio",
                "grad_samples_visual", "nograd_samples_audio", "nograd_samples_visual",
                "updates_head", "updates_head_audio", "updates_head_visual"):
        assert fin["ledger"][key] == fin_u["ledger"][key], key


def test_a_skipped_modality_feeds_the_fusion_layer_without_gradient(data):
    """joint-uni, 8/120: audio sits most iterations out; its features still reach the fusion
    loss, without gradient, and the ledger counts those samples as no-grad forward."""
    _, fin_u, _, _ = _train(data, "joint-uni", "uniform")
    _tr, fin, changed, _ = _train(data, "joint-uni", "fixed:quotas=8/120")
    skipped = 2 * math.ceil(320 / B) - changed["audio"]
    assert skipped > 0
    extra = fin["ledger"]["nograd_samples_audio"] - fin_u["ledger"]["nograd_samples_audio"]
    assert extra == skipped * B


def test_extra_steps_adds_updates_and_the_ledger_shows_it(data):
    _, fin_u, _, _ = _train(data, "mla", "uniform")
    _, fin, changed, _ = _train(data, "mla", "fixed:quotas=33/33", mode="extra-steps")
    # one sample above B: two optimizer steps per modality per iteration
    assert changed["visual"] == 2 * fin_u["ledger"]["updates_visual"]
    assert fin["ledger"]["updates_visual"] == changed["visual"]


def test_dus_h_at_equal_compute_gives_the_lagging_modality_more_updates(data):
    """On the default data audio learns first; DUS-H moves updates to visual, not more."""
    tr_u, fin_u, _, _ = _train(data, "mla", "uniform", epochs=3, lr=0.1)
    assert tr_u.history.steps[-1]["s_hat_audio"] > tr_u.history.steps[-1]["s_hat_visual"] + 0.02
    tr, _fin, changed, _ = _train(data, "mla", "dus-h:strength=30", epochs=3, lr=0.1)
    assert changed["visual"] > changed["audio"] + 8
    assert changed["audio"] + changed["visual"] == \
        fin_u["ledger"]["updates_audio"] + fin_u["ledger"]["updates_visual"]
    # and it closed the gap uniform sampling leaves
    gap = tr.history.steps[-1]["s_hat_audio"] - tr.history.steps[-1]["s_hat_visual"]
    assert gap < tr_u.history.steps[-1]["s_hat_audio"] - tr_u.history.steps[-1]["s_hat_visual"]


def test_the_credits_and_the_ledger_continue_through_a_checkpoint(data, tmp_path):
    """A share run saved mid-epoch and restored continues with the same credits (so the
    same updates) and counts on from where it stopped."""
    cfg = TrainConfig(method="mla", epochs=2, batch_size=B, probe=False)
    full = Trainer(data, cfg, make_sampler("dus-h:strength=8"))
    final_full = full.fit()
    first = Trainer(data, cfg, make_sampler("dus-h:strength=8"))
    for _ in range(13):
        first.step()
    first.save(tmp_path / "ckpt.pt")
    second = Trainer(data, cfg, make_sampler("dus-h:strength=8"))
    second.restore(tmp_path / "ckpt.pt")
    final = second.fit()
    assert [s["quota_visual"] for s in second.history.steps] == \
        [s["quota_visual"] for s in full.history.steps]
    drop = ("train_seconds", "wall_seconds")
    assert {k: v for k, v in final["ledger"].items() if k not in drop} == \
        {k: v for k, v in final_full["ledger"].items() if k not in drop}
    assert final["test"]["acc"] == pytest.approx(final_full["test"]["acc"])


def test_a_copy_of_the_model_never_counts_into_the_runs_ledger(data):
    """A deep copy of a run's model (a cost probe, the vector env's template) counts into its
    own copy of the ledger, or, after `stop_counting`, into none; the run's stays as it was."""
    import copy

    tr = Trainer(data, TrainConfig(method="joint", epochs=1, batch_size=B, probe=False))
    x = {m: torch.as_tensor(data.splits["val"].x[m][:5]) for m in tr.modalities}
    before = dict(tr.ledger.counts)
    with torch.no_grad():
        tr.model(x)
    assert tr.ledger.counts["nograd_samples_audio"] == before["nograd_samples_audio"] + 5
    before = dict(tr.ledger.counts)
    twin = copy.deepcopy(tr.model)
    with torch.no_grad():
        twin(x)
    assert tr.ledger.counts == before
    stop_counting(twin)
    assert all("forward" not in vars(e) for e in twin.encoders.values())
    with torch.no_grad():
        assert torch.equal(twin(x)[0], tr.model(x)[0])
