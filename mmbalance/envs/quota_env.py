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

import math
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from mmbalance.envs.common import EnvConfigBase, EpisodeClock, SavableEpisode, run_info
from mmbalance.errors import ConfigError
from mmbalance.policies.dus import DUSHeuristicSampler, QuotaSampler, dus_quotas
from mmbalance.policies.quota_actions import DEFAULT_GRID, QuotaActionMap
from mmbalance.policies.signals import quota_observation, quota_observation_bounds
from mmbalance.trainers.trainer import Trainer


@dataclass
class QuotaEnvConfig(EnvConfigBase):
    steps_per_action: int = 10
    action_mode: str = "discrete"  # discrete (MultiDiscrete) | flat (Discrete) | continuous (Box)
    # batch sizes as multiples of B; continuous: [min, max]
    quota_grid: tuple[float, ...] = DEFAULT_GRID
    # fixed: the chosen quotas are rescaled to M·B samples per iteration, so a policy
    # redistributes an iteration's samples and cannot buy learning with more of them (what
    # a quota does to learning is the run's `train.quota_mode`: under `share`, the default,
    # quotas are shares of a fixed budget of updates whatever this says)
    budget: str = "fixed"

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
        if self.reward_cfg.reference not in ("none", "uniform", "dus-h"):
            raise ConfigError(f"reward.reference: the quota env's reference is uniform or "
                              f"dus-h, got {self.reward_cfg.reference!r}")
        m = len(self.modalities)
        if self.cfg.action_mode == "discrete":
            self.action_space = gym.spaces.MultiDiscrete([len(self.actions.grid)] * m)
        elif self.cfg.action_mode == "flat":
            self.action_space = gym.spaces.Discrete(self.actions.num_flat)
        else:
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(m,), dtype=np.float32)
        low, high = quota_observation_bounds(m)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.clock = EpisodeClock(self.cfg.max_env_steps, self.cfg.max_seconds)
        self.trainer: Trainer | None = None
        # wall time inside step() and inside the trainer's own steps: the env's overhead
        self.timing = {"env_seconds": 0.0, "trainer_seconds": 0.0}

    # -------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        run_seed = self._start_episode(seed)
        return self._obs(), {"run_seed": run_seed, **run_info(self.trainer)}

    def _new_run(self, run_seed: int) -> None:
        self.run_seed = run_seed
        self.sampler = QuotaSampler(self.actions.n_min, self.actions.n_max)
        self.trainer = Trainer(self.dataset, self.cfg.train_config(run_seed), self.sampler)
        steps_per_epoch = math.ceil(self.trainer.n_train / self.trainer.config.batch_size)
        self.total_steps = self.trainer.config.epochs * steps_per_epoch

    def _reference_sampler(self):
        """The paired reference's sampler: the same quota streams, uniform quotas (B each,
        what the policy's run trains on if it always picks B) or DUS-H's."""
        a = self.actions
        if self.reward_cfg.reference == "dus-h":
            return DUSHeuristicSampler(n_min=a.n_min, n_max=a.n_max)
        return QuotaSampler(a.n_min, a.n_max)

    def step(self, action):
        if self.trainer is None:
            raise RuntimeError("call reset() before step()")
        self.cfg.maybe_fail(self.clock.steps + 1)
        t_enter = time.perf_counter()
        quotas = self.actions.to_quotas(action)  # raises on garbage, before any training
        before = self._before_step()
        self.sampler.set_quotas(quotas)
        t_train = time.perf_counter()
        for _ in range(self.cfg.steps_per_action):
            if self.trainer.step() is None:
                break
        if not self.trainer.done and self.trainer.global_step >= self.total_steps:
            self.trainer.step()  # close the last epoch (evaluation) so the run is complete
        self.timing["trainer_seconds"] += time.perf_counter() - t_train
        t_finish = time.perf_counter()
        r, terminated, truncated, info = self._finish_step(
            before, {f"quota_{m}": int(q) for m, q in zip(self.modalities, quotas)})
        # the reward's measures and the final metrics are training-run work too
        self.timing["trainer_seconds"] += time.perf_counter() - t_finish
        obs = self._obs()
        self.timing["env_seconds"] += time.perf_counter() - t_enter
        return obs, r, terminated, truncated, info

    # ---------------------------------------------------------------- helpers
    def _obs(self) -> np.ndarray:
        t = self.trainer
        progress = min(1.0, t.global_step / self.total_steps)
        obs = quota_observation(t.status, progress, self.sampler.quotas, self.actions.n_min,
                                self.actions.n_max, self.dataset.num_classes)
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

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
