"""The papers' base model (joint-uni), quotas with leverage, probes and the competition data."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mmbalance.data.synthetic import PRESETS, SyntheticConfig, make_synthetic
from mmbalance.errors import ConfigError
from mmbalance.policies.registry import make_sampler
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.methods import quota_chunks
from mmbalance.trainers.probe import probe_accuracy
from mmbalance.trainers.sampler import PAIRED, EpochOrderSampler, ForwardPass, SamplerContext
from mmbalance.trainers.trainer import Trainer


class FixedOrder(EpochOrderSampler):
    """Every epoch the same order: one known batch to check a step against."""

    name = "fixed-order"

    def epoch_order(self, epoch, scorer):
        return np.arange(self.ctx.n_train)


def test_joint_uni_step_is_weighted_fusion_plus_unimodal_head_losses(small_synthetic):
    cfg = TrainConfig.from_dict({"method": "joint-uni", "batch_size": 32, "mm_loss_weight": 0.1,
                                 "uni_loss_weights": [0.9, 0.7], "momentum": 0.0,
                                 "weight_decay": 0.0, "lr": 0.05})
    tr = Trainer(small_synthetic, cfg, FixedOrder())
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    idx = torch.arange(32)
    x = {m: tr.train_x[m][idx] for m in tr.modalities}
    y = tr.train_y[idx]
    fusion, uni = tr.model.parts(x)
    loss = 0.1 * F.cross_entropy(fusion, y) + 0.9 * F.cross_entropy(uni["audio"], y) \
        + 0.7 * F.cross_entropy(uni["visual"], y)
    grads = torch.autograd.grad(loss, list(tr.model.parameters()))
    out = tr.step()
    assert out.loss == pytest.approx(float(loss.detach()), rel=1e-5)
    for (name, p), g in zip(tr.model.named_parameters(), grads):
        torch.testing.assert_close(p.detach(), before[name] - 0.05 * g)
    # separate heads: the unimodal logits are not blocks of the fusion layer
    assert set(tr.model.head.heads) == set(tr.modalities)


def test_joint_uni_inference_modes_sum_the_heads_the_authors_sum(small_synthetic):
    feats = {m: torch.randn(5, 64) for m in small_synthetic.modalities}
    logits = {}
    for mode in ("sum", "unimodal", "fusion"):
        cfg = TrainConfig.from_dict({"method": "joint-uni", "inference": mode, "seed": 1})
        tr = Trainer(small_synthetic, cfg)
        fusion, uni = tr.model.head.parts(feats)
        logits[mode] = (tr.model.head(feats)[0], fusion, uni)
    mm, fusion, uni = logits["sum"]
    torch.testing.assert_close(mm, fusion + uni["audio"] + uni["visual"])
    mm, fusion, uni = logits["unimodal"]
    torch.testing.assert_close(mm, uni["audio"] + uni["visual"])
    mm, fusion, _ = logits["fusion"]
    torch.testing.assert_close(mm, fusion)
    with pytest.raises(ConfigError, match="inference"):
        TrainConfig.from_dict({"method": "joint-uni", "inference": "vote"}).check()


def test_joint_uni_weights_are_checked(small_synthetic):
    with pytest.raises(ConfigError, match="uni_loss_weights"):
        Trainer(small_synthetic, TrainConfig.from_dict({"method": "joint-uni",
                                                        "uni_loss_weights": [1.0, 1.0, 1.0]}))
    with pytest.raises(ConfigError, match="at least one"):
        TrainConfig.from_dict({"method": "joint-uni", "mm_loss_weight": 0,
                               "uni_loss_weights": 0})


def test_quota_chunks_give_each_mode_its_meaning():
    idx = torch.arange(150)
    (c, w), = quota_chunks(idx, 64, "batch")
    assert len(c) == 150 and w == 1.0
    (c, w), = quota_chunks(idx, 64, "scaled")
    assert len(c) == 150 and w == pytest.approx(150 / 64)
    parts = quota_chunks(idx, 64, "extra-steps")
    assert [len(c) for c, _ in parts] == [50, 50, 50] and {w for _, w in parts} == {1.0}
    assert torch.equal(torch.cat([c for c, _ in parts]), idx)
    assert len(quota_chunks(idx[:16], 64, "extra-steps")) == 1
    assert [len(c) for c, _ in quota_chunks(torch.arange(128), 64, "share")] == [64, 64]
    assert quota_chunks(idx[:0], 64, "share") == []
    with pytest.raises(ConfigError, match="training option"):
        make_sampler("dus-h:quota_mode=scaled")
    with pytest.raises(ConfigError, match="quota_mode"):
        TrainConfig.from_dict({"quota_mode": "often"})


def _displacement(data, method, quotas, mode, epochs=1):
    """How far each encoder's weights moved in training with fixed quotas."""
    sampler = make_sampler(f"fixed:quotas={quotas}")
    tr = Trainer(data, TrainConfig(method=method, epochs=epochs, batch_size=32, probe=False,
                                   quota_mode=mode), sampler)
    start = {m: torch.cat([p.detach().flatten().clone() for p in tr.model.encoders[m].parameters()])
             for m in tr.modalities}
    tr.fit()
    return {m: float((torch.cat([p.detach().flatten() for p in tr.model.encoders[m].parameters()])
                      - start[m]).norm()) for m in tr.modalities}


@pytest.mark.parametrize("method", ["mla", "joint-uni"])
def test_quotas_toward_a_modality_move_its_encoder_more_only_where_the_mode_has_leverage(
    small_synthetic, method
):
    """Leverage: with `share` (at equal compute), `extra-steps` and `scaled`, feeding visual
    16x audio's quota moves visual's encoder much further than the reverse; with `batch` a
    quota only changes the gradient's noise, and the two extremes move the encoders about
    alike."""
    ratios = {}
    for mode in ("batch", "scaled", "extra-steps", "share"):
        weak = _displacement(small_synthetic, method, "8/128", mode)
        strong = _displacement(small_synthetic, method, "128/8", mode)
        ratios[mode] = (weak["visual"] / strong["visual"], strong["audio"] / weak["audio"])
    for mode in ("scaled", "extra-steps", "share"):
        assert min(ratios[mode]) > 1.8, ratios
    assert max(ratios["batch"]) < 1.5, ratios


def test_joint_uni_with_quotas_trains_fusion_on_a_paired_batch_of_its_own(small_synthetic):
    sampler = make_sampler("fixed:quotas=16/128")
    tr = Trainer(small_synthetic, TrainConfig(method="joint-uni", batch_size=64, epochs=1,
                                              quota_mode="extra-steps"), sampler)
    assert tr.sampler.ctx.paired_with_quotas
    seen = []
    while (batch := tr.next_batch()) is not None:
        assert len(batch["audio"]) == 16 and len(batch["visual"]) == 128
        assert len(batch[PAIRED]) == 64
        seen.append(batch[PAIRED].numpy())
        tr.record_step(batch, tr.method.step(batch, False))
    # the paired stream covers the training set once per epoch, whatever the quotas
    paired = np.concatenate(seen)
    assert np.unique(paired[:600]).size == 600
    steps = tr.history.steps
    assert steps[0]["quota_audio"] == 16 and steps[0]["quota_visual"] == 128
    # MLA ignores the paired key: its sampler does not draw one
    mla = Trainer(small_synthetic, TrainConfig(method="mla"), make_sampler("dus-h"))
    assert PAIRED not in mla.next_batch()


def test_fixed_quotas_are_checked():
    with pytest.raises(ConfigError, match="quotas"):
        make_sampler("fixed")
    with pytest.raises(ConfigError, match="quotas"):
        make_sampler("fixed:quotas=0/64")
    s = make_sampler("fixed:quotas=16/64/32")
    with pytest.raises(ConfigError, match="3 values|needs 2"):
        s.bind(SamplerContext(n_train=10, modalities=["a", "v"], batch_size=8, epochs=1,
                              rng=np.random.default_rng(0)))


def test_probe_reads_what_features_hold():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 800)
    informative = np.eye(4)[y] * 3 + rng.standard_normal((800, 4))
    noise = rng.standard_normal((800, 4))
    acc = probe_accuracy(informative[:400], y[:400], informative[400:], y[400:])
    chance = probe_accuracy(noise[:400], y[:400], noise[400:], y[400:])
    assert acc > 0.9 and chance < 0.4


def test_final_metrics_hold_a_probe_per_modality(small_synthetic):
    tr = Trainer(small_synthetic, TrainConfig(method="joint", epochs=2))
    final = tr.fit()
    for m in small_synthetic.modalities:
        assert 0.0 <= final["test"][f"probe_acc_{m}"] <= 1.0
    tr = Trainer(small_synthetic, TrainConfig(method="joint", epochs=1, probe=False))
    assert "probe_acc_audio" not in tr.fit()["test"]


def test_competition_preset_hides_the_weak_signal_from_linear_readers():
    from sklearn.linear_model import LogisticRegression

    ds = make_synthetic(SyntheticConfig.from_options(
        {"preset": "competition", "n_train": 3000, "n_val": 100, "n_test": 1000,
         "bayes_samples": 6000}))
    assert ds.info["config"]["mirrored"] == [0, 1] and PRESETS["competition"]["n_train"] == 4000
    best = ds.best_accuracy
    assert best["all"] > max(best["audio"], best["visual"]) + 0.08  # each carries what the other lacks
    assert best["visual"] > 0.75
    tr, te = ds.splits["train"], ds.splits["test"]
    for m, floor in (("audio", 0.7), ("visual", None)):
        clf = LogisticRegression(max_iter=300).fit(tr.x[m], tr.y)
        acc = (clf.predict(te.x[m]) == te.y).mean()
        if floor is None:  # mirrored: class means are 0, no linear reader beats chance much
            assert acc < 1 / ds.num_classes + 0.08
        else:
            assert acc > floor
    with pytest.raises(ConfigError, match="preset"):
        SyntheticConfig.from_options({"preset": "nope"})
    # options beside a preset override it
    assert SyntheticConfig.from_options({"preset": "competition", "n_train": 50}).n_train == 50
    three = make_synthetic(SyntheticConfig.from_options(
        {"preset": "competition3", "n_train": 200, "n_val": 50, "n_test": 50,
         "bayes_samples": 2000}))
    assert three.modalities == ["rgb", "depth", "flow"]
    assert three.best_accuracy["all"] > max(three.best_accuracy[m] for m in three.modalities)


def test_bss_measurer_weighs_losses_as_the_training_loss_does(small_synthetic):
    cfg = TrainConfig.from_dict({"method": "joint-uni", "mm_loss_weight": 0.1,
                                 "uni_loss_weights": 0.9})
    tr = Trainer(small_synthetic, cfg, make_sampler("bss-l"))
    assert tr.sampler.loss_weights == (0.9, 0.9, 0.1)
    tr = Trainer(small_synthetic, TrainConfig(method="joint-uni"),
                 make_sampler("bss-l:loss_weights=1/2/3"))
    assert tr.sampler.loss_weights == (1.0, 2.0, 3.0)
    tr = Trainer(small_synthetic, TrainConfig(method="joint"), make_sampler("bss-h"))
    assert tr.sampler.loss_weights == (1.0, 1.0, 1.0)


def test_bss_l_with_replacement_changes_how_often_samples_are_seen():
    n = 400
    # modality a ever surer of class 0, modality v of class 1 (they disagree more and more)
    # and a fusion layer ever less sure of the true class 0: with the fusion loss alone
    # weighed, the balance degree grows with the index, sample 0 the most balanced
    x = torch.linspace(0.0, 6.0, n)
    logits = torch.zeros(3, n, 3)
    logits[0, :, 0], logits[1, :, 1], logits[2, :, 0] = x, x, -x
    out = ForwardPass(np.arange(n), logits, torch.zeros(n, dtype=torch.int64))
    s = make_sampler("bss-l:draw=replacement,loss_weights=0/0/1")
    s.bind(SamplerContext(n_train=n, modalities=["a", "v"], batch_size=n, epochs=1,
                          rng=np.random.default_rng(0)))
    s.start_epoch(0, lambda: out)
    assert np.all(np.diff(s.degree) >= 0) and s.degree[-1] > s.degree[0]
    order = s.next_batch()["a"]
    counts = np.bincount(order, minlength=n)
    assert len(order) == n and counts.max() > 1
    assert counts[: n // 4].sum() > 3 * counts[-n // 4 :].sum()


def test_paper_datasets_bring_their_loss_weights_and_inference():
    """`--data cremad:DIR` starts joint-uni from the authors' CREMA-D weights
    (0.1 fusion, 0.9 per head) and their CREMA-D prediction (the unimodal heads only)."""
    from mmbalance.data.real.defaults import dataset_defaults

    train = dataset_defaults("cremad")["train"]
    opts = TrainConfig.from_dict({**train, "method": "joint-uni"}).options
    assert opts.uni_weights(["audio", "visual"]) == [0.9, 0.9]
    assert opts.mm_loss_weight == 0.1 and opts.inference == "unimodal"
    assert dataset_defaults("ks")["train"]["inference"] == "sum"
