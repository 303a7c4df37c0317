"""What a sampling policy sees and is paid: observations and rewards from a running trainer.

Shared by the Gymnasium environments, the learned samplers that run exported policies inside
the plain trainer, and online policies, so a policy meets the same numbers wherever it runs.
No Gymnasium or Ray here.

Observation (float32), per modality j: ŝ_j, s_j, unimodal loss_j / log(C) (clipped to 5),
gap_j = ŝ_j - mean ŝ; then the discrepancy D, progress t/T, and the last action's
per-modality values scaled to [0, 1] (quotas for DUS; for BSS the sequence env appends its
own fields).

Reward for one decision: `scale * (w_D (D_before - D_after) + w_weak (weak_after -
weak_before) + w_val (val_after - val_before) + w_paired (A_after - A_before))`, where weak
is the lowest ŝ (the weakest modality's learning status), val the latest validation
accuracy, and A the *advantage over a paired reference run*: the policy's run and a
reference run (`reference`: uniform or any sampler of the registry) start from the same seed, initial
weights and data stream, and A = measure(policy run) - measure(reference run) on a fixed
validation subset (`measure`: val_loss (negated: higher is better), val_acc, or weak_probe,
the weak modality's linear-probe accuracy, read at the episode's end only). A_0 = 0, so an
episode's paired return is its final advantage, and a policy that acts as the reference
earns exactly 0. `pay`: `step` pays the change of A at every decision; `end` pays the final
A at the last decision only: the same return without the intermediate swings, which can
pay a policy for an early gain that it later loses. The envs compute A
(`mmbalance/envs/paired.py`). The discrepancy term alone can be gamed by starving the
strong modality (D shrinks when nothing learns); the paired term pays only for what the
measure gains over the reference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from mmbalance.errors import ConfigError
from mmbalance.spec import typed_fields

PER_MODALITY = ("s_hat", "s", "loss", "gap")
LOSS_CLIP = 5.0


def status_features(status, num_classes: int) -> np.ndarray:
    """Per-modality [ŝ, s, loss/log C, gap] flattened, then D."""
    loss = np.clip(status.loss / math.log(num_classes), 0.0, LOSS_CLIP)
    per = np.stack([status.s_hat, status.s, loss, status.gap], axis=1).reshape(-1)
    return np.concatenate([per, [status.discrepancy]])


def status_bounds(m: int) -> tuple[np.ndarray, np.ndarray]:
    low = np.tile([0.0, 0.0, 0.0, -1.0], m)
    high = np.tile([1.0, 1.0, LOSS_CLIP, 1.0], m)
    return np.concatenate([low, [0.0]]), np.concatenate([high, [1.0]])


def quota_observation(
    status,
    progress: float,
    quotas: np.ndarray,
    n_min: int,
    n_max: int,
    num_classes: int,
) -> np.ndarray:
    q = (np.asarray(quotas, dtype=np.float64) - n_min) / max(1, n_max - n_min)
    obs = np.concatenate([status_features(status, num_classes), [progress], q])
    return obs.astype(np.float32)


def quota_observation_bounds(m: int) -> tuple[np.ndarray, np.ndarray]:
    low, high = status_bounds(m)
    low = np.concatenate([low, [0.0], np.zeros(m)])
    high = np.concatenate([high, [1.0], np.ones(m)])
    return low.astype(np.float32), high.astype(np.float32)


MEASURES = ("val_acc", "val_loss", "weak_probe")
PAY = ("step", "end")


@dataclass
class RewardConfig:
    discrepancy: float = 1.0
    weak_gain: float = 0.0
    val_acc: float = 0.0
    paired: float = 0.0  # weight of the advantage over the reference run
    # none | uniform (the env's own sampler at its neutral action) | a sampler selector of
    # the registry (a quota sampler for the quota envs, a paired one for the sequence env)
    reference: str = "none"
    measure: str = "val_acc"  # val_acc | val_loss | weak_probe
    val_subset: int = 1000  # validation samples the measure reads (fixed per data set)
    pay: str = "step"  # step: the change of A at every decision | end: the final A only
    scale: float = 100.0

    @classmethod
    def from_dict(cls, data: dict | None) -> RewardConfig:
        data = dict(data or {})
        cfg = cls(**typed_fields("reward", data, cls))
        for key in ("discrepancy", "weak_gain", "val_acc", "paired", "scale"):
            if not math.isfinite(float(getattr(cfg, key))):
                raise ConfigError(f"reward.{key}: must be a finite number")
        if not cfg.reference.strip():
            raise ConfigError("reward.reference: needs 'none', 'uniform' or a sampler selector")
        if cfg.measure not in MEASURES:
            raise ConfigError(f"reward.measure: got {cfg.measure!r}, allowed {list(MEASURES)}")
        if cfg.pay not in PAY:
            raise ConfigError(f"reward.pay: got {cfg.pay!r}, allowed {list(PAY)}")
        if cfg.val_subset < 1:
            raise ConfigError(f"reward.val_subset: must be >= 1, got {cfg.val_subset}")
        if cfg.paired and cfg.reference == "none":
            raise ConfigError("reward.paired: needs a reference run (reward.reference: "
                              "uniform or a sampler selector)")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Snapshot:
    discrepancy: float
    weak: float
    val_acc: float
    advantage: float = 0.0  # over the paired reference run (0 without one)


def snapshot(trainer, initial_val_acc: float = 0.0, advantage: float = 0.0) -> Snapshot:
    """The run's state for rewards; before the first epoch ends, val is `initial_val_acc`."""
    val = trainer.history.epochs[-1]["val_acc"] if trainer.history.epochs else initial_val_acc
    return Snapshot(trainer.status.discrepancy, float(trainer.status.s_hat.min()), float(val),
                    float(advantage))


def reward(before: Snapshot, after: Snapshot, cfg: RewardConfig) -> float:
    r = (
        cfg.discrepancy * (before.discrepancy - after.discrepancy)
        + cfg.weak_gain * (after.weak - before.weak)
        + cfg.val_acc * (after.val_acc - before.val_acc)
    )
    if cfg.paired:  # the same expression for a policy identical to its reference: exactly 0
        r += cfg.paired * (after.advantage - before.advantage)
    return float(cfg.scale * r)
