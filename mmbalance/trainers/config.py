"""Hyperparameters of one training run, validated up front.

`TrainConfig` holds what every run has (epochs, batch size, optimizer, learning status, ...)
and, in `options`, the chosen method's own hyperparameter dataclass (`Method.Options`,
defined next to each method). Users write method options as flat keys (`--set ogm_alpha=0.5`,
`train: {mla_fusion: equal}`): `from_dict` routes each to the dataclass that declares it,
checks every given one (also those of methods other than the chosen one, which a run of
several methods shares), and keeps the chosen method's. `to_dict` writes them flat again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mmbalance.errors import ConfigError
from mmbalance.spec import typed_fields
from mmbalance.trainers.methods import METHOD_CLASSES, METHODS
from mmbalance.trainers.quota import DEFAULT_QUOTA_MODE, check_quota_mode

OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
ACCUMULATIONS = ("mean", "ema")


def _option_classes() -> list[type]:
    """Every method's options dataclass, once each."""
    out: list[type] = []
    for cls in METHOD_CLASSES.values():
        if cls.Options not in out:
            out.append(cls.Options)
    return out


def option_keys() -> list[str]:
    """The flat keys of every method's options."""
    return sorted({f.name for c in _option_classes() for f in fields(c)})


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
    # learning status (mmbalance/balance.py)
    accumulation: str = "mean"  # mean (the paper's running mean) | ema
    ema_beta: float = 0.05
    # what a quota sampler's quotas mean (`mmbalance/trainers/quota.py`): share (a fixed
    # budget of updates, moved between modalities), scaled, batch, extra-steps (adds updates)
    quota_mode: str = DEFAULT_QUOTA_MODE
    # the method's own hyperparameters (its `Options`); None: the method's defaults
    options: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.options is None and self.method in METHOD_CLASSES:
            self.options = METHOD_CLASSES[self.method].Options()

    def check(self) -> TrainConfig:
        # set directly in Python (not through from_dict): still no NaN or inf
        for key, value in self.to_dict().items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{key}: must be a finite number, got {value}")
        choices = {"method": METHODS, "optimizer": OPTIMIZERS, "device": DEVICES,
                   "accumulation": ACCUMULATIONS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}: got {getattr(self, key)!r}, allowed {list(allowed)}")
        for key in ("epochs", "batch_size", "lr", "feature_dim", "hidden", "eval_batch_size"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key}: must be > 0, got {getattr(self, key)}")
        for key in ("momentum", "weight_decay", "lr_step", "seed"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if not self.lr_gamma > 0:
            raise ConfigError(f"lr_gamma: must be > 0, got {self.lr_gamma}")
        self.quota_mode = check_quota_mode(self.quota_mode)
        if not 0 < self.ema_beta <= 1:
            raise ConfigError(f"ema_beta: must be in (0, 1], got {self.ema_beta}")
        want = METHOD_CLASSES[self.method].Options
        if type(self.options) is not want:
            raise ConfigError(f"options: method '{self.method}' takes {want.__name__}, got "
                              f"{type(self.options).__name__}")
        self.options.check()
        return self

    def to_dict(self) -> dict:
        """Every value under its flat key (the method's options beside the rest)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        if self.options is not None:
            out.update(asdict(self.options))
        return out

    @classmethod
    def parse(cls, data: dict) -> dict:
        """Every given value parsed as the type its key declares (text from --set
        included), so a word, a fraction for a count or a NaN is an error naming the key;
        method options are checked by their method's dataclass. Unknown keys are refused."""
        if not isinstance(data, dict):
            raise ConfigError(f"train config: expects a mapping of keys to values, got {data!r}")
        general = [f.name for f in fields(cls) if f.name != "options"]
        options = option_keys()
        unknown = sorted(set(data) - set(general) - set(options), key=str)
        if unknown:
            raise ConfigError(f"train config: unknown key(s) {unknown}; allowed: "
                              f"{sorted([*general, *options])}")
        typed = typed_fields("train config", {k: v for k, v in data.items() if k in general},
                             cls)
        for opt_cls in _option_classes():
            given = {k: v for k, v in data.items() if k in {f.name for f in fields(opt_cls)}}
            if given:
                values = typed_fields("train config", given, opt_cls)
                opt_cls(**values).check()
                typed.update(values)
        return {k: typed[k] for k in data}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        typed = cls.parse(data)
        general = {f.name for f in fields(cls) if f.name != "options"}
        config = cls(**{k: v for k, v in typed.items() if k in general})
        if config.method in METHOD_CLASSES:
            opt_cls = METHOD_CLASSES[config.method].Options
            own = {f.name for f in fields(opt_cls)}
            config.options = opt_cls(**{k: v for k, v in typed.items() if k in own})
        return config.check()
