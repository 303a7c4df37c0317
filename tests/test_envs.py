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
    env = QuotaEnv({**QUOTA, "action_mode": "discrete", "budget": "free"})
    env.reset(seed=0)
    grid = env.actions.grid
    _, _, _, _, info = env.step(np.array([0, len(grid) - 1]))
    assert info["quota_audio"] == grid[0] and info["quota_visual"] == grid[-1]
    steps = env.trainer.history.steps[-4:]
    assert all(s["quota_audio"] == grid[0] and s["quota_visual"] == grid[-1] for s in steps)


def test_a_fixed_budget_redistributes_an_iterations_samples():
    """By default the chosen quotas are rescaled to M·B samples: a policy cannot buy
    learning with more samples (with steps or scaled quotas, more samples learn more)."""
    env = QuotaEnv({**QUOTA, "action_mode": "discrete"})
    b = env.cfg.train_config(0).batch_size
    top = len(env.actions.grid) - 1
    assert env.actions.to_quotas(np.array([top, top])).tolist() == [b, b]  # 2B each -> B
    q = env.actions.to_quotas(np.array([0, top]))  # B/4 and 2B: 2.25 B -> 2 B
    assert q.sum() <= 2 * b + 1 and q[1] > 3 * q[0]
    env.reset(seed=0)
    env.step(np.array([top - 1, top]))
    fed = [(s["quota_audio"], s["quota_visual"]) for s in env.trainer.history.steps]
    assert all(a + v <= 2 * b + 1 for a, v in fed)


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
    from mmbalance.policies.signals import RewardConfig, Snapshot, reward

    before, after = Snapshot(0.2, 0.3, 0.5), Snapshot(0.1, 0.35, 0.6)
    assert reward(before, after, RewardConfig(scale=1.0)) == pytest.approx(0.1)
    full = RewardConfig(discrepancy=1, weak_gain=2, val_acc=3, scale=10)
    assert reward(before, after, full) == pytest.approx(10 * (0.1 + 2 * 0.05 + 3 * 0.1))
    with pytest.raises(ConfigError, match="allowed"):
        RewardConfig.from_dict({"accuracy": 1})


def _random_sequence_policy(env: SequenceEnv, seed: int):
    """An exported-format policy with random weights for `env` (what `learn` would export)."""
    from dataclasses import asdict

    import torch

    from mmbalance.policies.policy_file import FORMAT, ExportedPolicy
    from mmbalance.tune.export import _space_json

    space = env.action_space
    outputs = int(sum(space.nvec)) if hasattr(space, "nvec") else 2 * space.shape[0]
    obs = env.observation_space
    spec = {
        "format": FORMAT, "algorithm": "PPO", "env": "sequence", "env_config": asdict(env.cfg),
        "num_classes": env.dataset.num_classes,
        "observation_space": {"dim": obs.shape[0], "low": obs.low.tolist(),
                              "high": obs.high.tolist()},
        "action_space": _space_json(space, squash=False),
        "layers": [{"kind": "linear", "in": obs.shape[0], "out": 16}, {"kind": "tanh"},
                   {"kind": "linear", "in": 16, "out": outputs}],
    }
    torch.manual_seed(seed)
    policy = ExportedPolicy(spec)
    with torch.no_grad():
        policy.net[2].weight.mul_(3.0)  # decisive outputs, so the actions vary over the run
    return policy.eval()


@pytest.mark.parametrize("mode, epochs_per_action", [("continuous", 1), ("discrete", 2)])
def test_learned_sequence_sampler_replays_the_env_exactly(mode, epochs_per_action):
    """The same policy in SequenceEnv and as a sampler in the plain trainer takes the same
    pacing and bucket weights at the same epochs and ends at the same metrics."""
    from mmbalance.policies.learned import LearnedSequenceSampler
    from mmbalance.trainers.trainer import Trainer

    cfg = {**SEQ, "train": {"epochs": 4, "batch_size": 32}, "action_mode": mode,
           "epochs_per_action": epochs_per_action}
    env = SequenceEnv(cfg)
    policy = _random_sequence_policy(env, seed=1)
    obs, _ = env.reset(seed=77)
    env_actions, done = [], False
    while not done:
        unit = env.actions.to_unit(policy.act(obs))
        env_actions.append(env.actions.pacing_weights(unit))
        obs, _, term, trunc, info = env.step(policy.act(obs))
        done = term or trunc
    assert len(env_actions) == 4 // epochs_per_action
    # the policy really varies its choice over the run
    assert len({tuple(np.round(np.r_[p, w], 6)) for p, w in env_actions}) > 1

    sampler = LearnedSequenceSampler(policy)
    seen = []
    original = sampler.set_action
    sampler.set_action = lambda p, w: (seen.append((p, np.asarray(w))), original(p, w))[1]
    tr = Trainer(env.dataset, env.cfg.train_config(77), sampler)
    tr.fit()
    assert len(seen) == len(env_actions)
    for (p_env, w_env), (p, w) in zip(env_actions, seen, strict=True):
        assert p == pytest.approx(p_env) and np.allclose(w, w_env)
    assert [e["sampler_subset_size"] for e in tr.history.epochs] == [
        e["sampler_subset_size"] for e in env.trainer.history.epochs]
    assert tr.final_metrics()["test"] == pytest.approx(
        {k[len("final_test_"):]: v for k, v in info.items() if k.startswith("final_test_")})


@pytest.mark.parametrize("kind", ["quota", "sequence"])
def test_an_episode_saved_mid_run_continues_exactly(kind, tmp_path):
    """save() mid-episode (for QuotaEnv: mid-epoch), restore() into a fresh env: the rest of
    the episode (observations, rewards, final metrics) and the next reset's run seed match."""
    if kind == "quota":  # 8 trainer steps an epoch, 3 a decision: 3 decisions end mid-epoch 1
        cfg = {**QUOTA, "train": {"epochs": 3, "batch_size": 32}, "steps_per_action": 3,
               "action_mode": "continuous"}
        make, policy = QuotaEnv, (lambda e: e.heuristic_action("dus-h", strength=50))
    else:
        cfg = {**SEQ, "train": {"epochs": 4, "batch_size": 32}}
        make, policy = SequenceEnv, (lambda e: e.heuristic_action("bss-l"))

    def rest_of_episode(env):
        out, done = [], False
        while not done:
            obs, r, term, trunc, info = env.step(policy(env))
            out.append((obs, r, term, trunc))
            done = term or trunc
        return out, info

    env = make(cfg)
    env.reset()  # run seed drawn from the env's own stream
    for _ in range(3 if kind == "quota" else 2):
        env.step(policy(env))
    if kind == "quota":
        assert env.trainer.in_epoch and env.trainer.epoch == 1
    env.save(tmp_path / "episode.pt")
    straight, final = rest_of_episode(env)

    resumed_env = make(cfg)
    resumed_env.restore(tmp_path / "episode.pt")
    resumed, final_resumed = rest_of_episode(resumed_env)
    assert len(resumed) == len(straight) > 0
    for (o1, r1, t1, u1), (o2, r2, t2, u2) in zip(straight, resumed, strict=True):
        assert np.array_equal(o1, o2) and r1 == r2 and (t1, u1) == (t2, u2)
    finals = {k: v for k, v in final.items() if k.startswith("final_")}
    assert finals and finals == {k: final_resumed[k] for k in finals}
    assert env.reset()[1]["run_seed"] == resumed_env.reset()[1]["run_seed"]

    other = make({**cfg, "reward": {"weak_gain": 1.0}})
    with pytest.raises(ConfigError, match="reward"):
        other.restore(tmp_path / "episode.pt")
