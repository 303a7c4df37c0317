"""The shipped sweeps on the current reward (issue 19, items 4-5): the PPO sweeps learn with
the paired reward at equal compute, and PBT over the `schedule` sampler's shares runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from mmbalance.data.registry import load_dataset
from mmbalance.envs import QuotaEnv
from mmbalance.tune.sweep import SweepConfig

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
TINY = "synthetic:n_train=240,n_val=80,n_test=80,bayes_samples=500"
PAIRED = {"paired": 1.0, "reference": "uniform", "measure": "val_acc", "pay": "end"}


def load(name: str) -> SweepConfig:
    return SweepConfig.from_yaml(ROOT / "tune_configs" / name)


@pytest.mark.parametrize("name", ["sweep_ppo_asha.yaml", "sweep_ppo_pbt.yaml"])
def test_ppo_sweeps_learn_with_the_paired_reward_at_equal_compute(name):
    cfg = load(name)
    assert cfg.trainable == "learn" and cfg.base["env"] == "quota"
    env_config = cfg.base["env_config"]
    reward = env_config["reward"]
    assert {k: reward[k] for k in PAIRED} == PAIRED
    assert not reward.get("discrepancy") and not reward.get("weak_gain")  # nothing else paid
    assert env_config["pool"] > 0  # reference runs are cached per set-up
    # the default quota meaning: quotas are shares of a fixed budget
    assert "quota_mode" not in env_config.get("train", {})
    learn = dict(env_config, data=TINY)  # the env this config builds, on tiny data
    env = QuotaEnv(learn)
    assert env.cfg.train_config(0).quota_mode == "share"
    assert env.paired.enabled and env.reward_cfg.pay == "end"
    # the metric is the episode return: with pay: end, the final advantage over uniform
    assert cfg.metric == "env_runners/episode_return_mean" and cfg.mode == "max"
    # every trial the search space can make keeps that reward
    for key in cfg.search_space:
        assert not key.startswith("env_config.reward")


def test_a_tiny_asha_sweep_on_the_paired_reward_runs(ray_session, tmp_path):
    from mmbalance.tune.sweep import run_sweep

    data = load("sweep_ppo_asha.yaml").to_dict()
    data["base"]["env_config"].update(data=TINY, pool=2, steps_per_action=4,
                                      train={"epochs": 2, "batch_size": 40})
    data["base"]["model"] = {"fcnet_hiddens": [16], "fcnet_activation": "tanh"}
    data["base"]["training"] = {"train_batch_size_per_learner": 24, "minibatch_size": 12,
                                "num_epochs": 1}
    data["search_space"]["env_config.steps_per_action"] = {"choice": [2, 4]}
    data.update(num_samples=2, stop={"training_iteration": 2},
                scheduler={"type": "asha", "max_t": 2, "grace_period": 1,
                           "reduction_factor": 2})
    cfg = SweepConfig.from_dict(data)
    res = run_sweep(cfg, tmp_path, progress=False)
    assert len(res["rows"]) == 2 and all(r["status"] == "TERMINATED" for r in res["rows"])
    assert res["best"] is not None
    # episodes ended and were paid their advantage over the uniform reference: a difference
    # of two accuracies, in points (reward.scale 100)
    for row in res["rows"]:
        ret = row["env_runners/episode_return_mean"]
        assert -100.0 <= ret <= 100.0
    # the best trial's policy is exported from its last checkpoint, with its own sampled
    # env settings, and replays as a sampler
    best = res["best"]
    spec = json.loads((tmp_path / "best_policy" / "policy.json").read_text())
    assert res["policy"] == tmp_path / "best_policy"
    assert spec["env_config"]["steps_per_action"] == best["config/env_config.steps_per_action"]
    # what finding it cost: both trials' env steps
    steps = [r["env_runners/num_env_steps_sampled_lifetime"] for r in res["rows"]]
    assert spec["learned_with"]["env_steps"] == sum(steps) > max(steps)
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    ds = load_dataset(TINY)
    train = TrainConfig.from_dict({**spec["env_config"]["train"], "method": "joint-uni"})
    final = Trainer(ds, train, make_sampler(f"learned:{res['policy']}")).fit()
    assert final["ledger"]["optimizer_steps"] > 0


def test_share_pbt_sweep_config_loads():
    cfg = load("sweep_share_pbt.yaml")
    assert cfg.trainable == "train" and cfg.scheduler["type"] == "pbt"
    assert cfg.base["sampler"] == "schedule"
    assert set(cfg.search_space) == {"sampler_options.quotas", "sampler_options.then",
                                     "sampler_options.at"}
    assert "quota_mode" not in cfg.base["train"]  # share, the default
    # every value each key can take was checked against the sampler when the YAML loaded
    at = cfg.search_space["sampler_options.at"]["choice"]
    assert max(at) < cfg.base["train"]["epochs"]


def test_pbt_mutates_a_choice_to_its_neighbours_never_out_of_the_set():
    """PBT perturbs a Tune domain by x0.8 / x1.2, which takes a choice of ints out of its
    set and fails on text (16/112): choices go to PBT as lists, stepped along in order."""
    import random

    from ray.tune.schedulers.pbt import _explore

    from mmbalance.tune.sweep.run import _scheduler

    cfg = load("sweep_share_pbt.yaml")
    pbt = _scheduler(cfg)
    mutations = pbt._hyperparam_mutations
    options = mutations["sampler_options"]
    shares = cfg.search_space["sampler_options.quotas"]["choice"]
    assert options["quotas"] == shares and options["at"] == [2, 4, 6, 8]
    random.seed(0)
    config = {"sampler_options": {"quotas": "64/64", "then": "64/64", "at": 4}}
    seen = set()
    for _ in range(200):
        new, _ops = _explore(config, mutations, pbt._resample_probability,
                             pbt._perturbation_factors, None)
        assert new["sampler_options"]["quotas"] in shares
        assert new["sampler_options"]["at"] in (2, 4, 6, 8)
        seen.add(new["sampler_options"]["quotas"])
    assert {"48/80", "80/48"} <= seen  # the neighbours of 64/64
    # a range stays a Tune domain, perturbed by a factor (PPO's lr)
    lr = _scheduler(load("sweep_ppo_pbt.yaml"))._hyperparam_mutations["lr"]
    assert not isinstance(lr, list)


def test_pbt_over_the_shares_runs_and_each_trial_trains_its_own_schedule(ray_session,
                                                                         tmp_path):
    """A 2-trial PBT over the schedule's shares: PBT clones the better trial's checkpoint
    and mutates the shares; the clone's step table shows the shares of its final config
    (not the donor's), at uniform's compute."""
    from mmbalance.tune.sweep import run_sweep

    data = load("sweep_share_pbt.yaml").to_dict()
    data["base"].update(data=TINY, train={"epochs": 4, "batch_size": 40, "probe": False})
    data["search_space"]["sampler_options.at"] = {"choice": [1, 2]}
    data.update(num_samples=2, stop={"training_iteration": 4},
                scheduler={"type": "pbt", "perturbation_interval": 1, "quantile_fraction": 0.5})
    cfg = SweepConfig.from_dict(data)
    t0 = time.perf_counter()
    res = run_sweep(cfg, tmp_path, progress=False)
    seconds = time.perf_counter() - t0
    assert seconds < 40, seconds
    rows = res["rows"]
    assert len(rows) == 2 and all(r["status"] == "TERMINATED" for r in rows), rows
    assert all(r["epoch"] == 4 for r in rows), rows
    for r in rows:
        # the last epoch trained the quotas of the phase its (final, mutated) config names
        first, then = r["config/sampler_options.quotas"], r["config/sampler_options.then"]
        last_epoch = r["epoch"] - 1
        quotas = then if last_epoch >= r["config/sampler_options.at"] else first
        trained = f"{r['sampler_quota_audio']:.0f}/{r['sampler_quota_visual']:.0f}"
        assert trained == quotas, r
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert {"sampler_quota_audio", "sampler_quota_visual", "val_acc"} <= set(trials.columns)
    summary = (tmp_path / "summary.md").read_text()
    assert "sampler_options.quotas" in summary
