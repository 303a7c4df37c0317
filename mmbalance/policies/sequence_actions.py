"""How a BSS policy's action becomes the epoch's pacing fraction and bucket weights.

`control`: `pacing` (one value), `buckets` (K weights, pacing 1) or `both` (1 + K values).
`continuous` actions are values in [-1, 1] per dimension; `discrete` ones an integer in
0..levels-1 per dimension. Both map to [0, 1] first ("unit" values): pacing then to
[min_pacing, 1], weights stay in [0, 1]. One map serves SequenceEnv and the `learned:PATH`
sampler, so an exported policy replays exactly what it did in the env. Invalid actions (wrong
shape, NaN, out of bounds) raise ValueError: training never runs on garbage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmbalance.errors import ConfigError

CONTROLS = ("pacing", "buckets", "both")
ACTION_MODES = ("continuous", "discrete")


@dataclass
class SequenceActionMap:
    buckets: int = 4
    control: str = "both"
    mode: str = "continuous"
    levels: int = 5
    min_pacing: float = 0.1

    def __post_init__(self) -> None:
        if self.control not in CONTROLS:
            raise ConfigError(f"control: got {self.control!r}, allowed {list(CONTROLS)}")
        if self.mode not in ACTION_MODES:
            raise ConfigError(f"action_mode: got {self.mode!r}, allowed {list(ACTION_MODES)}")
        if self.buckets < 1 or self.levels < 2:
            raise ConfigError("buckets >= 1 and levels >= 2 are required")
        if not 0.0 < self.min_pacing <= 1.0:
            raise ConfigError(f"min_pacing: must be in (0, 1], got {self.min_pacing}")
        self.has_pacing = self.control in ("pacing", "both")
        self.has_weights = self.control in ("buckets", "both")
        self.dims = int(self.has_pacing) + (self.buckets if self.has_weights else 0)

    def to_unit(self, action) -> np.ndarray:
        """Validate an action and map it to values in [0, 1] per dimension."""
        a = np.asarray(action)
        if a.shape != (self.dims,):
            raise ValueError(f"action must have shape ({self.dims},), got {a.shape}")
        if self.mode == "discrete":
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise ValueError(f"discrete action must be integers, got {a.tolist()}")
            if a.min() < 0 or a.max() >= self.levels:
                raise ValueError(
                    f"discrete action must be in [0, {self.levels - 1}], got {a.tolist()}")
            return a.astype(np.float64) / (self.levels - 1)
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"continuous action has NaN or inf: {a.tolist()}")
        if a.min() < -1.0 - 1e-6 or a.max() > 1.0 + 1e-6:
            raise ValueError(f"continuous action must be in [-1, 1], got {a.tolist()}")
        return (np.clip(a, -1, 1) + 1.0) / 2.0

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """The action (in this map's space) nearest to the given unit values."""
        u = np.clip(np.asarray(unit, dtype=np.float64), 0, 1)
        if self.mode == "discrete":
            return np.rint(u * (self.levels - 1)).astype(np.int64)
        return (u * 2.0 - 1.0).astype(np.float32)

    def pacing_weights(self, unit: np.ndarray) -> tuple[float, np.ndarray]:
        """Unit values -> (pacing fraction in [min_pacing, 1], K bucket weights in [0, 1])."""
        pacing, weights = 1.0, np.ones(self.buckets)
        if self.has_pacing:
            pacing = self.min_pacing + float(unit[0]) * (1.0 - self.min_pacing)
        if self.has_weights:
            weights = np.asarray(unit[int(self.has_pacing):], dtype=np.float64)
        return pacing, weights

    def unit_of(self, pacing: float, weights: np.ndarray) -> np.ndarray:
        """The inverse of `pacing_weights` (for playing heuristics in the env)."""
        unit: list[float] = []
        if self.has_pacing:
            unit.append((pacing - self.min_pacing) / (1.0 - self.min_pacing)
                        if self.min_pacing < 1.0 else 1.0)
        if self.has_weights:
            unit.extend(np.asarray(weights, dtype=np.float64).tolist())
        return np.asarray(unit, dtype=np.float64)
