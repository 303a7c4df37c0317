"""The quota env's actions at equal compute (issue 19, item 1).

Under the default quota meaning (`share`) an action only moves an iteration's M updates of
B samples between modalities: a policy that asks the largest quota for every modality (with
`budget: free` too, so nothing rescales its ask), one that starves a modality, and uniform
all end their episode with the same total encoder updates and gradient samples, and so does
the paired reference run the reward compares against. Read from the trainer's compute
ledger and from the env's final `info` (`final_ledger_<key>`); `extra-steps`, the ablation
meaning, shows the same greedy policy does buy compute when a quota can add updates.
"""

from __future__ import annotations

import numpy as np
import pytest

from mmbalance.envs import QuotaEnv
from mmbalance.trainers.ledger import encoder_totals

TINY = "synthetic:n_train=256,n_val=100,n_test=100,bayes_samples=1000"
B = 32
ITERATIONS = 2 * 256 // B  # 2 epochs of 8 iterations
PAIRED = {"paired": 1.0, "reference": "uniform", "measure": "val_acc", "pay": "end",
          "discrepancy": 0.0}


def make_env(method: str = "mla", action_mode: str = "discrete", budget: str = "fixed",
             **over) -> QuotaEnv:
    cfg = {"data": TINY, "method": method, "action_mode": action_mode, "budget": budget,
           "train": {"epochs": 2, "batch_size": B, "probe": False, **over.pop("train", {})},
           "steps_per_action": 4, "reward": PAIRED, **over}
    return QuotaEnv(cfg)


def greedy(env: QuotaEnv):
    """The action asking the largest quota for every modality."""
    if env.cfg.action_mode == "discrete":
        return np.full(len(env.modalities), len(env.actions.grid) - 1)
    if env.cfg.action_mode == "flat":
        return env.action_space.n - 1
    return np.ones(len(env.modalities), dtype=np.float32)


def starve(index: int):
    """The grid's smallest quota for modality `index`, the largest for the others."""
    def act(env: QuotaEnv):
        a = np.full(len(env.modalities), len(env.actions.grid) - 1)
        a[index] = 0
        return a
    return act


def uniform(env: QuotaEnv):
    return env.heuristic_action("uniform")


def play(env: QuotaEnv, policy, seed: int = 7) -> tuple[dict, dict, list[dict]]:
    """One episode; returns (the run's ledger, the final info, every step's info)."""
    env.reset(seed=seed)
    infos, done = [], False
    while not done:
        _obs, _r, term, trunc, info = env.step(policy(env))
        infos.append(info)
        done = term or trunc
    assert term and env.trainer.done
    return env.trainer.final_metrics()["ledger"], infos[-1], infos


def totals(ledger: dict) -> dict:
    t = encoder_totals(ledger, ["audio", "visual"])
    return {"updates": t["updates"], "grad_samples": t["grad_samples"]}


UNIFORM_TOTALS = {"updates": 2 * ITERATIONS, "grad_samples": 2 * ITERATIONS * B}


@pytest.mark.parametrize("method", ["mla", "joint-uni"])
@pytest.mark.parametrize("budget", ["fixed", "free"])
def test_no_action_changes_total_compute_under_share(method, budget):
    env = make_env(method, budget=budget)
    runs = {name: play(env, policy) for name, policy in
            [("uniform", uniform), ("greedy", greedy), ("starve_audio", starve(0)),
             ("starve_visual", starve(1))]}
    for name, (ledger, final, _) in runs.items():
        assert totals(ledger) == UNIFORM_TOTALS, name
        # the env's final info carries the same ledger
        assert final["final_ledger_updates_audio"] == ledger["updates_audio"], name
        assert final["final_ledger_grad_samples_visual"] == ledger["grad_samples_visual"], name
        assert final["final_ledger_optimizer_steps"] == ledger["optimizer_steps"], name
        assert not any(k.endswith("_seconds") for k in final if k.startswith("final_ledger_"))
    # the optimizer steps of a greedy run are a uniform run's too
    assert runs["greedy"][0]["optimizer_steps"] == runs["uniform"][0]["optimizer_steps"]
    # the actions did move compute: a starved modality got fewer updates than the other
    starved = runs["starve_audio"][0]
    assert starved["updates_audio"] < ITERATIONS < starved["updates_visual"]
    starved = runs["starve_visual"][0]
    assert starved["updates_visual"] < ITERATIONS < starved["updates_audio"]
    # and the quotas the env reports are what the actions asked (before the share rule)
    asked = runs["starve_audio"][2][0]
    if budget == "free":
        assert (asked["quota_audio"], asked["quota_visual"]) == (B // 4, 2 * B)
    else:  # rescaled to M·B samples
        assert asked["quota_audio"] + asked["quota_visual"] in (2 * B - 1, 2 * B, 2 * B + 1)
        assert asked["quota_audio"] < asked["quota_visual"]


@pytest.mark.parametrize("action_mode", ["flat", "continuous"])
def test_greedy_actions_of_every_action_mode_buy_nothing(action_mode):
    env = make_env("mla", action_mode=action_mode, budget="free")
    ledger, final, infos = play(env, greedy)
    assert infos[0]["quota_audio"] == infos[0]["quota_visual"] == 2 * B  # it asked the most
    assert totals(ledger) == UNIFORM_TOTALS
    assert final["final_ledger_updates_visual"] == ITERATIONS


def test_an_extreme_grid_starves_a_modality_at_the_same_total():
    """Quotas 1 and 16 B (a grid of B/32 and 16 B): audio almost never trains, visual
    takes its updates, and the total is still uniform's."""
    env = make_env("mla", budget="free", quota_grid=[1 / 32, 16])
    ledger, _final, _ = play(env, starve(0))
    assert ledger["updates_audio"] <= 1
    assert ledger["updates_visual"] >= 2 * ITERATIONS - 1
    assert totals(ledger) == UNIFORM_TOTALS


@pytest.mark.parametrize("method", ["mla", "joint-uni"])
def test_the_paired_reference_run_has_the_policy_runs_totals(method):
    """The reward compares the policy's run with a uniform run at the same compute."""
    env = make_env(method, budget="free")
    for policy in (greedy, starve(0)):
        ledger, final, _ = play(env, policy)
        assert "advantage" in final  # the paired reward was read at the end
        ref = env.paired.ref.trainer
        assert ref is not None and ref.global_step == env.trainer.global_step == ITERATIONS
        ref_ledger = ref.ledger.snapshot(0.0)
        assert totals(ref_ledger) == totals(ledger) == UNIFORM_TOTALS
        # the fusion layer trains once per iteration in both runs; joint-uni can take more
        # optimizer steps (an iteration giving one encoder two updates of B needs two), but
        # each updates only what its share pays for
        assert ref_ledger["updates_head"] == ledger["updates_head"]
        if method == "mla":
            assert ref_ledger["optimizer_steps"] == ledger["optimizer_steps"]
        # the reference trained uniform quotas: equal updates per modality
        assert ref_ledger["updates_audio"] == ref_ledger["updates_visual"] == ITERATIONS


def test_extra_steps_lets_the_same_greedy_policy_buy_updates():
    """The ablation meaning is where a quota adds compute: the test above can fail."""
    env = make_env("mla", budget="free", train={"quota_mode": "extra-steps"})
    ledger, final, _ = play(env, greedy)
    assert totals(ledger)["updates"] == 2 * UNIFORM_TOTALS["updates"]  # 2B: two steps each
    assert final["final_ledger_updates_audio"] == 2 * ITERATIONS
