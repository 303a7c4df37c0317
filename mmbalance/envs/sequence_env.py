"""SequenceEnv: BSS as a Gymnasium environment. One episode is one training run.

A step is one epoch (or `epochs_per_action` epochs): the action sets the pacing fraction
and/or the sampling weights over K balance-degree buckets (quantiles of d) for the next
epoch, which is then trained. Observation: the status features of
`mmbalance.policies.signals`, progress, the last action's values in [0, 1], and each bucket's
mean balance degree / 2. Reward and `info` as in QuotaEnv.

`control`: `pacing` (one value), `buckets` (K weights, pacing 1) or `both` (1 + K).
Continuous actions are a Box in [-1, 1] (pacing maps to [min_pacing, 1], weights to [0, 1]);
discrete ones a MultiDiscrete of `levels` values per dimension over the same ranges.
`heuristic_action("bss-h" | "bss-l" | "uniform")` plays the BSS heuristics in the same env.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from mmbalance.envs.env_config import EnvConfigBase
from mmbalance.envs.episode import EpisodeClock, SavableEpisode, run_info
from mmbalance.errors import ConfigError
from mmbalance.policies.bss_buckets import BucketSampler
from mmbalance.policies.bss_measure import pacing_fraction
from mmbalance.policies.decision import DEFAULT_EPOCHS_PER_ACTION, SequenceObservation
from mmbalance.policies.registry import make_sampler
from mmbalance.policies.sequence_actions import SequenceActionMap
from mmbalance.trainers.trainer import Trainer


@dataclass
class SequenceEnvConfig(EnvConfigBase):
    method: str = "joint"
    control: str = "both"
    buckets: int = 4
    action_mode: str = "continuous"  # continuous (Box [-1, 1]) | discrete (MultiDiscrete)
    levels: int = 5
    min_pacing: float = 0.1
    epochs_per_action: int = DEFAULT_EPOCHS_PER_ACTION

    def check(self) -> None:
        super().check()
        if self.epochs_per_action < 1:
            raise ConfigError(f"epochs_per_action: must be >= 1, got {self.epochs_per_action}")
        self.action_map()  # validates control, action_mode, buckets, levels, min_pacing

    def action_map(self) -> SequenceActionMap:
        return SequenceActionMap(buckets=self.buckets, control=self.control,
                                 mode=self.action_mode, levels=self.levels,
                                 min_pacing=self.min_pacing)


class SequenceEnv(SavableEpisode, gym.Env):
    metadata = {"render_modes": []}  # noqa: RUF012 - Gymnasium's convention
    cfg_class = SequenceEnvConfig
    episode_keys = ("last_unit",)  # with the trainer and the episode, what save() carries

    def __init__(self, config: dict | None = None):
        self.cfg = SequenceEnvConfig.from_dict(config)
        self.modalities = list(self._setup_episodes().modalities)
        k = self.cfg.buckets
        self.actions = self.cfg.action_map()
        if self.paired.enabled:
            self._reference_sampler()  # a reference the env cannot run is refused now
        self.dims = self.actions.dims
        if self.cfg.action_mode == "continuous":
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self.dims,), dtype=np.float32)
        else:
            self.action_space = gym.spaces.MultiDiscrete([self.cfg.levels] * self.dims)
        # the bounds do not depend on the data's classes (a family may vary them)
        observe = SequenceObservation(len(self.modalities), self.dims, k, 2)
        self.observation_space = gym.spaces.Box(observe.low, observe.high, dtype=np.float32)
        self.clock = EpisodeClock(self.cfg.max_env_steps, self.cfg.max_seconds)
        self.trainer: Trainer | None = None

    def _apply(self, unit: np.ndarray) -> None:
        self.sampler.set_action(*self.actions.pacing_weights(unit))
        self.last_unit = unit

    # -------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        run_seed = self._start_episode(seed)
        self.last_unit = np.ones(self.dims)
        return self.observe(), {"run_seed": run_seed, **run_info(self.trainer)}

    def _new_run(self, run_seed: int) -> None:
        self.run_seed = run_seed
        self.sampler = BucketSampler(self.cfg.buckets)
        self.trainer = Trainer(self.dataset, self.cfg.train_config(run_seed), self.sampler)
        self.observation = SequenceObservation(len(self.modalities), self.dims, self.cfg.buckets,
                                               self.dataset.num_classes)

    def _reference_sampler(self):
        """The paired reference's sampler: `uniform` is the bucket sampler left at its
        uniform action (what the policy's run trains on if it always picks pacing 1 and
        equal weights); any other name is a paired sampler of the registry (bss-h, ...)."""
        ref = self.reward_cfg.reference
        if ref == "uniform":
            return BucketSampler(self.cfg.buckets)
        sampler = make_sampler(ref)
        if sampler.unimodal_batches:
            raise ConfigError(f"reward.reference: the sequence env's reference is uniform or a "
                              f"paired sampler (bss-h, ...), got {ref!r}")
        return sampler

    def step(self, action):
        before = self._begin_decision()
        self._apply(self.actions.to_unit(action))  # raises on garbage, before any training
        target = min(self.trainer.epoch + self.cfg.epochs_per_action, self.trainer.config.epochs)
        while self.trainer.epoch < target:
            self.trainer.step(stop_at_epoch_end=True)
        r, terminated, truncated, info = self._finish_step(
            before, {f"sampler_{k}": v for k, v in self.sampler.log_metrics().items()})
        return self.observe(), r, terminated, truncated, info

    def observe(self) -> np.ndarray:
        """The observation of the run now."""
        t = self.trainer
        return self.observation(t.status, t.epoch / t.config.epochs, self.last_unit,
                                self.sampler.bucket_degree)

    def heuristic_action(self, name: str = "bss-h", lambda0: float = 0.1,
                         t_grow: float | None = None) -> np.ndarray:
        """The action a BSS heuristic takes for the coming epoch, in this env's action space."""
        k = self.cfg.buckets
        if name == "uniform":
            pacing, weights = 1.0, np.ones(k)
        elif name == "bss-h":
            grow = t_grow if t_grow is not None else max(1.0, 0.4 * self.trainer.config.epochs)
            pacing = pacing_fraction(self.trainer.epoch, lambda0, grow)
            weights = np.zeros(k)
            weights[0] = 1.0  # most balanced first; the floor keeps the rest drawable, last
        elif name == "bss-l":
            pacing = 1.0
            weights = 2.01 - self.sampler.bucket_degree
            weights = weights / weights.max()
        else:
            raise ConfigError(f"heuristic: got {name!r}, allowed ['uniform', 'bss-h', 'bss-l']")
        return self.actions.from_unit(self.actions.unit_of(pacing, weights))
