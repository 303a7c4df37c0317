"""The training loop and its methods, on small synthetic data (real training, tiny budgets)."""

import numpy as np
import pytest
import torch

from mmbalance.errors import ConfigError
from mmbalance.policies.registry import make_sampler
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.methods import MLAMethod, ogm_coefficients
from mmbalance.trainers.trainer import Trainer


def fit(data, sampler="uniform", **cfg):
    tr = Trainer(data, TrainConfig.from_dict({"epochs": 4, **cfg}), make_sampler(sampler))
    return tr, tr.fit()


def test_same_seed_same_run_and_other_seed_differs(small_synthetic):
    t1, r1 = fit(small_synthetic, "bss-l", seed=3)
    t2, r2 = fit(small_synthetic, "bss-l", seed=3)
    t3, _ = fit(small_synthetic, "bss-l", seed=4)
    assert r1["test"] == r2["test"]
    assert [s["loss"] for s in t1.history.steps] == [s["loss"] for s in t2.history.steps]
    assert [s["loss"] for s in t1.history.steps] != [s["loss"] for s in t3.history.steps]


@pytest.mark.parametrize("method", ["joint", "ogm-ge", "mla"])
def test_each_method_learns_on_three_modalities(three_modal, method):
    tr, res = fit(three_modal, method=method, epochs=6)
    chance = 1 / three_modal.num_classes
    assert res["test"]["acc"] > chance + 0.25
    for m in three_modal.modalities:
        assert res["test"][f"acc_{m}"] > chance + 0.05
    # the learning status moved for every modality
    assert (tr.status.t > 0).all() and (tr.status.s_hat > chance).all()


def test_step_log_is_wide_and_complete(small_synthetic):
    tr, res = fit(small_synthetic, "dus-h", method="mla", epochs=2)
    steps = tr.history.steps
    assert len(steps) == res["steps"] == 2 * int(np.ceil(600 / 64))
    cols = set(steps[0])
    for m in small_synthetic.modalities:
        assert {f"quota_{m}", f"s_{m}", f"s_hat_{m}", f"loss_{m}"} <= cols
    assert {"discrepancy", "step", "epoch"} <= cols
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))


def test_step_numbers_are_read_in_bulk_and_current_whenever_read(small_synthetic):
    tr = Trainer(small_synthetic, TrainConfig(epochs=2, seed=1), make_sampler("uniform"))
    for _ in range(5):
        tr.step()
    assert len(tr._pending) == 5  # still where the steps computed them
    assert tr.status.t.tolist() == [5, 5] and len(tr.history.steps) == 5  # read on demand
    assert not tr._pending
    while tr.step(stop_at_epoch_end=True) is not None:
        pass
    assert tr.epoch == 1 and not tr._pending and len(tr.history.steps) == tr.global_step  # read at epoch end
    # a sampler that reads the status after every step gets every step's numbers at once
    dus = Trainer(small_synthetic, TrainConfig(method="mla", epochs=1), make_sampler("dus-h"))
    dus.step()
    assert not dus._pending and dus._status.t.tolist() == [1, 1]


def test_model_selection_uses_validation(small_synthetic):
    tr, res = fit(small_synthetic, epochs=5)
    val = [e["val_acc"] for e in tr.history.epochs]
    assert res["best_epoch"] == int(np.argmax(val))
    assert res["val"]["acc"] == pytest.approx(max(val))


def test_dus_needs_unimodal_batch_method(small_synthetic):
    for method in ("joint", "ogm-ge"):
        with pytest.raises(ConfigError, match="paired"):
            Trainer(small_synthetic, TrainConfig(method=method), make_sampler("dus-h"))


def test_dus_h_in_training_gives_the_weak_modality_more(small_synthetic):
    tr, _ = fit(small_synthetic, "dus-h:strength=8", method="mla", epochs=4)
    weak = min(small_synthetic.modalities, key=lambda m: small_synthetic.best_accuracy[m])
    strong = next(m for m in small_synthetic.modalities if m != weak)
    late = tr.history.steps[len(tr.history.steps) // 2 :]
    assert np.mean([s[f"quota_{weak}"] for s in late]) > np.mean([s[f"quota_{strong}"] for s in late])
    assert np.mean([s[f"s_hat_{weak}"] for s in late]) < np.mean([s[f"s_hat_{strong}"] for s in late])


def test_bss_h_epoch_lengths_follow_pacing(small_synthetic):
    from mmbalance.policies.bss_measure import pacing_size

    tr, _ = fit(small_synthetic, "bss-h:lambda0=0.2,t_grow=4", epochs=5, batch_size=50)
    per_epoch = np.bincount([s["epoch"] for s in tr.history.steps])
    expect = [int(np.ceil(pacing_size(600, e, 0.2, 4) / 50)) for e in range(5)]
    assert per_epoch.tolist() == expect
    assert [e["sampler_subset_size"] for e in tr.history.epochs] == [
        pacing_size(600, e, 0.2, 4) for e in range(5)
    ]


def test_ogm_coefficients_damp_only_the_leader():
    c = ogm_coefficients([30.0, 10.0], alpha=0.3)
    assert c[1] == 1.0 and c[0] == pytest.approx(1 - np.tanh(0.3 * 3.0))
    c3 = ogm_coefficients([10.0, 10.0, 10.0], alpha=0.3)
    assert c3 == [1.0, 1.0, 1.0]


def test_ogm_scales_dominant_encoder_gradients(small_synthetic):
    cfg = {"method": "ogm-ge", "ogm_ge": False, "epochs": 1}
    tr = Trainer(small_synthetic, TrainConfig.from_dict(cfg), make_sampler("uniform"))
    # the window [ogm_start, ogm_end] includes its end: starting at 1 leaves epoch 0 alone
    ref = Trainer(small_synthetic, TrainConfig.from_dict({**cfg, "ogm_start": 1}),
                  make_sampler("uniform"))
    tr.step()
    ref.step()
    coeffs = tr.method.last_coeffs
    assert max(coeffs.values()) == 1.0
    for m in small_synthetic.modalities:
        for p, q in zip(tr.model.encoders[m].parameters(), ref.model.encoders[m].parameters()):
            torch.testing.assert_close(p.grad, q.grad * coeffs[m])


def test_ogm_ge_noise_takes_the_std_of_the_gradient_before_scaling():
    from mmbalance.trainers.methods import modulate_grad

    g = torch.tensor([[1.0, -1.0], [3.0, 5.0]])
    std = float(g.std())  # sample std of the unscaled gradient: sqrt(20/3)
    assert std == pytest.approx((20 / 3) ** 0.5)
    noise = torch.randn(g.shape, generator=torch.Generator().manual_seed(7))
    out = g.clone()
    modulate_grad(out, 0.4, True, torch.Generator().manual_seed(7))
    torch.testing.assert_close(out, 0.4 * g + noise * (std + 1e-8))
    # the scaled gradient's std would give 0.4x the noise: not what the authors do
    assert not torch.allclose(out, 0.4 * g + noise * (0.4 * std + 1e-8))
    one = torch.tensor([2.0])
    modulate_grad(one, 0.5, True, torch.Generator().manual_seed(0))  # no std of one value
    assert one.item() == 1.0


def test_ogm_window_includes_its_end_epoch(small_synthetic):
    cfg = TrainConfig.from_dict({"method": "ogm-ge", "ogm_ge": False, "epochs": 3,
                                 "ogm_start": 1, "ogm_end": 1})
    tr = Trainer(small_synthetic, cfg, make_sampler("uniform"))
    damped = {}
    while tr.step() is not None or not tr.done:
        if tr.last_step is not None:
            damped.setdefault(tr.epoch, min(tr.method.last_coeffs.values()) < 1.0)
            damped[tr.epoch] |= min(tr.method.last_coeffs.values()) < 1.0
    assert damped == {0: False, 1: True, 2: False}


def test_mla_projector_removes_previous_feature_direction(small_synthetic):
    tr = Trainer(small_synthetic, TrainConfig.from_dict({"method": "mla", "mla_proj_alpha": 1e-4}),
                 make_sampler("uniform"))
    method: MLAMethod = tr.method
    feats = torch.randn(32, tr.config.feature_dim) + 3.0
    method.update_projector(feats)
    r = feats.mean(0)
    P = method.projector
    assert torch.linalg.norm(P @ r) < 1e-3 * torch.linalg.norm(r)
    torch.testing.assert_close(P, P.T)
    # a direction orthogonal to r passes unchanged
    u = torch.randn(tr.config.feature_dim)
    u -= (u @ r) / (r @ r) * r
    torch.testing.assert_close(P @ u, u, atol=1e-3, rtol=1e-3)


def test_mla_projection_keeps_head_update_orthogonal(small_synthetic):
    def head_delta(projection):
        cfg = TrainConfig.from_dict({"method": "mla", "mla_projection": projection,
                                     "momentum": 0.0, "weight_decay": 0.0, "mla_proj_alpha": 1e-4})
        tr = Trainer(small_synthetic, cfg,
                     make_sampler("uniform"))
        seen = {}
        head = tr.model.head.fc
        orig = tr.method.update_projector

        def spy(features):
            seen["r"] = features.mean(0)
            orig(features)

        tr.method.update_projector = spy
        # record the head weights right before the second modality's optimizer step
        before = {}

        def pre_hook(opt, args, kwargs):
            before.setdefault(len(before), head.weight.detach().clone())

        tr.optimizer.register_step_pre_hook(pre_hook)
        tr.step()
        delta = head.weight.detach() - before[1]
        return delta, seen.get("r")

    delta, r = head_delta(True)
    assert torch.linalg.norm(delta @ r) < 1e-2 * torch.linalg.norm(delta) * torch.linalg.norm(r)
    delta_off, r_off = head_delta(False)
    assert r_off is None  # projection off: the projector is never touched
    assert torch.linalg.norm(delta_off) > 0


def test_bad_config_names_key():
    with pytest.raises(ConfigError, match="method"):
        TrainConfig(method="late-fusion").check()
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0).check()


def test_each_method_owns_its_options_under_their_flat_keys():
    from mmbalance.trainers.methods import METHOD_CLASSES, METHODS, MLAOptions, OGMGEOptions

    assert METHODS == tuple(METHOD_CLASSES)  # one list of names: the registry's
    cfg = TrainConfig.from_dict({"method": "ogm-ge", "ogm_alpha": "0.5", "mla_fusion": "equal"})
    assert isinstance(cfg.options, OGMGEOptions) and cfg.options.ogm_alpha == 0.5
    # another method's option is checked, then left to that method (a grid shares --set)
    flat = cfg.to_dict()
    assert flat["ogm_alpha"] == 0.5 and "mla_fusion" not in flat
    assert TrainConfig.from_dict(flat).to_dict() == flat  # written flat, read back the same
    mla = TrainConfig.from_dict({"method": "mla", "ogm_alpha": 0.5})
    assert isinstance(mla.options, MLAOptions) and "ogm_alpha" not in mla.to_dict()
    with pytest.raises(ConfigError, match="ogm_alpha: must be >= 0"):
        TrainConfig.from_dict({"method": "mla", "ogm_alpha": -1})
    with pytest.raises(ConfigError, match="'mla_projection' expects true or false"):
        TrainConfig.from_dict({"method": "mla", "mla_projection": "maybe"})
    with pytest.raises(ConfigError, match=r"mla_fusion: got 'vote', allowed \['entropy'"):
        TrainConfig.from_dict({"method": "mla", "mla_fusion": "vote"})
    with pytest.raises(ConfigError, match="unknown key.*allowed: .*mla_proj_alpha"):
        TrainConfig.from_dict({"mla_alpha": 1})


def test_memory_mapped_features_train_like_resident_ones(small_synthetic, tmp_path):
    import copy

    import numpy as np

    mapped = copy.deepcopy(small_synthetic)
    for name, split in mapped.splits.items():
        for m in mapped.modalities:
            path = tmp_path / f"{name}-{m}.npy"
            np.save(path, split.x[m])
            split.x[m] = np.load(path, mmap_mode="r")
    a, ra = fit(small_synthetic, "bss-l", epochs=2)
    b, rb = fit(mapped, "bss-l", epochs=2)
    assert not b.x["train"][mapped.modalities[0]].resident
    assert ra["test"] == rb["test"]
    assert [s["loss"] for s in a.history.steps] == [s["loss"] for s in b.history.steps]


@pytest.mark.parametrize("mid_epoch", [False, True], ids=["between-epochs", "mid-epoch"])
@pytest.mark.parametrize(
    "method, sampler",
    [("mla", "dus-h"), ("joint", "bss-h:t_grow=3,rerank=2"), ("joint", "bss-l"),
     ("joint", "bss-l:score=forward"), ("ogm-ge", "uniform")],
)
def test_restored_trainer_continues_exactly(small_synthetic, tmp_path, method, sampler,
                                            mid_epoch):
    cfg = TrainConfig(method=method, epochs=4, seed=5)
    straight = Trainer(small_synthetic, cfg, make_sampler(sampler))
    straight.fit()
    first = Trainer(small_synthetic, cfg, make_sampler(sampler))
    while first.epoch < 2:
        first.step(stop_at_epoch_end=True)
    if mid_epoch:  # into epoch 2, with part of its plan and BSS scores already used
        for _ in range(3):
            first.step()
        assert first.in_epoch and first.epoch == 2
    first.save(tmp_path / "state.pt")
    resumed = Trainer(small_synthetic, cfg, make_sampler(sampler))
    resumed.restore(tmp_path / "state.pt")
    resumed.fit()
    assert [s["loss"] for s in resumed.history.steps] == [s["loss"] for s in straight.history.steps]
    assert resumed.final_metrics()["test"] == straight.final_metrics()["test"]
    assert resumed.best_epoch == straight.best_epoch


def test_restore_refuses_another_config(small_synthetic, tmp_path):
    tr = Trainer(small_synthetic, TrainConfig(epochs=1), make_sampler("uniform"))
    tr.fit()
    tr.save(tmp_path / "s.pt")
    other = Trainer(small_synthetic, TrainConfig(epochs=1, batch_size=32), make_sampler("uniform"))
    with pytest.raises(ConfigError, match="batch_size"):
        other.restore(tmp_path / "s.pt")
    # a checkpoint of the state layout before issue 11 (no format mark) is one clear error
    from mmbalance.errors import UserError
    from mmbalance.trainers.state import load_file, save_file

    old = load_file(tmp_path / "s.pt")
    del old["format"]
    save_file(old, tmp_path / "old.pt")
    with pytest.raises(UserError, match="older mmbalance"):
        tr.restore(tmp_path / "old.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_the_gpu(small_synthetic):
    tr, res = fit(small_synthetic, "bss-l", device="cuda", epochs=2)
    assert next(tr.model.parameters()).is_cuda
    assert res["test"]["acc"] > 1 / small_synthetic.num_classes


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(small_synthetic):
    with pytest.raises(ConfigError, match="cuda"):
        Trainer(small_synthetic, TrainConfig(device="cuda"), make_sampler("uniform"))
