"""The Gymnasium environments: API conformance, determinism, budgets, bad actions, heuristics."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import mmbalance.envs  # noqa: F401 - registers the environments
from mmbalance.envs import QuotaEnv, SequenceEnv
from mmbalance.errors import ConfigError

TINY = "synthetic:n_train=256,n_val=100,n_test=100,bayes_samples=1000"
QUOTA = {"data": TINY, "train": {"epochs": 2, "batch_size": 32}, "steps_per_action": 4}
SEQ = {"data": TINY, "train": {"epochs": 3, "batch_size": 32}}


def rollout(env, seed, policy):
    obs, _ = env.reset(seed=seed)
    traj, done = [obs], False
    total, info = 0.0, {}
    while not done:
        obs, r, term, trunc, info = env.step(policy(env))
        traj.append(obs)
        total += r
        done = term or trunc
    return np.array(traj), total, info, term


@pytest.mark.parametrize("mode", ["discrete", "flat", "continuous"])
def test_quota_env_passes_gymnasium_checker(mode):
    check_env(QuotaEnv({**QUOTA, "action_mode": mode}), skip_render_check=True)


@pytest.mark.parametrize("mode", ["continuous", "discrete"])
@pytest.mark.parametrize("control", ["pacing", "buckets", "both"])
def test_sequence_env_passes_gymnasium_checker(mode, control):
    check_env(SequenceEnv({**SEQ, "action_mode": mode, "control": control}),
              skip_render_check=True)


def test_registered_with_gymnasium():
    env = gym.make("mmbalance/Quota-v0", config=QUOTA)
    assert env.reset(seed=0)[0].shape == env.observation_space.shape
    env = gym.make("mmbalance/Sequence-v0", config=SEQ)
    assert env.reset(seed=0)[0].shape == env.observation_space.shape


def test_same_seed_same_trajectory_and_reset_starts_fresh():
    env = QuotaEnv(QUOTA)
    rng = np.random.default_rng(0)
    actions = [env.action_space.sample() for _ in range(50)]
    it = iter(actions)
    a, ra, _, _ = rollout(env, 7, lambda e: next(it))
    it = iter(actions)
    b, rb, _, _ = rollout(env, 7, lambda e: next(it))
    np.testing.assert_array_equal(a, b)
    assert ra == rb
    # reset gives a fresh model: the first observation is the untrained one again
    first, _ = env.reset(seed=7)
    np.testing.assert_array_equal(first, a[0])
    assert env.trainer.global_step == 0 and env.trainer.epoch == 0
    it = iter(actions)
    c, _, _, _ = rollout(env, 8, lambda e: next(it))
    assert not np.array_equal(a, c)
    del rng


def test_episode_terminates_at_the_run_budget_and_truncates_on_cap():
    env = QuotaEnv(QUOTA)
    steps_per_epoch = int(np.ceil(256 / 32))
    traj, _, info, terminated = rollout(env, 0, lambda e: e.heuristic_action("uniform"))
    assert terminated
    assert env.trainer.done and env.trainer.global_step == 2 * steps_per_epoch
    assert len(traj) - 1 == int(np.ceil(2 * steps_per_epoch / 4))
    assert "final_val_acc" in info and "final_test_acc_visual" in info
    capped = QuotaEnv({**QUOTA, "max_env_steps": 2})
    traj, _, _, terminated = rollout(capped, 0, lambda e: e.heuristic_action("uniform"))
    assert not terminated and len(traj) - 1 == 2


def test_actions_set_the_quotas_the_trainer_feeds():
    env = QuotaEnv({**QUOTA, "action_mode": "discrete"})
    env.reset(seed=0)
    grid = env.actions.grid
    _, _, _, _, info = env.step(np.array([0, len(grid) - 1]))
    assert info["quota_audio"] == grid[0] and info["quota_visual"] == grid[-1]
    steps = env.trainer.history.steps[-4:]
    assert all(s["quota_audio"] == grid[0] and s["quota_visual"] == grid[-1] for s in steps)


@pytest.mark.parametrize(
    "mode, bad",
    [
        ("discrete", np.array([0, 99])),
        ("discrete", np.array([0])),
        ("discrete", np.array([0.5, 1.0])),
        ("continuous", np.array([np.nan, 0.0], dtype=np.float32)),
        ("continuous", np.array([2.0, 0.0], dtype=np.float32)),
        ("flat", np.int64(10_000)),
    ],
)
def test_invalid_actions_are_refused_before_training(mode, bad):
    env = QuotaEnv({**QUOTA, "action_mode": mode})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)
    assert env.trainer.global_step == 0


def test_sequence_env_invalid_action_and_config():
    env = SequenceEnv(SEQ)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.full(env.dims, np.inf, dtype=np.float32))
    assert env.trainer.global_step == 0
    with pytest.raises(ConfigError, match="control"):
        SequenceEnv({**SEQ, "control": "everything"})
    with pytest.raises(ConfigError, match="unknown key"):
        QuotaEnv({**QUOTA, "levels_": 3})


def test_sequence_env_pacing_controls_epoch_size():
    env = SequenceEnv({**SEQ, "control": "pacing"})
    env.reset(seed=0)
    env.step(np.array([-1.0], dtype=np.float32))  # min pacing 0.1
    assert env.trainer.history.epochs[-1]["sampler_subset_size"] == round(0.1 * 256)
    env.step(np.array([1.0], dtype=np.float32))
    assert env.trainer.history.epochs[-1]["sampler_subset_size"] == 256


def test_heuristics_run_as_fixed_policies_with_the_same_reward():
    env = QuotaEnv({**QUOTA, "action_mode": "continuous"})
    _, r_uniform, _, _ = rollout(env, 1, lambda e: e.heuristic_action("uniform"))
    _, r_dus, _, _ = rollout(env, 1, lambda e: e.heuristic_action("dus-h", strength=200))
    assert r_uniform != r_dus
    # DUS-H as a policy hands the modality with the lower ŝ the larger quota
    env.reset(seed=1)
    for _ in range(3):
        env.step(env.heuristic_action("uniform"))
    s_hat = env.trainer.status.s_hat
    quotas = env.actions.to_quotas(env.heuristic_action("dus-h", strength=200))
    assert quotas[int(np.argmin(s_hat))] > quotas[int(np.argmax(s_hat))]
    seq = SequenceEnv(SEQ)
    seq.reset(seed=0)
    seq.step(seq.heuristic_action("bss-h"))
    first = seq.trainer.history.epochs[-1]
    assert first["sampler_subset_size"] < 256  # BSS-H starts on a subset
    assert first["sampler_subset_mean_degree"] < seq.sampler.degree.mean()  # the balanced end


def test_reward_terms():
    from mmbalance.trainers.signals import RewardConfig, Snapshot, reward

    before, after = Snapshot(0.2, 0.3, 0.5), Snapshot(0.1, 0.35, 0.6)
    assert reward(before, after, RewardConfig(scale=1.0)) == pytest.approx(0.1)
    full = RewardConfig(discrepancy=1, weak_gain=2, val_acc=3, scale=10)
    assert reward(before, after, full) == pytest.approx(10 * (0.1 + 2 * 0.05 + 3 * 0.1))
    with pytest.raises(ConfigError, match="allowed"):
        RewardConfig.from_dict({"accuracy": 1})
