"""Sampler behaviour: quotas move toward the weak modality, pacing, draws, bad configs."""

import math

import numpy as np
import pytest
import torch

from mmbalance.balance import LearningStatus, stacked_balance_terms
from mmbalance.errors import ConfigError
from mmbalance.policies.bss import BSSHeuristicSampler, BSSLearnedSampler
from mmbalance.policies.bss_measure import balance_degree, pacing_size
from mmbalance.policies.dus import DUSHeuristicSampler, QuotaSampler, dus_quotas
from mmbalance.policies.registry import make_sampler
from mmbalance.trainers.quota import QuotaPlan
from mmbalance.trainers.sampler import ForwardPass, SamplerContext, StepFeedback, UniformSampler


def ctx(n=100, b=10, mods=("a", "v"), seed=0, quota_mode="batch"):
    """A context whose quotas are batch sizes (`batch`), so a quota is what a batch holds."""
    return SamplerContext(n_train=n, modalities=list(mods), batch_size=b, epochs=10,
                          rng=np.random.default_rng(seed),
                          quota_plan=QuotaPlan(quota_mode, b, len(mods)))


def no_scorer():
    raise AssertionError("this sampler must not run a scoring pass here")


def forward_pass(n, seed=0, classes=4, modalities=2, spread=3.0):
    """Random detached logits of n training samples, as the trainer delivers them."""
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(size=(modalities + 1, n, classes)) * spread,
                          dtype=torch.float32)
    return ForwardPass(np.arange(n), logits, torch.as_tensor(rng.integers(0, classes, n)))


def degree_of(out, weights=(1.0, 1.0, 1.0)):
    """The balance degree BSS derives from forward-pass outputs (plain loss sum by default)."""
    sim, loss = stacked_balance_terms(out.logits, out.y, weights)
    return balance_degree(sim.numpy(), loss.numpy())


def drain(sampler):
    out = []
    while (b := sampler.next_batch()) is not None:
        out.append(b)
    return out


def test_uniform_sees_every_sample_once_per_epoch():
    s = UniformSampler()
    s.bind(ctx(n=95, b=10))
    s.start_epoch(0, no_scorer)
    batches = drain(s)
    assert len(batches) == 10
    idx = np.concatenate([b["a"] for b in batches])
    assert sorted(idx) == list(range(95))
    assert all(b["a"] is b["v"] for b in batches)  # paired


def test_dus_quotas_favour_weaker_modality():
    q = dus_quotas(np.array([0.8, 0.4]), batch_size=32, strength=4.0, n_min=4, n_max=64)
    assert q[1] > 32 > q[0]
    assert abs(q.sum() - 64) <= 1
    # stronger strength, larger shift; zero strength, uniform
    q2 = dus_quotas(np.array([0.8, 0.4]), 32, 8.0, 4, 64)
    assert q2[1] > q[1]
    np.testing.assert_array_equal(dus_quotas(np.array([0.8, 0.4]), 32, 0.0, 4, 64), [32, 32])
    # bounds hold
    q3 = dus_quotas(np.array([1.0, 0.0]), 32, 50.0, 4, 40)
    assert q3.min() >= 4 and q3.max() <= 40


def test_dus_quotas_three_modalities_order_follows_scores():
    q = dus_quotas(np.array([0.9, 0.5, 0.2]), 16, 4.0, 1, 64)
    assert q[0] < q[1] < q[2]


def test_dus_sampler_follows_learning_status():
    s = DUSHeuristicSampler(strength=4.0)
    s.bind(ctx(n=200, b=16))
    s.start_epoch(0, no_scorer)
    first = s.next_batch()
    assert len(first["a"]) == len(first["v"]) == 16  # no status yet: uniform
    status = LearningStatus(["a", "v"])
    status.fold([([0.9, 0.3], [0.1, 1.5])] * 5)
    s.feedback(StepFeedback(0, status))
    b = s.next_batch()
    assert len(b["v"]) > 16 > len(b["a"])
    assert s.log_metrics()["quota_v"] == len(b["v"])
    # the modality that catches up and overtakes loses its extra samples
    status.fold([([0.2, 0.95], [1.0, 0.1])] * 50)
    s.feedback(StepFeedback(0, status))
    b = s.next_batch()
    assert len(b["a"]) > len(b["v"])


def test_quota_streams_cover_the_training_set_without_repeats():
    s = QuotaSampler()
    s.bind(ctx(n=50, b=10))
    s.set_quotas([7, 13])
    s.start_epoch(0, no_scorer)
    batches = drain(s)
    assert len(batches) == math.ceil(50 / 10)  # an epoch is ceil(N / B) iterations
    a = np.concatenate([b["a"] for b in batches])  # 35 draws: no repeats in one pass
    assert len(set(a.tolist())) == len(a) == 35
    v = np.concatenate([b["v"] for b in batches])  # 65 draws: each sample once, then 15 more
    counts = np.bincount(v, minlength=50)
    assert counts.min() >= 1 and counts.max() <= 2 and counts.sum() == 65


def test_share_draws_the_uniform_budget_as_whole_batches():
    """Under `share` a quota sampler draws k_j batches of B per modality with sum k_j = M:
    7/13 gives the second modality about twice the batches of the first, the total M B."""
    s = QuotaSampler()
    s.bind(ctx(n=50, b=10, quota_mode="share"))
    s.set_quotas([7, 13])
    s.start_epoch(0, no_scorer)
    batches = drain(s)
    sizes = np.array([[len(b["a"]), len(b["v"])] for b in batches])
    assert set(sizes.flatten().tolist()) <= {0, 10, 20}
    assert (sizes.sum(1) == 20).all()
    assert abs(sizes[:, 0].sum() / 10 - 2 * len(batches) * 7 / 20) <= 1


def test_quota_bounds_checked():
    s = QuotaSampler(n_min=20, n_max=10)
    with pytest.raises(ConfigError, match="n_min"):
        s.bind(ctx())


def test_bss_h_subset_grows_with_pacing_and_starts_most_balanced():
    n = 300
    out = forward_pass(n, seed=1)
    calls = []

    def scorer():
        calls.append(1)
        return out

    d = degree_of(out)
    s = BSSHeuristicSampler(lambda0=0.1, t_grow=10)
    s.bind(ctx(n=n, b=32))
    sizes = []
    for epoch in range(12):
        s.start_epoch(epoch, scorer)
        idx = np.concatenate([b["a"] for b in drain(s)])
        assert len(set(idx.tolist())) == len(idx)
        sizes.append(len(idx))
        # the subset is exactly the `size` lowest balance degrees
        assert set(idx.tolist()) == set(np.argsort(d, kind="stable")[: len(idx)].tolist())
    assert sizes == [pacing_size(n, e, 0.1, 10) for e in range(12)]
    assert sizes == sorted(sizes) and sizes[-1] == n
    assert len(calls) == 1  # ranked once (the public code's behaviour)


def test_bss_h_rerank_rescores():
    n = 100
    before = forward_pass(n, seed=2)
    # the second pass: the same outputs for the samples in reverse order
    after = ForwardPass(before.rows, before.logits.flip(1), before.y.flip(0))
    passes = [before, after]
    calls = []

    def scorer():
        calls.append(1)
        return passes[min(len(calls) - 1, 1)]

    s = BSSHeuristicSampler(lambda0=0.2, t_grow=100, rerank=2)
    s.bind(ctx(n=n, b=10))
    s.start_epoch(0, scorer)
    first = np.concatenate([b["a"] for b in drain(s)])
    assert set(first) == set(np.argsort(degree_of(before), kind="stable")[: len(first)])
    s.start_epoch(1, scorer)
    drain(s)
    s.start_epoch(2, scorer)
    third = np.concatenate([b["a"] for b in drain(s)])
    assert len(calls) == 2
    # after re-ranking, the most balanced samples of the second pass: the first ones reversed
    assert set(third) == set(n - 1 - np.argsort(degree_of(before), kind="stable")[: len(third)])


def test_bss_l_draws_without_replacement_with_stated_weights():
    n = 4
    out = forward_pass(n, seed=4)
    w = 2.01 - degree_of(out)
    assert w.max() / w.min() > 1.5  # distinct enough weights to tell the law apart
    s = BSSLearnedSampler(score="pass")
    s.bind(ctx(n=n, b=n, seed=3))
    first = np.zeros(n)
    trials = 6000
    for epoch in range(trials):
        s.start_epoch(epoch, lambda: out)
        order = drain(s)[0]["a"]
        assert sorted(order.tolist()) == list(range(n))
        first[order[0]] += 1
    expected = w / w.sum()
    np.testing.assert_allclose(first / trials, expected, atol=0.02)


def test_bss_l_uses_forward_scores_after_first_epoch():
    n = 50
    calls = []
    trained = forward_pass(n, seed=5)  # what the training passes of epoch 0 give

    def scorer():
        calls.append(1)
        return forward_pass(n, seed=6)

    assert not BSSLearnedSampler().observes  # the default: a fresh pass, as the authors
    s = BSSLearnedSampler(score="forward")
    assert s.observes
    s.bind(ctx(n=n, b=10))
    s.start_epoch(0, scorer)
    while (b := s.next_batch()) is not None:  # the last call folds the epoch in
        rows = b["a"]
        s.feedback(StepFeedback(0, forward=ForwardPass(rows, trained.logits[:, rows],
                                                    trained.y[rows])))
    assert len(calls) == 1
    s.start_epoch(1, scorer)
    assert len(calls) == 1  # the second epoch reused the forward-pass scores
    np.testing.assert_allclose(s.degree, degree_of(trained), rtol=1e-6)


def test_registry_errors_name_options():
    with pytest.raises(ConfigError, match="allowed"):
        make_sampler("nope")
    with pytest.raises(ConfigError, match="lambda0"):
        make_sampler("bss-h:lambda=0.3")
    with pytest.raises(ConfigError, match="lambda0"):
        make_sampler("bss-h:lambda0=0")
    with pytest.raises(ConfigError, match="strength"):
        make_sampler("dus-h:strength=-1")
    with pytest.raises(ConfigError, match="score"):
        make_sampler("bss-l:score=magic")
    s = make_sampler("bss-h:lambda0=0.2,t_grow=5,loss_weights=0.9/0.9/0.1")
    assert s.lambda0 == 0.2 and s.loss_weights == (0.9, 0.9, 0.1)


def test_bss_loss_weights_must_match_modalities():
    s = make_sampler("bss-l:loss_weights=1/1")
    with pytest.raises(ConfigError, match="loss_weights"):
        s.bind(ctx(mods=("a", "v")))
