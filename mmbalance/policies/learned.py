"""Learned sampling policies replayed inside the plain trainer, without Ray.

`learned:PATH` samplers run an exported policy (`policies/policy_file.py`) exactly as the
environment would: the same decision loop (`policies/decision.py`: observation, action
mapping, decision interval); greedy actions (argmax / mean).
"""

from __future__ import annotations

import math

import numpy as np

from mmbalance.errors import ConfigError, UserError
from mmbalance.policies.bss_buckets import BucketSampler
from mmbalance.policies.dus import QuotaSampler
from mmbalance.policies.policy_file import (
    ExportedPolicy,
    action_mode,
    check_policy_quota_mode,
    load_policy,
)
from mmbalance.policies.quota_actions import DEFAULT_GRID, QuotaActionMap
from mmbalance.policies.signals import quota_observation, status_features
from mmbalance.trainers.sampler import SamplerContext, Scorer


class LearnedQuotaSampler(QuotaSampler):
    """DUS quotas chosen by an exported QuotaEnv policy every `steps_per_action` steps."""

    name = "learned"

    def __init__(self, policy: ExportedPolicy, path: str = ""):
        env_cfg = policy.spec["env_config"]
        self.policy, self.path = policy, path
        self.k = int(env_cfg.get("steps_per_action", 10))
        self.mode = action_mode(policy.spec)
        self.grid = tuple(env_cfg.get("quota_grid", DEFAULT_GRID))
        super().__init__()

    def bind(self, ctx: SamplerContext) -> None:
        # the budget rule the policy learned with (`free` for policies exported before it)
        self.actions = QuotaActionMap(len(ctx.modalities), ctx.batch_size, self.mode, self.grid,
                                      self.policy.spec["env_config"].get("budget", "free"))
        self.n_min_cfg, self.n_max_cfg = self.actions.n_min, self.actions.n_max
        super().bind(ctx)
        if ctx.quota_plan is not None:  # bound in a run (not in a bare check)
            check_policy_quota_mode(self.policy.spec, self.plan.mode, self.path)
        m = len(ctx.modalities)
        if self.policy.obs_dim != 5 * m + 2:
            raise UserError(
                f"learned policy {self.path}: its observation has {self.policy.obs_dim} values, "
                f"a quota policy for {m} modalities needs {5 * m + 2} (trained on another "
                f"number of modalities?)"
            )
        self.total = ctx.epochs * math.ceil(ctx.n_train / ctx.batch_size)
        # the data this run trains on, as the env computes its observation (a policy learned
        # on a family of data sets meets several class counts)
        self.num_classes = int(ctx.num_classes or self.policy.spec["num_classes"])
        self.steps = 0
        self.last_action = None

    def _decide(self, status) -> None:
        obs = quota_observation(status, min(1.0, self.steps / self.total), self.quotas,
                                self.actions.n_min, self.actions.n_max, self.num_classes)
        low = np.asarray(self.policy.spec["observation_space"]["low"], dtype=np.float32)
        high = np.asarray(self.policy.spec["observation_space"]["high"], dtype=np.float32)
        self.last_action = self.policy.act(np.clip(obs, low, high))
        self.set_quotas(self.actions.to_quotas(self.last_action))

    def start_epoch(self, epoch: int, scorer: Scorer) -> None:
        super().start_epoch(epoch, scorer)
        if self.steps == 0 and self.last_action is None:
            from mmbalance.balance import LearningStatus

            self._decide(LearningStatus(self.ctx.modalities))

    def update(self, status) -> None:
        self.steps += 1
        if self.steps % self.k == 0:
            self._decide(status)

    def config(self) -> dict:
        return {"policy": self.path, "steps_per_action": self.k, "action_mode": self.mode,
                **super().config()}


class LearnedSequenceSampler(BucketSampler):
    """BSS pacing and bucket weights chosen by an exported SequenceEnv policy, at the env's
    decision points (every `epochs_per_action` epochs), through the env's own action map."""

    name = "learned"

    def __init__(self, policy: ExportedPolicy, path: str = ""):
        from mmbalance.policies.sequence_actions import SequenceActionMap

        env_cfg = policy.spec["env_config"]
        self.policy, self.path = policy, path
        try:
            self.actions = SequenceActionMap(
                buckets=int(env_cfg.get("buckets", 4)), control=env_cfg.get("control", "both"),
                mode=action_mode(policy.spec),
                levels=int(env_cfg.get("levels", 5)),
                min_pacing=float(env_cfg.get("min_pacing", 0.1)))
        except ConfigError as exc:
            raise UserError(f"learned policy {path}: env_config: {exc}") from None
        self.epochs_per_action = int(env_cfg.get("epochs_per_action", 1))
        super().__init__(buckets=self.actions.buckets)
        self.dims = self.actions.dims
        self.status = None

    def bind(self, ctx: SamplerContext) -> None:
        super().bind(ctx)
        m = len(ctx.modalities)
        if self.policy.obs_dim != 4 * m + 2 + self.dims + self.k:
            raise UserError(
                f"learned policy {self.path}: its observation has {self.policy.obs_dim} values; "
                f"a sequence policy for {m} modalities needs {4 * m + 2 + self.dims + self.k}"
            )
        # the data this run trains on, as the env computes its observation (a policy learned
        # on a family of data sets meets several class counts)
        self.num_classes = int(ctx.num_classes or self.policy.spec["num_classes"])
        self.last_unit = np.ones(self.dims)

    def update(self, status) -> None:
        self.status = status

    def start_epoch(self, epoch: int, scorer: Scorer) -> None:
        from mmbalance.balance import LearningStatus

        if epoch % self.epochs_per_action:  # the env's action holds for epochs_per_action
            super().start_epoch(epoch, scorer)
            return
        status = self.status or LearningStatus(self.ctx.modalities)
        obs = np.concatenate([status_features(status, self.num_classes),
                              [epoch / self.ctx.epochs], self.last_unit,
                              self.bucket_degree / 2.0]).astype(np.float32)
        space = self.policy.spec["observation_space"]
        obs = np.clip(obs, np.asarray(space["low"]), np.asarray(space["high"]))
        unit = self.actions.to_unit(self.policy.act(obs))
        self.set_action(*self.actions.pacing_weights(unit))
        self.last_unit = unit
        super().start_epoch(epoch, scorer)


def make_learned_sampler(path: str) -> QuotaSampler | BucketSampler:
    policy = load_policy(path)
    kind = policy.spec["env"]
    if kind == "quota":
        return LearnedQuotaSampler(policy, path)
    if kind == "sequence":
        return LearnedSequenceSampler(policy, path)
    raise UserError(f"{path}: policy for unknown env {kind!r}; allowed: ['quota', 'sequence']")
