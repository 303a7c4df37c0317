"""What every environment is configured with, and which data and run seed each episode
trains (a data family and an episode pool): `EnvConfigBase`, `Episodes`."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data.dataset import MultimodalDataset
from mmbalance.data.family import DataFamily
from mmbalance.errors import ConfigError
from mmbalance.policies.signals import RewardConfig
from mmbalance.spec import typed_fields
from mmbalance.trainers.config import TrainConfig

_DATA_CACHE: OrderedDict[str, MultimodalDataset] = OrderedDict()
DATA_CACHE_SIZE = 32  # data sets kept per process (a drawn family is not kept forever)
# Episodes reset without a seed train with run seeds from this range; `mmbalance evaluate`
# uses seeds below it, so evaluation runs are never runs a policy was trained on.
RUN_SEEDS = (10_000, 2**31 - 1)


def resolve_dataset(data: Any) -> MultimodalDataset:
    """A selector string (cached per process), a dataset, or a Ray ObjectRef to one."""
    if isinstance(data, MultimodalDataset):
        return data
    if isinstance(data, str):
        if data not in _DATA_CACHE:
            from mmbalance.data.registry import load_dataset

            _DATA_CACHE[data] = load_dataset(data)
            while len(_DATA_CACHE) > DATA_CACHE_SIZE:
                _DATA_CACHE.popitem(last=False)
        _DATA_CACHE.move_to_end(data)
        return _DATA_CACHE[data]
    if type(data).__name__ == "ObjectRef":  # shipped by the driver with ray.put
        import ray

        return resolve_dataset(ray.get(data))
    raise ConfigError(
        f"data: expected a selector string, a MultimodalDataset or a Ray ObjectRef, "
        f"got {type(data).__name__}"
    )


@dataclass
class EnvConfigBase:
    # a selector, a list of selectors or a selector with LOW..HIGH ranges (one drawn per
    # episode: `mmbalance/data/family.py`), a MultimodalDataset or a Ray ObjectRef to one
    data: Any = "synthetic"
    method: str = "mla"
    train: dict = field(default_factory=dict)
    reward: dict = field(default_factory=dict)
    # 0: every episode draws fresh data (from the family) and a fresh run seed; N > 0: the
    # env draws N (data, run seed) set-ups once and each episode replays one of them, so a
    # paired reward's reference runs are trained once per set-up and then cached
    pool: int = 0
    max_env_steps: int = 0  # 0 = no cap; a cap truncates the episode
    max_seconds: float = 0.0  # wall-clock cap per episode; 0 = none
    # fault drill: {at_step: N, marker: PATH} raises once in the N-th env step of an episode
    # (the marker file remembers it across processes), to test runner restarts
    fault: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict | None):
        data = dict(data or {})
        if "quota_mode" in data:  # an env config written before quota_mode was a training option
            raise ConfigError(f"env_config.quota_mode: what a quota means is a training "
                              f"option now; write it as env_config.train.quota_mode: "
                              f"{data['quota_mode']}")
        cfg = cls(**typed_fields("env_config", data, cls))
        cfg.check()
        return cfg

    def check(self) -> None:
        if "seed" in self.train or "method" in self.train:
            raise ConfigError("env_config.train: 'seed' and 'method' are set by the env, not here")
        self.train_config(0)
        if self.max_env_steps < 0 or self.max_seconds < 0 or not math.isfinite(self.max_seconds):
            raise ConfigError("env_config: max_env_steps and max_seconds must be >= 0")
        if self.pool < 0:
            raise ConfigError(f"env_config.pool: must be >= 0, got {self.pool}")
        self.family()  # a bad selector list or range is refused now
        RewardConfig.from_dict(self.reward)
        check_fault("env_config.fault", self.fault, "at_step")

    def family(self) -> DataFamily | None:
        """The data family, or None when `data` is a dataset object (or a reference)."""
        return DataFamily(self.data) if isinstance(self.data, (str, list, tuple)) else None

    def maybe_fail(self, env_step: int) -> None:
        if not self.fault or env_step != int(self.fault.get("at_step", -1)):
            return
        if write_fault_marker(self.fault["marker"]):
            raise RuntimeError(f"injected env fault at step {env_step} (fault drill)")

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig.from_dict({**self.train, "method": self.method, "seed": seed})


def check_fault(what: str, fault: dict, when: str) -> None:
    """The fault drill's keys: {`when`: N, marker: PATH}; where the marker may lie is the
    command's check (`fault_inside`), which knows the run folder."""
    if not fault:
        return
    if not isinstance(fault, dict) or set(fault) != {when, "marker"}:
        raise ConfigError(f"{what}: expects {{{when}: N, marker: PATH}}, got {fault!r}")
    if isinstance(fault[when], bool) or not isinstance(fault[when], int):
        raise ConfigError(f"{what}.{when}: expects an integer, got {fault[when]!r}")
    if not isinstance(fault["marker"], str) or not fault["marker"].strip():
        raise ConfigError(f"{what}.marker: expects a path, got {fault['marker']!r}")


def fault_inside(what: str, fault: dict, folder: str | Path) -> dict:
    """The fault drill with its marker made absolute: a relative marker lies in `folder`
    (the run's output folder); one that resolves outside it (`..`, an absolute path, a
    link) is refused, so a config never makes a command write elsewhere."""
    if not fault or not isinstance(fault.get("marker"), str):
        return fault
    root = Path(folder).absolute().resolve()
    marker = Path(fault["marker"]).expanduser()
    marker = (marker if marker.is_absolute() else root / marker).resolve()
    if marker == root or not marker.is_relative_to(root):
        raise ConfigError(f"{what}.marker: {fault['marker']!r} lies outside the run folder "
                          f"{folder}; the fault drill writes its marker there only (e.g. "
                          "marker: crashed)")
    return {**fault, "marker": str(marker)}


def write_fault_marker(path: str | Path) -> bool:
    """Create the fault drill's marker; False if it exists (the drill already crashed once).
    Never follows a link planted at the marker's name."""
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write("crashed once\n")
    return True


class Episodes:
    """Which data and run seed each episode trains: drawn fresh, or from a fixed pool."""

    def __init__(self, cfg: EnvConfigBase) -> None:
        self.family = cfg.family()
        self.size = cfg.pool
        self.pool: list[tuple[str | None, int]] = []
        self.data = cfg.data  # a dataset object or reference when there is no family

    def first(self) -> MultimodalDataset:
        """A data set of the family (its first choice, ranges drawn with seed 0), which
        fixes the modalities and so the spaces."""
        if self.family is None:
            return resolve_dataset(self.data)
        return resolve_dataset(self.family.draw(np.random.default_rng(0)))

    def draw(self, rng: np.random.Generator, seed: int | None) -> tuple[str | None, int]:
        """(data selector or None, run seed): a given seed trains that seed (on data drawn
        from the family); else a pool member, or a fresh draw."""
        if seed is None and self.size:
            if not self.pool:
                self.pool = [self._fresh(rng) for _ in range(self.size)]
            return self.pool[int(rng.integers(self.size))]
        selector, run_seed = self._fresh(rng)
        return selector, int(seed) if seed is not None else run_seed

    def _fresh(self, rng: np.random.Generator) -> tuple[str | None, int]:
        selector = self.family.draw(rng) if self.family is not None else None
        return selector, int(rng.integers(*RUN_SEEDS))

    def dataset(self, selector: str | None) -> MultimodalDataset:
        return resolve_dataset(selector if selector is not None else self.data)
