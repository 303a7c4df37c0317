"""What a sampling policy sees and is paid: observations and rewards from a running trainer.

Shared by the Gymnasium environments, the learned samplers that run exported policies inside
the plain trainer, and online policies, so a policy meets the same numbers wherever it runs.
No Gymnasium or Ray here.

Observation (float32), per modality j: ŝ_j, s_j, unimodal loss_j / log(C) (clipped to 5),
gap_j = ŝ_j - mean ŝ; then the discrepancy D, progress t/T, and the last action's
per-modality values scaled to [0, 1] (quotas for DUS; for BSS the sequence env appends its
own fields).

Reward for one decision: `scale * (w_D (D_before - D_after) + w_weak (weak_after -
weak_before) + w_val (val_after - val_before))`, where weak is the lowest ŝ (the weakest
modality's learning status) and val the latest validation accuracy. The default is the
design's pure discrepancy reduction; a policy can game it by starving the strong modality,
which the other two terms counter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

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


@dataclass
class RewardConfig:
    discrepancy: float = 1.0
    weak_gain: float = 0.0
    val_acc: float = 0.0
    scale: float = 100.0

    @classmethod
    def from_dict(cls, data: dict | None) -> RewardConfig:
        data = dict(data or {})
        cfg = cls(**typed_fields("reward", data, cls))
        for key in [f.name for f in fields(cls)]:
            if not math.isfinite(float(getattr(cfg, key))):
                raise ConfigError(f"reward.{key}: must be a finite number")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Snapshot:
    discrepancy: float
    weak: float
    val_acc: float


def snapshot(trainer, initial_val_acc: float = 0.0) -> Snapshot:
    """The run's state for rewards; before the first epoch ends, val is `initial_val_acc`."""
    val = trainer.history.epochs[-1]["val_acc"] if trainer.history.epochs else initial_val_acc
    return Snapshot(trainer.status.discrepancy, float(trainer.status.s_hat.min()), float(val))


def reward(before: Snapshot, after: Snapshot, cfg: RewardConfig) -> float:
    r = (
        cfg.discrepancy * (before.discrepancy - after.discrepancy)
        + cfg.weak_gain * (after.weak - before.weak)
        + cfg.val_acc * (after.val_acc - before.val_acc)
    )
    return float(cfg.scale * r)
