"""Adding a sampler is one class and one registry line: the new sampler then trains from the
command line, in a sweep and as the paired reward's reference run, with no other code."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from mmbalance.cli import main
from mmbalance.envs import QuotaEnv
from mmbalance.errors import ConfigError
from mmbalance.policies.dus import QuotaSampler
from mmbalance.policies.registry import SAMPLERS, Entry, build_sampler, make_sampler

TINY = "synthetic:n_train=256,n_val=100,n_test=100,bayes_samples=1000"


class LeadQuotaSampler(QuotaSampler):
    """A toy quota sampler: B/2 samples for every modality but `lead`, which gets 3B/2."""

    name = "lead"

    def __init__(self, lead: int = 0):
        super().__init__()
        self.lead = lead

    def bind(self, ctx) -> None:
        super().bind(ctx)
        if not 0 <= self.lead < len(ctx.modalities):
            raise ConfigError(f"lead: 'lead' must name a modality index, got {self.lead}")
        quotas = np.full(len(ctx.modalities), ctx.batch_size // 2)
        quotas[self.lead] = 3 * ctx.batch_size // 2
        self.set_quotas(quotas)

    def config(self) -> dict:
        return {"lead": self.lead, **super().config()}


@pytest.fixture
def lead(monkeypatch):
    monkeypatch.setitem(SAMPLERS, "lead", Entry(LeadQuotaSampler))  # the one registry line


def test_a_new_sampler_is_built_from_its_name_and_typed_options(lead):
    s = build_sampler("lead", {"lead": "1"})
    assert isinstance(s, LeadQuotaSampler) and s.lead == 1
    assert make_sampler("lead:lead=1").lead == 1  # the CLI's spelling of the same
    with pytest.raises(ConfigError, match="sampler 'lead'.*leed"):
        build_sampler("lead", {"leed": 1})
    with pytest.raises(ConfigError, match="lead"):
        build_sampler("lead", {"lead": "first"})


def test_a_new_sampler_trains_from_the_command_line(lead, tmp_path):
    out = tmp_path / "run"
    rc = main(["train", "--data", TINY, "--method", "mla", "--sampler", "lead:lead=1",
               "--epochs", "1", "--out", str(out), "--no-progress", "--batch-size", "32",
               "--set", "quota_mode=scaled"])
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["sampler_config"]["lead"] == 1
    steps = pd.read_parquet(out / "steps.parquet")
    assert (steps["quota_audio"] == 16).all() and (steps["quota_visual"] == 48).all()


def test_a_new_sampler_is_a_paired_reward_reference(lead):
    """Acting as the reference earns exactly 0; acting otherwise does not."""
    cfg = {"data": TINY, "train": {"epochs": 1, "batch_size": 32}, "steps_per_action": 4,
           "reward": {"paired": 1.0, "reference": "lead:lead=1", "discrepancy": 0.0}}
    env = QuotaEnv(cfg)
    env.reset(seed=3)
    same = env.actions.from_quotas([16, 48])
    rewards = [env.step(same)[1] for _ in range(2)]
    assert rewards == [0.0, 0.0]
    env.reset(seed=3)
    other = env.actions.from_quotas([48, 16])
    assert any(env.step(other)[1] != 0.0 for _ in range(2))
    with pytest.raises(ConfigError, match="reference"):  # a paired sampler is no quota reference
        QuotaEnv({**cfg, "reward": {**cfg["reward"], "reference": "bss-h"}})


def _lead_trial(config: dict) -> None:
    """The package's trainable, on a worker that has the toy's registry line too."""
    from mmbalance.policies.registry import SAMPLERS, Entry
    from mmbalance.tune.trainables import plain_trial

    SAMPLERS.setdefault("lead", Entry(LeadQuotaSampler))
    plain_trial(config)


def test_a_new_sampler_runs_in_a_sweep(ray_session, tmp_path):
    import ray.cloudpickle
    from ray import tune

    # this module is not importable on Ray's workers: its trainable and class travel by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        tuner = tune.Tuner(
            tune.with_resources(_lead_trial, {"cpu": 1}),
            param_space={"data": TINY, "method": "mla", "sampler": "lead",
                         "sampler_options": {"lead": tune.grid_search([0, 1])},
                         "train": {"epochs": 1, "batch_size": 32, "quota_mode": "scaled"}},
            tune_config=tune.TuneConfig(metric="val_acc", mode="max"),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="lead", verbose=0))
        results = tuner.fit()
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert results.num_errors == 0 and len(results) == 2
    assert sorted(r.config["sampler_options"]["lead"] for r in results) == [0, 1]
    assert all(r.metrics["epoch"] == 1 for r in results)
