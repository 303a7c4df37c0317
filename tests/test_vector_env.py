"""The vectorised quota env: equal to K separate QuotaEnvs, Gymnasium's autoreset conventions,
config errors, and RLlib's env runner stepping it as its vector env."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import mmbalance.envs  # noqa: F401 - registers the environments
from mmbalance.envs import QuotaEnv, VectorQuotaEnv
from mmbalance.errors import ConfigError
from mmbalance.trainers.methods.mla_batched import StackedMLA, check_batchable

TINY = "synthetic:n_train=256,n_val=100,n_test=100,bayes_samples=1000"
# 2 epochs of 8 iterations; 3 iterations per env step: an episode is 6 env steps and its
# last step trains 1 iteration of 3 (the run's budget ends inside a step)
QUOTA = {"data": TINY, "train": {"epochs": 2, "batch_size": 32, "quota_mode": "scaled"},
         "steps_per_action": 3}
# the default quota meaning (`share`): runs skip a modality's update or take several
SHARE = {**QUOTA, "train": {"epochs": 2, "batch_size": 32}}
MODES = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP,
         "disabled": AutoresetMode.DISABLED}
OBS_TOL = {"rtol": 1e-4, "atol": 1e-5}
REWARD_TOL = {"rtol": 1e-3, "atol": 1e-4}  # rewards are 100 × discrepancy changes


def pair(k: int, mode: str = "next_step", base: dict = QUOTA, **extra):
    cfg = {**base, **extra}
    vec = VectorQuotaEnv({**cfg, "num_runs": k, "autoreset_mode": mode})
    sep = SyncVectorEnv([lambda: QuotaEnv(cfg) for _ in range(k)], autoreset_mode=MODES[mode])
    return vec, sep


def assert_infos_close(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key, va in a.items():
        vb = b[key]
        if isinstance(va, dict):
            assert_infos_close(va, vb)
        elif key == "final_obs":
            for x, y in zip(va, vb):
                assert (x is None) == (y is None)
                if x is not None:
                    np.testing.assert_allclose(x, y, **OBS_TOL)
        else:
            np.testing.assert_allclose(np.asarray(va, dtype=float), np.asarray(vb, dtype=float),
                                       **OBS_TOL, err_msg=key)


def assert_histories_close(t1, t2) -> None:
    for rows1, rows2 in ((t1.history.steps, t2.history.steps),
                         (t1.history.epochs, t2.history.epochs)):
        assert len(rows1) == len(rows2)
        for r1, r2 in zip(rows1, rows2):
            assert r1.keys() == r2.keys()
            for key in r1:
                if key != "seconds":
                    assert r1[key] == pytest.approx(r2[key], rel=1e-4, abs=1e-5), key


def assert_step_close(out_v, out_s) -> None:
    np.testing.assert_allclose(out_v[0], out_s[0], **OBS_TOL)
    np.testing.assert_allclose(out_v[1], out_s[1], **REWARD_TOL)
    np.testing.assert_array_equal(out_v[2], out_s[2])
    np.testing.assert_array_equal(out_v[3], out_s[3])
    assert_infos_close(out_v[4], out_s[4])


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_equals_separate_envs_with_the_same_seeds_and_actions(mode):
    k = 3
    vec, sep = pair(k, mode)
    obs_v, info_v = vec.reset(seed=11)
    obs_s, info_s = sep.reset(seed=11)
    np.testing.assert_allclose(obs_v, obs_s, **OBS_TOL)
    assert_infos_close(info_v, info_s)
    assert list(info_v["run_seed"]) == [11, 12, 13]
    vec.action_space.seed(0)
    ends = 0
    for step in range(14):  # two episodes and the start of a third
        # each run its own quotas, changing every step: the batched update pads and masks
        actions = vec.action_space.sample()
        out_v, out_s = vec.step(actions), sep.step(actions)
        assert_step_close(out_v, out_s)
        if out_s[2].all():
            ends += 1
            final = out_v[4]["final_info"] if mode == "same_step" else out_v[4]
            assert "final_val_acc" in final and "final_test_acc_visual" in final
            if mode == "next_step":  # the finished runs are still there: compare them whole
                for t_v, env in zip(vec.trainers, sep.envs):
                    assert_histories_close(t_v, env.trainer)
        amap, info = vec.runs[0].actions, out_v[4]
        for i in np.flatnonzero(info.get("_quota_audio", [])):  # the runs that trained
            quotas = amap.to_quotas(actions[i])  # the action's quotas, in the env's budget
            assert info["quota_audio"][i] == quotas[0]
            assert info["quota_visual"][i] == quotas[1]
        del step
    assert ends == 2
    for t_v, env in zip(vec.trainers, sep.envs):
        assert_histories_close(t_v, env.trainer)


def assert_ledgers_equal(trainers, envs) -> None:
    for t_v, env in zip(trainers, envs, strict=True):
        assert t_v.ledger.counts == env.trainer.ledger.counts


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_under_share_equals_separate_envs_with_each_runs_own_actions(mode):
    """The default quota meaning: each run's iterations give its M updates out by its own
    quotas, so in one batched iteration some runs skip a modality and others train it twice.
    Observations, rewards, infos (final metrics and ledger), histories and ledgers equal K
    separate QuotaEnvs'."""
    k = 4
    vec, sep = pair(k, mode, base=SHARE)
    assert vec.cfg.train_config(0).quota_mode == "share"  # no default of its own
    obs_v, info_v = vec.reset(seed=5)
    obs_s, info_s = sep.reset(seed=5)
    np.testing.assert_allclose(obs_v, obs_s, **OBS_TOL)
    assert_infos_close(info_v, info_s)
    assert all(t.config.quota_mode == "share" for t in vec.trainers)
    top = len(vec.runs[0].actions.grid) - 1
    vec.action_space.seed(3)
    ends, rows = 0, set()  # each iteration's rows per modality
    for step in range(14):  # two episodes and the start of a third
        actions = vec.action_space.sample()
        actions[0], actions[1] = [0, top], [top, 0]  # two runs at the extremes, two at random
        out_v, out_s = vec.step(actions), sep.step(actions)
        assert_step_close(out_v, out_s)
        rows |= {(row["rows_audio"], row["rows_visual"]) for t in vec.trainers
                 for row in t.history.steps}
        if out_s[2].all():
            ends += 1
            final = out_v[4]["final_info"] if mode == "same_step" else out_v[4]
            assert "final_ledger_updates_audio" in final
            if mode == "next_step":
                assert_ledgers_equal(vec.trainers, sep.envs)
                for t_v, env in zip(vec.trainers, sep.envs):
                    assert_histories_close(t_v, env.trainer)
        del step
    assert ends == 2
    assert_ledgers_equal(vec.trainers, sep.envs)
    b = SHARE["train"]["batch_size"]
    assert (0, 2 * b) in rows and (2 * b, 0) in rows and (b, b) in rows
    for t_v, env in zip(vec.trainers, sep.envs):
        assert_histories_close(t_v, env.trainer)
        for p_v, p_s in zip(t_v.model.parameters(), env.trainer.model.parameters()):
            torch.testing.assert_close(p_v.detach(), p_s.detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("quota_mode", ["batch", "extra-steps"])
def test_every_quota_meaning_equals_separate_envs(quota_mode):
    """`batch` (one mean step per modality) and `extra-steps` (ceil(n_j / B) steps: runs with
    quotas above B take more steps than the others) batch the same way."""
    cfg = {**QUOTA, "train": {**QUOTA["train"], "quota_mode": quota_mode}}
    vec, sep = pair(3, base=cfg)
    vec.reset(seed=2)
    sep.reset(seed=2)
    top = len(vec.runs[0].actions.grid) - 1
    for _ in range(3):
        actions = np.array([[0, top], [top, top], [1, 2]])
        assert_step_close(vec.step(actions), sep.step(actions))
    assert_ledgers_equal(vec.trainers, sep.envs)
    for t_v, env in zip(vec.trainers, sep.envs):
        assert_histories_close(t_v, env.trainer)


@pytest.mark.parametrize("quota_mode", ["scaled", "share"])
def test_the_stacked_update_equals_each_runs_own_mla_step(quota_mode):
    """One batched iteration (written-out gradients for the MLP encoders and the head; runs
    on chunks of different sizes, padded and masked, or on different numbers of steps per
    modality) leaves every run's parameters, momentum buffers and projector as its own
    `MLAMethod.step` on the same batch does."""
    cfg = {**QUOTA, "train": {**QUOTA["train"], "quota_mode": quota_mode,
                              "weight_decay": 1e-3}}
    vec, sep = pair(3, base=cfg)
    vec.reset(seed=4)
    sep.reset(seed=4)
    rows = torch.arange(32)
    if quota_mode == "scaled":  # quotas of different sizes
        batches = {0: {"audio": rows[:9], "visual": rows + 32},
                   1: {"audio": rows + 64, "visual": rows[:20]},
                   2: {"audio": rows[:32], "visual": rows[:5] + 96}}
    else:  # B-sample updates given out differently
        batches = {0: {"audio": rows[:0], "visual": torch.cat([rows, rows + 32])},
                   1: {"audio": rows, "visual": rows + 64},
                   2: {"audio": torch.cat([rows, rows + 96]), "visual": rows[:0]}}
    for _ in range(2):  # the second step starts from non-zero momentum
        vec.stack.step(batches)
        for i, env in enumerate(sep.envs):
            env.trainer.method.step(batches[i], want_logits=False)
    for i, (t_v, env) in enumerate(zip(vec.trainers, sep.envs)):
        for (name, p_v), p_s in zip(t_v.model.named_parameters(),
                                    env.trainer.model.parameters()):
            torch.testing.assert_close(p_v.detach(), p_s.detach(), rtol=1e-5, atol=1e-6,
                                       msg=f"run {i} {name}")
            # a parameter its run never trained has no buffer yet: zeros in the stack
            own = env.trainer.optimizer.state[p_s].get("momentum_buffer",
                                                        torch.zeros_like(p_s.detach()))
            torch.testing.assert_close(t_v.optimizer.state[p_v]["momentum_buffer"], own,
                                       rtol=1e-5, atol=1e-6, msg=f"run {i} {name}")
        torch.testing.assert_close(t_v.method.projector, env.trainer.method.projector,
                                   rtol=1e-5, atol=1e-6)


def test_a_run_that_skips_a_modality_keeps_its_parameters_momentum_and_projector_bitwise():
    """A masked run is not written: with momentum and weight decay a zero gradient would still
    move its parameters. Its encoder, momentum buffers and projector stay bit for bit; the
    runs that train change."""
    vec = VectorQuotaEnv({**SHARE, "num_runs": 3,
                          "train": {**SHARE["train"], "weight_decay": 1e-3}})
    vec.reset(seed=0)
    vec.step(np.array([[1, 3], [2, 2], [3, 1]]))  # momentum buffers are non-zero from here
    stack = vec.stack
    before = {n: (stack.params[n].detach().clone(), stack.bufs[n].clone())
              for n in stack.names}
    proj = stack.proj.clone()
    rows = torch.arange(32)
    batches = {0: {"audio": rows[:0], "visual": torch.cat([rows, rows + 32])},  # visual twice
               1: {"audio": rows, "visual": rows + 64},
               2: {"audio": torch.cat([rows, rows + 96]), "visual": rows[:0]}}  # audio twice
    counts = [dict(t.ledger.counts) for t in vec.trainers]
    outs = stack.step(batches)
    for n in stack.names:
        p0, b0 = before[n]
        for i, skipped in ((0, "audio"), (2, "visual")):
            changed = not torch.equal(stack.params[n][i], p0[i])
            assert changed == (not n.startswith(f"encoders.{skipped}.")), (n, i)
            assert torch.equal(stack.bufs[n][i], b0[i]) == (not changed), (n, i)
        assert not torch.equal(stack.params[n][1], p0[1])  # run 1 trains every parameter
    # run 0's projector: no modality trained before visual; run 1's: audio before visual
    assert torch.equal(stack.proj[0], proj[0]) and torch.equal(stack.proj[2], proj[2])
    assert not torch.equal(stack.proj[1], proj[1])
    # each run's ledger counts what it trained: 2 updates, given out by its batch
    keys = ("optimizer_steps", "updates_audio", "updates_visual", "updates_head",
            "grad_samples_audio", "grad_samples_visual")
    got = [[t.ledger.counts[key] - c[key] for key in keys]
           for t, c in zip(vec.trainers, counts)]
    assert got == [[2, 0, 2, 2, 0, 64], [2, 1, 1, 2, 32, 32], [2, 2, 0, 2, 64, 0]]
    assert np.isnan(outs[0].host()[0]) and np.isnan(outs[2].host()[1])  # s_t of the skipped


def test_runs_out_of_step_train_alone_and_partial_resets_follow_gymnasium(monkeypatch):
    """With autoreset 'disabled', resetting one run mid-episode puts the runs out of step:
    later iterations batch a subset of the runs (the others have finished)."""
    subsets = []
    update = StackedMLA._update

    def spy(self, runs, *args):
        subsets.append(len(runs) < len(self))
        return update(self, runs, *args)

    monkeypatch.setattr(StackedMLA, "_update", spy)
    vec, sep = pair(3, "disabled", action_mode="continuous")
    vec.reset(seed=[1, 2, 3])
    sep.reset(seed=[1, 2, 3])
    vec.action_space.seed(1)
    mask = np.array([True, False, False])
    for step in range(12):
        actions = vec.action_space.sample()
        out_v, out_s = vec.step(actions), sep.step(actions)
        assert_step_close(out_v, out_s)
        if step == 1:
            seeds = [40, None, None]
            r_v = vec.reset(seed=seeds, options={"reset_mask": mask.copy()})
            r_s = sep.reset(seed=seeds, options={"reset_mask": mask.copy()})
            np.testing.assert_allclose(r_v[0], r_s[0], **OBS_TOL)
            assert_infos_close(r_v[1], r_s[1])
            assert list(r_v[1]["_run_seed"]) == [True, False, False]
        done = out_v[2] | out_v[3]
        if done.any():
            assert not done.all()  # run 0 is behind: the others finished first
            with pytest.raises(RuntimeError, match="reset_mask"):
                vec.step(actions)
            for t_v, env in zip(vec.trainers, sep.envs):
                assert_histories_close(t_v, env.trainer)
            r_v = vec.reset(options={"reset_mask": done.copy()})
            r_s = sep.reset(options={"reset_mask": done.copy()})
            np.testing.assert_allclose(r_v[0], r_s[0], **OBS_TOL)
    for t_v, env in zip(vec.trainers, sep.envs):
        assert_histories_close(t_v, env.trainer)
    assert any(subsets) and not all(subsets)


def test_next_step_autoreset_starts_a_fresh_run_and_ignores_the_action():
    vec = VectorQuotaEnv({**QUOTA, "num_runs": 2})
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    vec.reset(seed=0)
    actions = np.array([[0, 4], [4, 0]])
    done = False
    while not done:
        _, _, term, trunc, _ = vec.step(actions)
        done = bool((term | trunc).all())
    old = vec.trainers
    obs, rewards, term, trunc, info = vec.step(actions)
    assert (rewards == 0).all() and not term.any() and not trunc.any()
    assert (obs[:, 9] == 0).all()  # progress
    for i, t in enumerate(vec.trainers):
        assert t is not old[i] and t.global_step == 0
        # the new run's parameters are its own fresh initialisation, now slices of the stack
        fresh = QuotaEnv(QUOTA)
        fresh.reset(seed=int(info["run_seed"][i]))
        for (name, p), q in zip(t.model.named_parameters(), fresh.trainer.model.parameters()):
            torch.testing.assert_close(p.detach(), q.detach())
            assert p.data_ptr() == vec.stack.params[name][i].data_ptr()
    # the action of the reset step was ignored: the next one trains
    vec.step(actions)
    assert all(t.global_step == QUOTA["steps_per_action"] for t in vec.trainers)


def test_same_step_autoreset_returns_the_final_observation_in_info():
    vec = VectorQuotaEnv({**QUOTA, "num_runs": 2, "autoreset_mode": "same_step"})
    vec.reset(seed=0)
    for _ in range(6):
        obs, _, term, _, info = vec.step(np.zeros((2, 2), dtype=np.int64))
    assert term.all()
    assert info["_final_obs"].all() and (info["final_obs"][0][9] == 1.0)
    assert "final_val_acc" in info["final_info"]
    assert (obs[:, 9] == 0).all() and all(t.global_step == 0 for t in vec.trainers)


def test_trainers_read_the_stacked_parameters_without_copies():
    vec = VectorQuotaEnv({**QUOTA, "num_runs": 2})
    vec.reset(seed=0)
    vec.step(np.array([[1, 3], [3, 1]]))
    for i, t in enumerate(vec.trainers):
        for name, p in t.model.named_parameters():
            assert p.data_ptr() == vec.stack.params[name][i].data_ptr()
            assert t.optimizer.state[p]["momentum_buffer"].data_ptr() == \
                vec.stack.bufs[name][i].data_ptr()
        assert t.method.projector.data_ptr() == vec.stack.proj[i].data_ptr()
        # state_dict (best-model copies, saving) holds this run's tensors only
        sd = t.model.state_dict()
        assert all(v.untyped_storage().nbytes() == v.numel() * v.element_size()
                   for v in sd.values())
    assert (vec.stack.proj[0] - torch.eye(64)).abs().max() > 0  # the projection ran


def test_a_trainer_stepped_on_its_own_afterwards_continues_the_same_run():
    """The optimizer state and projector are views: the trainer's own step continues it."""
    vec, sep = pair(2)
    vec.reset(seed=0)
    sep.reset(seed=0)
    for a in ([[0, 4], [4, 0]], [[2, 1], [1, 2]]):
        vec.step(np.array(a))
        sep.step(np.array(a))
    for t_v, env in zip(vec.trainers, sep.envs):
        t_v.step()
        env.trainer.step()
        assert_histories_close(t_v, env.trainer)


def test_image_encoders_run_through_vmap_and_match():
    """A CNN encoder is not an MLP: it trains through functional_call under vmap."""
    from mmbalance.data.dataset import MultimodalDataset, Split

    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 3, n)
        image = rng.normal(size=(n, 1, 6, 6)) + y[:, None, None, None]
        vector = rng.normal(size=(n, 5)) + y[:, None]
        return Split({"vector": vector.astype(np.float32), "image": image.astype(np.float32)},
                     y.astype(np.int64))

    data = MultimodalDataset("tiny-images", ["vector", "image"], 3,
                             {"train": split(64), "val": split(32), "test": split(32)})
    cfg = {"data": data, "steps_per_action": 2,
           "train": {"epochs": 1, "batch_size": 16, "hidden": 32, "feature_dim": 8,
                     "quota_mode": "scaled"}}
    vec = VectorQuotaEnv({**cfg, "num_runs": 2})
    sep = SyncVectorEnv([lambda: QuotaEnv(cfg) for _ in range(2)])
    vec.reset(seed=3)
    sep.reset(seed=3)
    assert "image" not in vec.stack._layers  # CNN: vmap and autograd
    assert "vector" in vec.stack._layers  # MLP: batched matmuls, gradients written out
    vec.action_space.seed(2)
    for _ in range(2):
        actions = vec.action_space.sample()
        assert_step_close(vec.step(actions), sep.step(actions))
    for t_v, env in zip(vec.trainers, sep.envs):
        assert_histories_close(t_v, env.trainer)


def test_make_vec_and_spaces():
    env = gym.make_vec("mmbalance/VectorQuota-v0", num_envs=3, config=QUOTA)
    single = QuotaEnv(QUOTA)
    assert isinstance(env.unwrapped, VectorQuotaEnv) and env.num_envs == 3
    assert env.single_observation_space == single.observation_space
    assert env.single_action_space == single.action_space
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, *single.observation_space.shape)
    obs, rewards, *_ = env.step(env.action_space.sample())
    assert obs in env.observation_space and rewards.shape == (3,)


@pytest.mark.parametrize(
    "config, match",
    [
        ({"method": "joint"}, "mla"),
        ({"method": "ogm-ge"}, "mla"),
        ({"train": {"optimizer": "adam"}}, "sgd"),
        ({"num_runs": 0}, "num_runs"),
        ({"autoreset_mode": "sometimes"}, "autoreset_mode"),
        ({"num_runs": 2, "num_envs": 3}, "num_envs"),
        ({"runs": 2}, "unknown key"),
    ],
)
def test_bad_config_is_refused(config, match):
    with pytest.raises(ConfigError, match=match):
        VectorQuotaEnv({**QUOTA, **config})


def test_runs_must_be_batchable():
    from mmbalance.data.registry import load_dataset
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    data = load_dataset(TINY)

    def trainer(sampler="uniform", **cfg):
        return Trainer(data, TrainConfig(**{"method": "mla", "epochs": 1,
                                            "quota_mode": "scaled", **cfg}),
                       make_sampler(sampler))

    check_batchable(trainer())
    check_batchable(trainer(quota_mode="share"))
    with pytest.raises(ConfigError, match="observes"):
        check_batchable(trainer("bss-l:score=forward"))
    with pytest.raises(ConfigError, match="method"):
        check_batchable(trainer(method="joint"))
    with pytest.raises(ConfigError, match="differ in \\['lr'\\]"):
        StackedMLA([trainer(seed=0), trainer(seed=1, lr=0.1)])
    vec = VectorQuotaEnv({**QUOTA, "num_runs": 2})
    with pytest.raises(RuntimeError, match="reset"):
        vec.step(np.zeros((2, 2), dtype=np.int64))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        vec.step(np.array([[0, 99], [0, 0]]))
    assert all(t.global_step == 0 for t in vec.trainers)  # nothing trained


@pytest.mark.ray
def test_rllib_ppo_steps_it_as_the_env_runners_vector_env(ray_session):
    from ray.rllib.algorithms.ppo import PPOConfig

    config = (
        PPOConfig()
        .environment(VectorQuotaEnv, env_config={**QUOTA, "steps_per_action": 4})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2,
                     gym_env_vectorize_mode="vector_entry_point")
        .training(train_batch_size_per_learner=32, minibatch_size=16, num_epochs=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        env = algo.env_runner.env.unwrapped
        assert isinstance(env, VectorQuotaEnv) and env.num_envs == 2
        # 32 env steps over 2 runs of 4-step episodes: episodes ended and runs were reset
        assert result["env_runners"]["num_env_steps_sampled"] >= 32
        assert result["env_runners"]["num_episodes"] >= 2
        assert env.timing["trainer_seconds"] > 0
    finally:
        algo.stop()


def test_a_saved_vector_env_continues_exactly(tmp_path):
    """save() mid-epoch, restore() into a fresh vector env: parameters, momentum buffers and
    projectors go back into the stacked tensors and the runs continue as if never stopped."""
    cfg = {**QUOTA, "num_runs": 2}
    vec = VectorQuotaEnv(cfg)
    vec.reset(seed=[3, 4])
    for _ in range(2):  # 6 of an epoch's 8 iterations
        vec.step(vec.heuristic_actions("dus-h", strength=50))
    assert all(t.in_epoch for t in vec.trainers)
    vec.save(tmp_path / "vec.pt")

    def rest(env):
        return [env.step(env.heuristic_actions("dus-h", strength=50)) for _ in range(4)]

    straight = rest(vec)
    assert straight[-1][2].all()  # the episodes did end within these steps
    resumed_env = VectorQuotaEnv(cfg)
    resumed_env.restore(tmp_path / "vec.pt")
    resumed = rest(resumed_env)
    for a, b in zip(straight, resumed, strict=True):
        for x, y in zip(a[:4], b[:4]):
            np.testing.assert_array_equal(x, y)
        assert_infos_close(a[4], b[4])
    for t1, t2 in zip(vec.trainers, resumed_env.trainers, strict=True):
        for p1, p2 in zip(t1.model.parameters(), t2.model.parameters(), strict=True):
            assert torch.equal(p1, p2)
    with pytest.raises(ConfigError, match="num_runs"):
        VectorQuotaEnv({**QUOTA, "num_runs": 3}).restore(tmp_path / "vec.pt")


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_stacked_sgd_step_is_torch_sgd_per_run_with_each_runs_lr(momentum):
    """Runs at different learning rates (a StepLR schedule, runs reset at other times) step
    as K separate torch.optim.SGD steps would."""
    from mmbalance.trainers.methods.mla_batched import _sgd

    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(3, 4, 5, generator=gen)
    grads = [torch.randn(3, 4, 5, generator=gen) for _ in range(2)]
    lrs = [0.1, 0.01, 0.1]
    stacked = p0.clone()
    bufs = [torch.zeros_like(p0)] if momentum else None
    for g in grads:
        _sgd([stacked], [g], bufs, lrs, momentum, 1e-4)
    for i, lr in enumerate(lrs):
        p = torch.nn.Parameter(p0[i].clone())
        opt = torch.optim.SGD([p], lr=lr, momentum=momentum, weight_decay=1e-4)
        for g in grads:
            p.grad = g[i].clone()
            opt.step()
        torch.testing.assert_close(stacked[i], p.detach(), rtol=1e-6, atol=1e-7)


def test_the_fault_drill_fires_in_the_vector_env_as_in_the_quota_env(tmp_path):
    """The vectorised env runs the quota env's decision loop, fault drill included: the
    second env step raises once (the marker remembers it), then the env steps on."""
    marker = tmp_path / "crashed"
    env = VectorQuotaEnv({**QUOTA, "num_runs": 2, "fault": {"at_step": 2, "marker": str(marker)}})
    env.reset(seed=0)
    actions = np.full((2, 2), 2)
    env.step(actions)
    with pytest.raises(RuntimeError, match="injected env fault at step 2"):
        env.step(actions)
    assert marker.exists()
    env.step(actions)  # fired once: a restarted runner carries on
    env.close()
