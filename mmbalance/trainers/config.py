"""Hyperparameters of one training run, in one dataclass, validated up front."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mmbalance.errors import ConfigError
from mmbalance.spec import typed_fields

METHODS = ("joint", "joint-uni", "ogm-ge", "mla")
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
MLA_FUSIONS = ("entropy", "equal")
INFERENCES = ("sum", "unimodal", "fusion")


@dataclass
class TrainConfig:
    method: str = "joint"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 0  # StepLR step in epochs; 0 = constant lr
    lr_gamma: float = 0.1
    feature_dim: int = 64
    hidden: int = 128
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 4096  # chunk size of no-grad passes (validation, BSS scoring)
    probe: bool = True  # final metrics include each encoder's linear-probe test accuracy
    # learning status (DESIGN.md section 3)
    accumulation: str = "mean"  # mean (the paper's running mean) | ema
    ema_beta: float = 0.05
    # joint: > 0 adds per-modality CE terms through the encoders (a partial rebalancing)
    unimodal_loss_weight: float = 0.0
    # joint-uni (the papers' baseline): w_mm CE(fusion) + sum_j w_j CE(head_j); one weight
    # for every modality or one per modality; prediction from the heads named by inference
    mm_loss_weight: float = 1.0
    uni_loss_weights: float | list[float] = 1.0
    inference: str = "sum"
    # OGM-GE
    ogm_alpha: float = 0.3
    ogm_ge: bool = True
    ogm_start: int = 0
    ogm_end: int = 50  # included: modulation runs for ogm_start <= epoch <= ogm_end
    # MLA
    mla_projection: bool = True
    mla_proj_alpha: float = 0.1
    mla_fusion: str = "entropy"

    def check(self) -> TrainConfig:
        # set directly in Python (not through from_dict): still no NaN or inf
        for key, value in self.to_dict().items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{key}: must be a finite number, got {value}")
        choices = {
            "method": METHODS,
            "optimizer": OPTIMIZERS,
            "device": DEVICES,
            "mla_fusion": MLA_FUSIONS,
            "accumulation": ("mean", "ema"),
            "inference": INFERENCES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}: got {getattr(self, key)!r}, allowed {list(allowed)}")
        positive = ("epochs", "batch_size", "lr", "feature_dim", "hidden", "mla_proj_alpha",
                    "eval_batch_size")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key}: must be > 0, got {getattr(self, key)}")
        for key in ("momentum", "weight_decay", "lr_step", "unimodal_loss_weight", "ogm_alpha",
                    "mm_loss_weight", "seed", "ogm_start", "ogm_end"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if not self.lr_gamma > 0:
            raise ConfigError(f"lr_gamma: must be > 0, got {self.lr_gamma}")
        weights = self.uni_loss_weights
        weights = list(weights) if isinstance(weights, (list, tuple)) else [weights]
        if not weights or any(not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0
                              for w in weights):
            raise ConfigError(f"uni_loss_weights: one number >= 0 or one per modality "
                              f"(a/b/...), got {self.uni_loss_weights!r}")
        if self.mm_loss_weight == 0 and not any(w > 0 for w in weights):
            raise ConfigError("mm_loss_weight, uni_loss_weights: at least one must be > 0")
        if not 0 < self.ema_beta <= 1:
            raise ConfigError(f"ema_beta: must be in (0, 1], got {self.ema_beta}")
        return self

    def uni_weights(self, modalities: list[str]) -> list[float]:
        """joint-uni's per-modality loss weights for these modalities."""
        w = self.uni_loss_weights
        if not isinstance(w, (list, tuple)):
            return [float(w)] * len(modalities)
        if len(w) != len(modalities):
            raise ConfigError(f"uni_loss_weights: needs one value per modality {modalities} "
                              f"(or one for all), got {list(w)}")
        return [float(v) for v in w]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Every value parsed as its field's type first (text from --set included), so a
        word, a fraction for a count or a NaN is an error naming the key."""
        return cls(**typed_fields("train config", data, cls)).check()
