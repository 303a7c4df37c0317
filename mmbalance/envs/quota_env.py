"""QuotaEnv: DUS as a Gymnasium environment. One episode is one multimodal training run.

A step applies the action as per-modality sampling quotas for the next `steps_per_action`
training iterations, trains, and returns the observation of `mmbalance.policies.signals`
(per-modality ŝ, s, loss, gap; D; progress; last quotas), the reward (discrepancy reduction
by default), and `info` with the run's metrics. The episode terminates when the run's epoch
budget is spent and is truncated by `max_env_steps` or `max_seconds`. `reset(seed=s)` starts
a fresh model trained with seed s; `reset()` draws the next run seed from the env's RNG.

`heuristic_action("dus-h")` gives the action DUS-H would take now, so heuristics run as
fixed policies in the same env and are scored with the same reward.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from mmbalance.envs.env_config import EnvConfigBase
from mmbalance.envs.episode import EpisodeClock, SavableEpisode, run_info
from mmbalance.errors import ConfigError
from mmbalance.policies.decision import DEFAULT_STEPS_PER_ACTION, QuotaDecisions, QuotaObservation
from mmbalance.policies.dus import QuotaSampler, dus_quotas
from mmbalance.policies.quota_actions import DEFAULT_BUDGET, DEFAULT_GRID, QuotaActionMap
from mmbalance.policies.registry import make_sampler
from mmbalance.trainers.trainer import Trainer


@dataclass
class QuotaEnvConfig(EnvConfigBase):
    steps_per_action: int = DEFAULT_STEPS_PER_ACTION
    action_mode: str = "discrete"  # discrete (MultiDiscrete) | flat (Discrete) | continuous (Box)
    # batch sizes as multiples of B; continuous: [min, max]
    quota_grid: tuple[float, ...] = DEFAULT_GRID
    # fixed: the chosen quotas are rescaled to M·B samples per iteration, so a policy
    # redistributes an iteration's samples and cannot buy learning with more of them (what
    # a quota does to learning is the run's `train.quota_mode`: under `share`, the default,
    # quotas are shares of a fixed budget of updates whatever this says)
    budget: str = DEFAULT_BUDGET

    def check(self) -> None:
        super().check()
        if self.steps_per_action < 1:
            raise ConfigError(f"steps_per_action: must be >= 1, got {self.steps_per_action}")


class QuotaEnv(SavableEpisode, gym.Env):
    metadata = {"render_modes": []}  # noqa: RUF012 - Gymnasium's convention
    cfg_class = QuotaEnvConfig
    def __init__(self, config: dict | None = None):
        self.cfg = QuotaEnvConfig.from_dict(config)
        self.modalities = list(self._setup_episodes().modalities)
        b = self.cfg.train_config(0).batch_size
        self.actions = QuotaActionMap(len(self.modalities), b, self.cfg.action_mode,
                                      tuple(self.cfg.quota_grid), self.cfg.budget)
        if self.paired.enabled:
            self._reference_sampler()  # a reference the env cannot run is refused now
        m = len(self.modalities)
        if self.cfg.action_mode == "discrete":
            self.action_space = gym.spaces.MultiDiscrete([len(self.actions.grid)] * m)
        elif self.cfg.action_mode == "flat":
            self.action_space = gym.spaces.Discrete(self.actions.num_flat)
        else:
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(m,), dtype=np.float32)
        # the bounds do not depend on the data's classes (a family may vary them)
        observe = QuotaObservation(m, self.actions.n_min, self.actions.n_max, 2)
        self.observation_space = gym.spaces.Box(observe.low, observe.high, dtype=np.float32)
        self.clock = EpisodeClock(self.cfg.max_env_steps, self.cfg.max_seconds)
        self.trainer: Trainer | None = None
        # wall time inside step() and inside the trainer's own steps: the env's overhead
        self.timing = {"env_seconds": 0.0, "trainer_seconds": 0.0}

    # -------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        run_seed = self._start_episode(seed)
        return self.observe(), {"run_seed": run_seed, **run_info(self.trainer)}

    def _new_run(self, run_seed: int) -> None:
        self.run_seed = run_seed
        self.sampler = QuotaSampler(self.actions.n_min, self.actions.n_max)
        self.trainer = Trainer(self.dataset, self.cfg.train_config(run_seed), self.sampler)
        self.decisions = QuotaDecisions(self.actions, self.cfg.steps_per_action,
                                        self.sampler.ctx.total_steps, self.dataset.num_classes)

    def _reference_sampler(self):
        """The paired reference's sampler: `uniform` is the same quota streams at uniform
        quotas (B each, what the policy's run trains on if it always picks B); any other
        name is a quota sampler of the registry, clamped to the env's quota range unless
        its selector gives one."""
        a, ref = self.actions, self.reward_cfg.reference
        if ref == "uniform":
            return QuotaSampler(a.n_min, a.n_max)
        sampler = make_sampler(ref)
        if not isinstance(sampler, QuotaSampler):
            raise ConfigError(f"reward.reference: the quota env's reference is uniform or a "
                              f"quota sampler (dus-h, fixed, ...), got {ref!r}")
        if sampler.n_min_cfg is None and sampler.n_max_cfg is None:
            sampler.n_min_cfg, sampler.n_max_cfg = a.n_min, a.n_max
        return sampler

    def step(self, action):
        t_enter = time.perf_counter()
        pending = self.begin_step(action)
        t_train = time.perf_counter()
        self.decisions.train(self.trainer)
        self.timing["trainer_seconds"] += time.perf_counter() - t_train
        out = self.end_step(pending)
        self.timing["env_seconds"] += time.perf_counter() - t_enter
        return out

    # the two halves of a step, around its training (the vectorised env trains K runs'
    # steps in one batched update between them)
    def begin_step(self, action) -> tuple:
        """Check the action (before any training), take the reward's snapshot and set the
        quotas for the decision's steps."""
        before = self._begin_decision()
        quotas = self.actions.to_quotas(action)  # raises on garbage, before any training
        self.sampler.set_quotas(quotas)
        return before, quotas

    def end_step(self, pending: tuple):
        """(obs, reward, terminated, truncated, info) once the decision's steps trained."""
        before, quotas = pending
        t_finish = time.perf_counter()
        r, terminated, truncated, info = self._finish_step(
            before, {f"quota_{m}": int(q) for m, q in zip(self.modalities, quotas)})
        # the reward's measures and the final metrics are training-run work too
        self.timing["trainer_seconds"] += time.perf_counter() - t_finish
        return self.observe(), r, terminated, truncated, info

    def observe(self) -> np.ndarray:
        """The observation of the run now."""
        t = self.trainer
        return self.decisions.observe(t.status, t.global_step, self.sampler.quotas)

    def heuristic_action(self, name: str = "dus-h", strength: float = 4.0) -> np.ndarray:
        """The action a fixed heuristic policy takes now (`uniform` or `dus-h`)."""
        b = self.trainer.config.batch_size
        if name == "uniform":
            quotas = np.full(len(self.modalities), b)
        elif name == "dus-h":
            status = self.trainer.status
            if (status.t == 0).any():
                quotas = np.full(len(self.modalities), b)
            else:
                quotas = dus_quotas(status.s_hat, b, strength, self.actions.n_min,
                                    self.actions.n_max)
        else:
            raise ConfigError(f"heuristic: got {name!r}, allowed ['uniform', 'dus-h']")
        return self.actions.from_quotas(quotas)
