"""The paired reward (advantage over a same-seed reference run), data families and pools."""

import numpy as np
import pytest

from mmbalance.data.family import DataFamily
from mmbalance.envs import QuotaEnv, SequenceEnv
from mmbalance.errors import ConfigError

TINY = "synthetic:n_train=300,n_val=200,n_test=200,bayes_samples=1000"
PAIRED = {"paired": 1.0, "reference": "uniform", "discrepancy": 0.0}


def play(env, action_of, seed):
    env.reset(seed=seed)
    rewards, infos, done = [], [], False
    while not done:
        _, r, term, trunc, info = env.step(action_of(env))
        rewards.append(r)
        infos.append(info)
        done = term or trunc
    return rewards, infos


@pytest.mark.parametrize("measure", ["val_acc", "val_loss", "weak_probe"])
def test_a_policy_that_acts_as_its_reference_earns_exactly_zero(measure):
    env = QuotaEnv({"data": TINY, "train": {"epochs": 2, "batch_size": 32},
                    "steps_per_action": 4, "reward": {**PAIRED, "measure": measure}})
    uniform = env.actions.from_quotas(np.array([32, 32]))
    rewards, infos = play(env, lambda e: uniform, seed=7)
    assert len(rewards) > 3 and all(r == 0.0 for r in rewards)
    assert all(i["advantage"] == 0.0 for i in infos)
    # another policy does earn something: the reward is not zero by construction
    starve = env.actions.from_quotas(np.array([8, 64]))
    rewards, infos = play(env, lambda e: starve, seed=7)
    assert any(r != 0.0 for r in rewards)
    assert sum(rewards) == pytest.approx(100 * infos[-1]["advantage"])  # return = final A


def test_paid_at_the_end_the_return_is_the_same_final_advantage():
    """`pay: end`: nothing before the last decision, then the final advantage, which is the
    per-step return of the same run (same seed, same actions)."""
    starve = np.array([8, 64])
    returns = {}
    for pay in ("step", "end"):
        env = QuotaEnv({"data": TINY, "train": {"epochs": 2, "batch_size": 32},
                        "steps_per_action": 4, "reward": {**PAIRED, "pay": pay}})
        rewards, infos = play(env, lambda e: e.actions.from_quotas(starve), seed=7)
        returns[pay] = (rewards, infos[-1]["advantage"])
    step_rewards, final_a = returns["step"]
    end_rewards, end_a = returns["end"]
    assert len(end_rewards) == len(step_rewards) > 3
    assert all(r == 0.0 for r in end_rewards[:-1])
    assert any(r != 0.0 for r in step_rewards[:-1])  # the per-step reward does swing
    assert end_a == final_a != 0.0
    assert end_rewards[-1] == pytest.approx(100 * final_a)
    assert sum(end_rewards) == pytest.approx(sum(step_rewards))


def test_the_sequence_env_pairs_too():
    env = SequenceEnv({"data": TINY, "train": {"epochs": 3, "batch_size": 32},
                       "reward": PAIRED})
    uniform = env.actions.from_unit(env.actions.unit_of(1.0, np.ones(env.cfg.buckets)))
    rewards, _ = play(env, lambda e: uniform, seed=3)
    assert rewards == [0.0, 0.0, 0.0]
    bssh = SequenceEnv({"data": TINY, "train": {"epochs": 3, "batch_size": 32},
                        "reward": {**PAIRED, "reference": "bss-h"}})
    rewards, _ = play(bssh, lambda e: e.heuristic_action("uniform"), seed=3)
    assert any(r != 0.0 for r in rewards)  # uniform against BSS-H: another run


def test_starving_the_leader_is_paid_negative_where_it_lowers_held_out_accuracy():
    """On digits (left half strong, right half noisy), B/4 for the leader and 2B for the
    laggard lowers the held-out accuracy against uniform sampling; the paired reward's return
    says so, while the discrepancy reward would pay for it (README: reward gaming)."""
    # measured when quotas added updates (extra-steps), which starving paid for in D
    cfg = {"data": "digits", "train": {"epochs": 10, "quota_mode": "extra-steps"},
           "steps_per_action": 20, "reward": PAIRED}
    env = QuotaEnv(cfg)
    starve = env.actions.from_quotas(np.array([16, 128]))
    uniform = env.actions.from_quotas(np.array([64, 64]))
    r_ref, i_ref = play(env, lambda e: uniform, seed=20001)
    r_starve, i_starve = play(env, lambda e: starve, seed=20001)
    assert i_starve[-1]["final_test_acc"] < i_ref[-1]["final_test_acc"]
    assert sum(r_starve) < 0 and sum(r_ref) == 0.0
    gamed = QuotaEnv({**cfg, "reward": {"discrepancy": 1.0}})
    r_gamed, _ = play(gamed, lambda e: starve, seed=20001)
    r_plain, _ = play(gamed, lambda e: uniform, seed=20001)
    assert sum(r_gamed) > sum(r_plain)  # the pure discrepancy reward is gamed


def test_reference_runs_are_trained_once_per_pooled_set_up(monkeypatch):
    env = QuotaEnv({"data": TINY, "train": {"epochs": 1, "batch_size": 32}, "pool": 2,
                    "steps_per_action": 5, "reward": PAIRED})
    built = []
    build = env._build_reference
    monkeypatch.setattr(env, "_build_reference", lambda key: built.append(key) or build(key))
    env.paired.build_reference = env._build_reference
    uniform = env.actions.from_quotas(np.array([32, 32]))
    env.np_random = np.random.default_rng(1)  # the env's own stream picks pool members
    setups = set()
    for _ in range(6):
        env.reset()
        setups.add((env.selector, env.run_seed))
        done = False
        while not done:
            _, _, term, trunc, _ = env.step(uniform)
            done = term or trunc
    assert len(setups) == 2 and len(built) == 2  # six episodes, two reference runs
    assert all(s >= 10_000 for _, s in setups)  # pool seeds are training seeds


def test_data_families_draw_selectors():
    rng = np.random.default_rng(0)
    fam = DataFamily("synthetic:separation=1.2..3/1..2,informative=0.5..0.9/1,dim=16..64/8")
    assert not fam.fixed
    for _ in range(20):
        sel = fam.draw(rng)
        opts = dict(item.split("=") for item in sel.split(":", 1)[1].split(","))
        sa, sv = (float(v) for v in opts["separation"].split("/"))
        da, dv = opts["dim"].split("/")
        assert 1.2 <= sa <= 3 and 1 <= sv <= 2 and dv == "8" and 16 <= int(da) <= 64
    floats = DataFamily("synthetic:separation=2..4/1").draw(np.random.default_rng(1))
    assert "." in floats.split("separation=")[1].split("/")[0]  # a real range, not integers
    with pytest.raises(ConfigError, match="integers"):
        DataFamily("synthetic:n_train=100.5..200")
    choices = DataFamily(["synthetic", "digits"])
    assert {choices.draw(rng) for _ in range(30)} == {"synthetic", "digits"}
    assert DataFamily("synthetic:seed=3").fixed
    for bad in ("synthetic:separation=3..1", "synthetic:separation=a..b", [], [3]):
        with pytest.raises(ConfigError, match="data"):
            DataFamily(bad)


def test_an_env_draws_its_data_per_episode_and_keeps_its_spaces():
    env = QuotaEnv({"data": "synthetic:n_train=200..400,n_val=100,n_test=100,"
                            "bayes_samples=500,separation=2..4/1",
                    "train": {"epochs": 1, "batch_size": 32}, "steps_per_action": 50})
    seen = set()
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        seen.add((env.trainer.n_train, env.selector))
    assert len(seen) == 4
    with pytest.raises(ConfigError, match="modalities"):
        bad = QuotaEnv({"data": ["synthetic", "synthetic:names=a/b"], "train": {"epochs": 1}})
        for seed in range(10):
            bad.reset(seed=seed)


def test_the_vector_env_draws_per_run_and_refuses_shapes_it_cannot_stack():
    from mmbalance.envs.vector_quota_env import VectorQuotaEnv

    small = "synthetic:n_train=200,n_val=50,n_test=50,bayes_samples=300"
    vec = VectorQuotaEnv({"data": f"{small},separation=2..4/1", "num_runs": 2,
                          "train": {"epochs": 1, "batch_size": 32}})
    vec.reset(seed=0)
    assert vec.runs[0].selector != vec.runs[1].selector
    vec = VectorQuotaEnv({"data": f"{small},dim=8..40/8", "num_runs": 2,
                          "train": {"epochs": 1, "batch_size": 32}})
    with pytest.raises(ConfigError, match="same input shapes"):
        vec.reset(seed=0)


def test_paired_reward_options_are_checked():
    with pytest.raises(ConfigError, match="reference"):
        QuotaEnv({"data": TINY, "reward": {"paired": 1.0}})
    with pytest.raises(ConfigError, match="reference"):
        QuotaEnv({"data": TINY, "reward": {"paired": 1.0, "reference": "bss-h"}})
    with pytest.raises(ConfigError, match="measure"):
        QuotaEnv({"data": TINY, "reward": {**PAIRED, "measure": "vibes"}})
    with pytest.raises(ConfigError, match=r"reward\.pay: got 'later'.*'step', 'end'"):
        QuotaEnv({"data": TINY, "reward": {**PAIRED, "pay": "later"}})
    with pytest.raises(ConfigError, match="pool"):
        QuotaEnv({"data": TINY, "pool": -1})
