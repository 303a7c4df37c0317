"""DUS-RL: the online policy moves the right way, repeats under a seed, refuses bad init files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmbalance.balance import LearningStatus
from mmbalance.cli import main as cli
from mmbalance.errors import ConfigError, UserError
from mmbalance.policies.dus_rl import DUSRLSampler
from mmbalance.policies.policy_file import FORMAT
from mmbalance.policies.registry import make_sampler
from mmbalance.policies.signals import Snapshot, quota_observation
from mmbalance.report import make_report
from mmbalance.runs import write_run
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.sampler import SamplerContext, StepFeedback
from mmbalance.trainers.trainer import Trainer

B = 16
GRID = [4, 8, 16, 24, 32]  # B x the default multiples
TINY = "synthetic:n_train=256,n_val=100,n_test=100,bayes_samples=1000"


def ctx(mods=("a", "v"), seed=0, epochs=50, num_classes=6):
    return SamplerContext(n_train=160, modalities=list(mods), batch_size=B, epochs=epochs,
                          rng=np.random.default_rng(seed), num_classes=num_classes)


def no_scorer():
    raise AssertionError("dus-rl never scores samples")


def bound(sampler, **kw):
    sampler.bind(ctx(**kw))
    sampler.start_epoch(0, no_scorer)
    return sampler


def status_with(s_a: float, s_v: float, status=None):
    status = status or LearningStatus(["a", "v"])
    status.fold([([s_a, s_v], [0.3, 1.2])])
    return status


class WeakQuotaReward(DUSRLSampler):
    """A hand-built reward: the more samples the weak modality `v` got, the better."""

    def decision_reward(self, before: Snapshot, after: Snapshot) -> float:
        return (float(self.quotas[1]) - B) / B


# ------------------------------------------------------------------ update direction
@pytest.mark.parametrize(("mode", "lr"), [("discrete", 0.01), ("flat", 0.01),
                                        ("continuous", 0.005)])
def test_reward_for_larger_weak_quota_raises_its_probability(mode, lr):
    moved_v, moved_a = [], []
    for seed in range(6):
        s = bound(WeakQuotaReward(k=1, lr=lr, entropy=0.0, mode=mode, budget="free"), seed=seed)
        first = dict(s.log_metrics("step"))
        status = status_with(0.9, 0.3)
        for _ in range(40):
            s.feedback(StepFeedback(0, status_with(0.9, 0.3, status)))
        last = s.log_metrics("step")
        assert last["rl_updates"] == 40
        moved_v.append(last["rl_mean_v"] - first["rl_mean_v"])
        moved_a.append(abs(last["rl_mean_a"] - first["rl_mean_a"]))
        if mode != "continuous":  # the sizes above B gain probability, the smallest loses it
            above = [f"rl_p_v_{n}" for n in GRID if n > B]
            assert sum(last[c] for c in above) > 1.5 * sum(first[c] for c in above)
            assert last[f"rl_p_v_{GRID[0]}"] < first[f"rl_p_v_{GRID[0]}"]
    assert min(moved_v) > 0.2 * B  # up, in every seed: a clear move, not noise
    # `a` gets no signal: its policy only drifts, less than v's moves
    assert np.mean(moved_a) < 0.75 * np.mean(moved_v)


@pytest.mark.parametrize("mode", ["discrete", "continuous"])
def test_discrepancy_reward_learns_to_feed_the_weak_modality(mode):
    """The env's own reward: here v's batch score grows with its quota, so feeding v more
    shrinks D faster, and the policy must find that from the reward alone."""
    moved = []
    for seed in range(6):
        s = bound(DUSRLSampler(k=1, lr=0.02, entropy=0.0, mode=mode, budget="free"), seed=seed)
        first = dict(s.log_metrics("step"))
        status = LearningStatus(["a", "v"], accumulation="ema", ema_beta=0.5)
        for _ in range(60):
            frac = (s.quotas[1] - GRID[0]) / (GRID[-1] - GRID[0])
            s.feedback(StepFeedback(0, status_with(0.9, 0.2 + 0.6 * frac, status)))
        last = s.log_metrics("step")
        assert np.isfinite(last["rl_reward"]) and np.isfinite(last["rl_baseline"])
        moved.append(last["rl_mean_v"] - first["rl_mean_v"])
    # a noisy single-sample gradient: most seeds, not all, and clearly on average
    assert sum(d > 0.25 * B for d in moved) >= 5, moved
    assert np.mean(moved) > 0.5 * B, moved


def test_baseline_is_a_moving_average_of_rewards():
    s = bound(WeakQuotaReward(k=1, lr=1e-3, baseline_beta=0.5, budget="free"))
    rewards = []
    for _ in range(6):
        rewards.append((float(s.quotas[1]) - B) / B)  # the pending decision's reward
        s.feedback(StepFeedback(0, status_with(0.8, 0.4)))
    b = rewards[0]
    for r in rewards[1:]:
        b += 0.5 * (r - b)
    assert s.log_metrics("step")["rl_baseline"] == pytest.approx(b)
    assert s.log_metrics("step")["rl_reward"] == pytest.approx(rewards[-1])


def test_decides_every_k_steps_on_the_env_observation():
    s = bound(DUSRLSampler(k=4))
    assert s.log_metrics("step")["rl_updates"] == 0 and np.isnan(s.log_metrics("step")["rl_reward"])
    status = LearningStatus(["a", "v"])
    seen = []
    for _ in range(12):
        status_with(0.7, 0.5, status)
        s.feedback(StepFeedback(0, status))
        seen.append(s.log_metrics("step")["rl_updates"])
    assert seen == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
    # the observation is the env's, with the last quotas and progress t/T
    obs = quota_observation(status, 12 / s.decisions.total_steps, s.quotas, GRID[0], GRID[-1], 6)
    assert obs.shape == (12,) and s.decisions.total_steps == 50 * 10
    # the chosen grid quotas, rescaled to the iteration's budget of 2B samples
    assert GRID[0] <= s.quotas.min() and s.quotas.max() <= GRID[-1]
    assert abs(int(s.quotas.sum()) - 2 * B) <= 1 or GRID[0] in s.quotas or GRID[-1] in s.quotas


# ------------------------------------------------------------------------ determinism
def _fit(seed: int, sampler: str = "dus-rl:k=3,lr=0.05") -> Trainer:
    from mmbalance.data.registry import load_dataset

    tr = Trainer(load_dataset(TINY), TrainConfig(method="mla", epochs=2, seed=seed),
                 make_sampler(sampler))
    tr.fit()
    return tr


def test_a_run_repeats_exactly_under_its_seed():
    a, b, c = _fit(0), _fit(0), _fit(1)
    steps_a, steps_b = pd.DataFrame(a.history.steps), pd.DataFrame(b.history.steps)
    rl_cols = [col for col in steps_a.columns if col.startswith("rl_")]
    assert {"rl_p_audio_16", "rl_mean_visual", "rl_reward", "rl_baseline"} <= set(rl_cols)
    pd.testing.assert_frame_equal(steps_a, steps_b)
    for x, y in zip(a.sampler.net.parameters(), b.sampler.net.parameters()):
        assert torch.equal(x, y)
    steps_c = pd.DataFrame(c.history.steps)
    assert not steps_c[["quota_audio", "quota_visual"]].equals(
        steps_a[["quota_audio", "quota_visual"]])
    # the policy did learn, and its quotas share each iteration's budget of 2B samples
    assert steps_a["rl_updates"].iloc[-1] == math.ceil(len(steps_a) / 3)
    total = steps_a["quota_audio"] + steps_a["quota_visual"]
    clamped = steps_a[["quota_audio", "quota_visual"]].isin([16, 128]).any(axis=1)
    assert (((total - 128).abs() <= 1) | clamped).all()


@pytest.mark.parametrize("sampler, mid_epoch", [("dus-rl:k=3,lr=0.05", False),
                                                ("dus-rl:k=3,mode=continuous", False),
                                                ("dus-rl:k=3,lr=0.05", True)])
def test_a_restored_run_continues_exactly(tmp_path, sampler, mid_epoch):
    """Trainer checkpoints carry the policy: weights, Adam state, its random stream and the
    decision pending across the epoch boundary (taken at step 6 of 8, scored at step 9)."""
    from mmbalance.data.registry import load_dataset

    data, cfg = load_dataset(TINY), TrainConfig(method="mla", epochs=4, seed=3)
    straight = Trainer(data, cfg, make_sampler(sampler))
    straight.fit()
    first = Trainer(data, cfg, make_sampler(sampler))
    while first.epoch < 2:
        first.step(stop_at_epoch_end=True)
    for _ in range(4 if mid_epoch else 0):  # within epoch 2, between two decisions
        first.step()
    first.save(tmp_path / "state.pt")
    resumed = Trainer(data, cfg, make_sampler(sampler))
    resumed.restore(tmp_path / "state.pt")
    resumed.fit()
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.history.steps),
                                  pd.DataFrame(straight.history.steps))
    for x, y in zip(resumed.sampler.net.parameters(), straight.sampler.net.parameters()):
        assert torch.equal(x, y)


def test_the_global_torch_stream_is_left_alone():
    """Building and running the policy must not shift the trainer's global torch RNG."""
    torch.manual_seed(0)
    x = torch.rand(3)
    torch.manual_seed(0)
    s = bound(DUSRLSampler(k=1, hidden=[8, 8]))
    s.feedback(StepFeedback(0, status_with(0.9, 0.3)))
    assert torch.equal(torch.rand(3), x)


# ----------------------------------------------------------------------- init files
def write_policy(folder: Path, *, modalities: int = 2, space: dict | None = None,
                 out: int | None = None, env_config: dict | None = None, seed: int = 0) -> Path:
    """An exported quota policy as `mmbalance learn` writes it (obs -> 16 tanh -> out)."""
    space = space or {"type": "MultiDiscrete", "nvec": [5] * modalities}
    if out is None:
        out = {"MultiDiscrete": sum(space.get("nvec", [])), "Discrete": space.get("n", 0),
               "Box": 2 * len(space.get("low", []))}[space["type"]]
    obs = 5 * modalities + 2
    spec = {"format": FORMAT, "algorithm": "PPO", "env": "quota", "num_classes": 6,
            "env_config": {"data": TINY, "method": "mla", "train": {"epochs": 1, "quota_mode": "share"},
                           "steps_per_action": 5, **(env_config or {})},
            "observation_space": {"dim": obs, "low": [-1.0] * obs, "high": [5.0] * obs},
            "action_space": space,
            "layers": [{"kind": "linear", "in": obs, "out": 16}, {"kind": "tanh"},
                       {"kind": "linear", "in": 16, "out": out}]}
    g = torch.Generator().manual_seed(seed)
    tensors = {"net.0.weight": torch.randn(16, obs, generator=g),
               "net.0.bias": torch.zeros(16),
               "net.2.weight": torch.randn(out, 16, generator=g),
               "net.2.bias": torch.zeros(out)}
    folder.mkdir(parents=True)
    torch.save(tensors, folder / "policy.pt")
    (folder / "policy.json").write_text(json.dumps(spec))
    return folder


def test_init_starts_from_the_exported_policy_and_keeps_learning(tmp_path):
    path = write_policy(tmp_path / "learn, run 1" / "policy")  # a comma and slashes in it
    s = make_sampler(f"dus-rl:lr=0.05,init={path}")
    assert s.k == 5 and s.mode == "discrete" and s.init == str(path)  # from the env config
    bound(s)
    obs = quota_observation(LearningStatus(["a", "v"]), 0.0, np.full(2, B), GRID[0], GRID[-1],
                            6)
    logits = s.policy_file(torch.as_tensor(obs)[None])[0].detach().reshape(2, 5)
    expected = torch.softmax(logits, -1).numpy()
    got = np.array([[s.log_metrics("step")[f"rl_p_{m}_{n}"] for n in GRID] for m in "av"])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    before = [p.clone() for p in s.net.parameters()]
    for _ in range(10):
        s.feedback(StepFeedback(0, status_with(0.9, 0.3)))
    assert any(not torch.equal(p, q) for p, q in zip(before, s.net.parameters()))
    reloaded = make_sampler(f"dus-rl:init={path}").policy_file.state_dict()
    for key, value in s.policy_file.state_dict().items():  # the file's copy is untouched
        assert torch.equal(value, reloaded[key])


def test_init_box_policy_runs_continuous(tmp_path):
    path = write_policy(tmp_path / "p", space={"type": "Box", "low": [-1.0, -1.0],
                                               "high": [1.0, 1.0], "squash": True})
    s = bound(make_sampler(f"dus-rl:k=1,init={path}"))
    assert s.mode == "continuous" and s.squash
    for _ in range(3):
        s.feedback(StepFeedback(0, status_with(0.9, 0.3)))
    row = s.log_metrics("step")
    assert GRID[0] <= row["rl_mean_v"] <= GRID[-1] and row["rl_std_v"] > 0


@pytest.mark.parametrize(
    ("kwargs", "ctx_kw", "message"),
    [
        ({"modalities": 3}, {}, "observation has 17 values; a quota policy for 2 modalities"),
        ({"space": {"type": "MultiDiscrete", "nvec": [4, 4]}}, {},
         r"MultiDiscrete\[4, 4\]; this run's grid \[4, 8, 16, 24, 32\] needs \[5, 5\]"),
        ({"space": {"type": "Discrete", "n": 16}}, {}, r"Discrete\(16\).*needs 25"),
        ({"space": {"type": "Box", "low": [-1.0] * 3, "high": [1.0] * 3}, "modalities": 2}, {},
         r"Box of 3 values; this run has 2 modalities"),
        ({"space": {"type": "Box", "low": [-1.0] * 2, "high": [1.0] * 2}, "out": 2}, {},
         r"outputs 2 values; the action space needs 4"),
        ({}, {"mods": ("a", "v", "t")}, r"a quota policy for 3 modalities needs 17"),
    ],
)
def test_init_with_spaces_that_do_not_match_is_a_clean_error(tmp_path, kwargs, ctx_kw, message):
    path = write_policy(tmp_path / "p", **kwargs)
    s = make_sampler(f"dus-rl:init={path}")
    with pytest.raises(UserError, match=message) as info:
        s.bind(ctx(**ctx_kw))
    assert str(path) in str(info.value)


def test_bad_selectors_are_config_errors(tmp_path):
    path = write_policy(tmp_path / "p")
    with pytest.raises(ConfigError, match=r"mode=continuous does not match .*MultiDiscrete"):
        make_sampler(f"dus-rl:mode=continuous,init={path}")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['kk'\]; allowed: .*'k'"):
        make_sampler("dus-rl:kk=3")
    with pytest.raises(ConfigError, match="write init=PATH as its own option"):
        make_sampler(f"dus-rl:k=2init={path}")
    anywhere = make_sampler(f"dus-rl:init={path},k=3,lr=0.1")  # as sweeps write options
    assert (anywhere.init, anywhere.k, anywhere.lr) == (str(path), 3, 0.1)
    with pytest.raises(ConfigError, match="'baseline_beta' must be in"):
        make_sampler("dus-rl:baseline_beta=0")
    with pytest.raises(ConfigError, match="'lr'"):
        make_sampler("dus-rl:lr=fast")
    with pytest.raises(UserError, match="not an exported policy"):
        make_sampler(f"dus-rl:init={tmp_path / 'missing'}")
    from mmbalance.data.registry import load_dataset

    with pytest.raises(ConfigError, match="cannot train on"):  # DUS needs unimodal batches
        Trainer(load_dataset(TINY), TrainConfig(method="joint", epochs=1), make_sampler("dus-rl"))


# ------------------------------------------------------------------ CLI and report
def test_train_compare_and_report_with_dus_rl(tmp_path, capsys):
    run = tmp_path / "run"
    rc = cli(["train", "--data", TINY, "--method", "mla", "--sampler",
              "dus-rl:mode=continuous,k=4", "--epochs", "2", "--no-progress", "--out", str(run)])
    assert rc == 0
    steps = pd.read_parquet(run / "steps.parquet")
    assert {"rl_mean_audio", "rl_std_visual", "rl_reward", "rl_baseline"} <= set(steps.columns)
    config = json.loads((run / "config.json").read_text())
    assert config["sampler_config"]["k"] == 4 and config["sampler_config"]["mode"] == "continuous"
    assert "policy.png" in {p.name for p in make_report(run)}
    out = tmp_path / "cmp"
    rc = cli(["compare", "--data", TINY, "--grid", "mla/dus-rl", "mla/dus-h", "--seeds", "1",
              "--epochs", "1", "--parallel", "none", "--no-progress", "--out", str(out)])
    assert rc == 0
    assert "| mla | dus-rl |" in (out / "summary.md").read_text()
    capsys.readouterr()


def test_report_policy_plot_for_discrete_runs(tmp_path):
    tr = _fit(0)
    run = tmp_path / "run"
    run.mkdir()
    write_run(run, tr, tr.final_metrics(), {"sampler": "dus-rl", "train": {"method": "mla"}})
    names = {p.name for p in make_report(run)}
    assert "policy.png" in names and "quotas.png" in names
    import matplotlib.pyplot as plt

    image = plt.imread(run / "plots" / "policy.png")
    assert image.shape[0] > 600 and image[..., :3].std() > 0.01  # 4 panels, not blank
    dus_h = tmp_path / "dush"
    dus_h.mkdir()
    tr = _fit(0, "dus-h")
    write_run(dus_h, tr, tr.final_metrics(), {"sampler": "dus-h", "train": {"method": "mla"}})
    assert "policy.png" not in {p.name for p in make_report(dus_h)}


def test_evaluate_runs_dus_rl_from_the_policy_and_from_scratch(tmp_path, capsys):
    path = write_policy(tmp_path / "policy")
    out = tmp_path / "eval"
    rc = cli(["evaluate", str(path), "--seeds", "1", "--parallel", "none", "--no-progress",
              "--out", str(out)])
    assert rc == 0
    summary = (out / "summary.md").read_text()
    for sampler in (f"dus-rl:init={path}", "| dus-rl |", "| dus-h |", f"learned:{path}"):
        assert sampler in summary
    capsys.readouterr()
