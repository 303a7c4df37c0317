"""The decision loop: a policy acts on a running trainer every k training steps.

Four drivers run it: `QuotaEnv` and `VectorQuotaEnv` (an RL algorithm acts from outside:
one env step is one decision), `LearnedQuotaSampler` (an exported policy) and `DUSRLSampler`
(a policy learned online), both inside the trainer (`DecidingQuotaSampler`). The sequence
env and the learned sequence sampler decide once per epoch (or `epochs_per_action` epochs)
and share `SequenceObservation`. What the drivers share lives here once:

- the action map (`QuotaActionMap`: an action becomes quotas; invalid actions raise before
  any training);
- the clock and its budget: a decision every `every` training steps, the run's budget of
  `SamplerContext.total_steps` steps (its epochs of ceil(N / B) steps each), progress t / T;
- the observation: its builder, its size and its bounds (`policies/signals.py` computes the
  numbers). A policy file's observation size is checked against the builder's, never a
  constant.
"""

from __future__ import annotations

import numpy as np

from mmbalance.balance import LearningStatus
from mmbalance.policies.dus import QuotaSampler
from mmbalance.policies.quota_actions import QuotaActionMap
from mmbalance.policies.signals import (
    quota_observation,
    quota_observation_bounds,
    status_bounds,
    status_features,
)
from mmbalance.trainers.sampler import SamplerContext, Scorer, StepFeedback

# training steps between two decisions of a quota policy, and epochs between two of a
# sequence policy, unless its env config says
DEFAULT_STEPS_PER_ACTION = 10
DEFAULT_EPOCHS_PER_ACTION = 1


class QuotaObservation:
    """What a quota policy sees (`signals.quota_observation`), clipped to its bounds."""

    def __init__(self, num_modalities: int, n_min: int, n_max: int, num_classes: int) -> None:
        self.n_min, self.n_max, self.num_classes = n_min, n_max, num_classes
        self.low, self.high = quota_observation_bounds(num_modalities)

    @property
    def size(self) -> int:
        return len(self.low)

    def __call__(self, status, progress: float, quotas) -> np.ndarray:
        obs = quota_observation(status, progress, quotas, self.n_min, self.n_max,
                                self.num_classes)
        return np.clip(obs, self.low, self.high)


class SequenceObservation:
    """What a sequence policy sees: the status features, progress, the last action's unit
    values and each bucket's mean balance degree / 2, clipped to its bounds."""

    def __init__(self, num_modalities: int, dims: int, buckets: int, num_classes: int) -> None:
        self.num_classes = num_classes
        low, high = status_bounds(num_modalities)
        self.low = np.concatenate([low, [0.0], np.zeros(dims), np.zeros(buckets)]
                                  ).astype(np.float32)
        self.high = np.concatenate([high, [1.0], np.ones(dims), np.ones(buckets)]
                                   ).astype(np.float32)

    @property
    def size(self) -> int:
        return len(self.low)

    def __call__(self, status, progress: float, last_unit, bucket_degree) -> np.ndarray:
        obs = np.concatenate([status_features(status, self.num_classes), [progress], last_unit,
                              np.asarray(bucket_degree) / 2.0]).astype(np.float32)
        return np.clip(obs, self.low, self.high)


class QuotaDecisions:
    """One run's decision loop: a decision every `every` training steps within a budget of
    `total_steps`; `observe` builds what the policy sees, `actions` maps its action to
    quotas (a ValueError on an invalid action, before any training)."""

    def __init__(self, actions: QuotaActionMap, every: int, total_steps: int,
                 num_classes: int) -> None:
        self.actions, self.every, self.total_steps = actions, int(every), int(total_steps)
        self.observation = QuotaObservation(actions.num_modalities, actions.n_min,
                                            actions.n_max, num_classes)

    def progress(self, step: int) -> float:
        return min(1.0, step / self.total_steps)

    def observe(self, status, step: int, quotas) -> np.ndarray:
        return self.observation(status, self.progress(step), quotas)

    def due(self, step: int) -> bool:
        """Whether a decision ends at `step` (every `every` steps, and at the budget's end)."""
        return step % self.every == 0 or self.spent(step)

    def spent(self, step: int) -> bool:
        return step >= self.total_steps

    def train(self, trainer) -> None:
        """Train one decision's steps; at the budget's end close the last epoch (its
        evaluation) too, so the run is complete when the last decision is paid."""
        for _ in range(self.every):
            if trainer.step() is None:
                break
        if not trainer.done and self.spent(trainer.global_step):
            trainer.step()


class DecidingQuotaSampler(QuotaSampler):
    """A quota sampler whose policy acts inside the trainer through the decision loop: the
    first decision at the run's start (on an empty learning status), then one after every
    `every` steps while the budget lasts. Subclasses build `self.decisions` in `bind` (with
    `bind_decisions`) and say what to do at a decision (`act`) and at its end (`conclude`)."""

    needs_status = True

    def bind_decisions(self, ctx: SamplerContext, actions: QuotaActionMap, every: int,
                       num_classes: int) -> None:
        # the action map's grid sets the quota clamp
        self.n_min_cfg, self.n_max_cfg = actions.n_min, actions.n_max
        QuotaSampler.bind(self, ctx)
        self.decisions = QuotaDecisions(actions, every, ctx.total_steps, num_classes)
        self.steps = 0

    @property
    def actions(self) -> QuotaActionMap:
        return self.decisions.actions

    def observe_now(self, status) -> np.ndarray:
        return self.decisions.observe(status, self.steps, self.quotas)

    def act(self, status) -> None:
        """Make a decision now (the subclass's policy sets the quotas)."""
        raise NotImplementedError

    def conclude(self, status) -> None:
        """The decision in force has ended (its `every` steps, or the budget, are done)."""

    def started(self) -> bool:
        """Whether the first decision was made."""
        raise NotImplementedError

    def start_epoch(self, epoch: int, scorer: Scorer, last_epoch: dict | None = None) -> None:
        super().start_epoch(epoch, scorer, last_epoch)
        if self.steps == 0 and not self.started():
            self.act(LearningStatus(self.ctx.modalities))

    def feedback(self, step: StepFeedback) -> None:
        self.steps += 1
        if self.decisions.due(self.steps):
            self.conclude(step.status)
            if not self.decisions.spent(self.steps):
                self.act(step.status)
