"""The learning status of DESIGN.md section 3, kept up to date every training step.

For modality j, the batch score s_t is the mean true-class softmax probability of its
unimodal logits; the cumulative score ŝ_t is a running mean (the paper's) or an EMA (a
running mean over a long run barely moves). The discrepancy is max_j ŝ - min_j ŝ, which for
two modalities is |ŝ_a - ŝ_b|; `gap[j] = ŝ_j - mean(ŝ)` says which modality leads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from mmbalance.errors import ConfigError

ACCUMULATIONS = ("mean", "ema")


def true_class_score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample softmax probability of the true class (no gradient)."""
    with torch.no_grad():
        return F.softmax(logits.detach(), dim=-1).gather(1, y[:, None]).squeeze(1)


@dataclass
class LearningStatus:
    modalities: list[str]
    accumulation: str = "mean"
    ema_beta: float = 0.05
    t: np.ndarray = field(init=False)
    s: np.ndarray = field(init=False)
    s_hat: np.ndarray = field(init=False)
    loss: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.accumulation not in ACCUMULATIONS:
            raise ConfigError(
                f"accumulation: got {self.accumulation!r}, allowed {list(ACCUMULATIONS)}"
            )
        if not 0.0 < self.ema_beta <= 1.0:
            raise ConfigError(f"ema_beta: must be in (0, 1], got {self.ema_beta}")
        m = len(self.modalities)
        self.t = np.zeros(m, dtype=np.int64)  # updates seen per modality
        self.s = np.zeros(m)
        self.s_hat = np.zeros(m)
        self.loss = np.zeros(m)

    def update(self, scores: dict[str, float], losses: dict[str, float]) -> None:
        """Fold in this step's batch scores and losses of the modalities that were trained."""
        for j, m in enumerate(self.modalities):
            if m not in scores:
                continue
            self.t[j] += 1
            s = float(scores[m])
            self.s[j] = s
            self.loss[j] = float(losses[m])
            if self.accumulation == "mean" or self.t[j] == 1:
                self.s_hat[j] += (s - self.s_hat[j]) / self.t[j]
            else:
                self.s_hat[j] += self.ema_beta * (s - self.s_hat[j])

    @property
    def discrepancy(self) -> float:
        return float(self.s_hat.max() - self.s_hat.min())

    @property
    def gap(self) -> np.ndarray:
        return self.s_hat - self.s_hat.mean()

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {"discrepancy": self.discrepancy}
        for j, m in enumerate(self.modalities):
            out[f"s_{m}"] = float(self.s[j])
            out[f"s_hat_{m}"] = float(self.s_hat[j])
            out[f"loss_{m}"] = float(self.loss[j])
        return out

    def state_dict(self) -> dict:
        return {k: getattr(self, k).copy() for k in ("t", "s", "s_hat", "loss")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, np.asarray(v).copy())
