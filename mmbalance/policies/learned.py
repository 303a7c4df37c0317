"""Learned sampling policies replayed inside the plain trainer, without Ray.

`learned:PATH` samplers run an exported policy (`policies/policy_file.py`) exactly as the
environment would: the same decision loop (`policies/decision.py`: observation, action
mapping, decision interval); greedy actions (argmax / mean).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from mmbalance.balance import LearningStatus
from mmbalance.errors import ConfigError, UserError
from mmbalance.policies.bss_buckets import BucketSampler
from mmbalance.policies.decision import (
    DEFAULT_EPOCHS_PER_ACTION,
    DEFAULT_STEPS_PER_ACTION,
    DecidingQuotaSampler,
    SequenceObservation,
)
from mmbalance.policies.dus import QuotaSampler
from mmbalance.policies.policy_file import (
    ExportedPolicy,
    action_mode,
    check_policy_quota_mode,
    load_policy,
)
from mmbalance.policies.quota_actions import DEFAULT_GRID, UNSTATED_BUDGET, QuotaActionMap
from mmbalance.policies.sequence_actions import SequenceActionMap
from mmbalance.trainers.sampler import SamplerContext, Scorer, StepFeedback


class LearnedQuotaSampler(DecidingQuotaSampler):
    """DUS quotas chosen by an exported QuotaEnv policy, through the env's decision loop."""

    name = "learned"

    def __init__(self, policy: ExportedPolicy, path: str = ""):
        env_cfg = policy.spec["env_config"]
        self.policy, self.path = policy, path
        self.k = int(env_cfg.get("steps_per_action", DEFAULT_STEPS_PER_ACTION))
        self.mode = action_mode(policy.spec)
        self.grid = tuple(env_cfg.get("quota_grid", DEFAULT_GRID))
        super().__init__()

    def bind(self, ctx: SamplerContext) -> None:
        # the budget rule the policy learned with (`free` for policies exported before it)
        actions = QuotaActionMap(len(ctx.modalities), ctx.batch_size, self.mode, self.grid,
                                 self.policy.spec["env_config"].get("budget", UNSTATED_BUDGET))
        # the data this run trains on, as the env computes its observation (a policy learned
        # on a family of data sets meets several class counts)
        num_classes = int(ctx.num_classes or self.policy.spec["num_classes"])
        self.bind_decisions(ctx, actions, self.k, num_classes)
        if ctx.quota_plan is not None:  # bound in a run (not in a bare check)
            check_policy_quota_mode(self.policy.spec, self.plan.mode, self.path)
        need = self.decisions.observation.size
        if self.policy.obs_dim != need:
            raise UserError(
                f"learned policy {self.path}: its observation has {self.policy.obs_dim} values, "
                f"a quota policy for {len(ctx.modalities)} modalities needs {need} (trained on "
                f"another number of modalities?)"
            )
        self.last_action = None

    def started(self) -> bool:
        return self.last_action is not None

    def act(self, status) -> None:
        self.last_action = self.policy.act(self.observe_now(status))
        self.set_quotas(self.actions.to_quotas(self.last_action))

    def config(self) -> dict:
        return {"policy": self.path, "steps_per_action": self.k, "action_mode": self.mode,
                **super().config()}


class LearnedSequenceSampler(BucketSampler):
    """BSS pacing and bucket weights chosen by an exported SequenceEnv policy, at the env's
    decision points (every `epochs_per_action` epochs), through the env's own action map
    and observation."""

    name = "learned"
    needs_status = True  # the status at the epoch's start is the observation's

    def __init__(self, policy: ExportedPolicy, path: str = ""):
        env_cfg = policy.spec["env_config"]
        self.policy, self.path = policy, path
        keys = [f.name for f in fields(SequenceActionMap) if f.name != "mode"]
        try:
            self.actions = SequenceActionMap(mode=action_mode(policy.spec),
                                             **{k: env_cfg[k] for k in keys if k in env_cfg})
        except (ConfigError, TypeError) as exc:
            raise UserError(f"learned policy {path}: env_config: {exc}") from None
        self.epochs_per_action = int(env_cfg.get("epochs_per_action", DEFAULT_EPOCHS_PER_ACTION))
        super().__init__(buckets=self.actions.buckets)
        self.dims = self.actions.dims
        self.status = None

    def bind(self, ctx: SamplerContext) -> None:
        super().bind(ctx)
        # the data this run trains on, as the env computes its observation (a policy learned
        # on a family of data sets meets several class counts)
        num_classes = int(ctx.num_classes or self.policy.spec["num_classes"])
        self.observation = SequenceObservation(len(ctx.modalities), self.dims, self.k,
                                               num_classes)
        if self.policy.obs_dim != self.observation.size:
            raise UserError(
                f"learned policy {self.path}: its observation has {self.policy.obs_dim} values; "
                f"a sequence policy for {len(ctx.modalities)} modalities needs "
                f"{self.observation.size}"
            )
        self.last_unit = np.ones(self.dims)

    def feedback(self, step: StepFeedback) -> None:
        super().feedback(step)
        self.status = step.status

    def start_epoch(self, epoch: int, scorer: Scorer, last_epoch: dict | None = None) -> None:
        if epoch % self.epochs_per_action:  # the env's action holds for epochs_per_action
            super().start_epoch(epoch, scorer, last_epoch)
            return
        status = self.status or LearningStatus(self.ctx.modalities)
        obs = self.observation(status, epoch / self.ctx.epochs, self.last_unit,
                               self.bucket_degree)
        unit = self.actions.to_unit(self.policy.act(obs))
        self.set_action(*self.actions.pacing_weights(unit))
        self.last_unit = unit
        super().start_epoch(epoch, scorer, last_epoch)


def make_learned_sampler(path: str = "") -> QuotaSampler | BucketSampler:
    """The sampler that replays the exported policy in the folder `path`."""
    if not path:
        raise ConfigError("sampler 'learned': needs the folder of an exported policy, as "
                          "learned:PATH")
    policy = load_policy(path)
    kind = policy.spec["env"]
    if kind == "quota":
        return LearnedQuotaSampler(policy, path)
    if kind == "sequence":
        return LearnedSequenceSampler(policy, path)
    raise UserError(f"{path}: policy for unknown env {kind!r}; allowed: ['quota', 'sequence']")
