"""How a DUS policy's action becomes per-modality quotas, for discrete and continuous agents.

`discrete`: one choice per modality among the batch sizes of a grid, by default
B × (1/4, 1/2, 1, 3/2, 2) so the uniform batch B is one of them (a MultiDiscrete action, for
PPO/IMPALA). `flat`: the same grid, one Discrete choice among all L^M combinations (for DQN,
which takes a single discrete action). `continuous`: one value per
modality in [-1, 1], mapped linearly to [n_min, n_max] and rounded (a Box, for SAC/PPO).
`budget`: `fixed` (what the envs use by default) rescales the chosen quotas to sum to M·B,
the samples of a uniform iteration, before clamping to [n_min, n_max]: a policy redistributes
the samples of an iteration, as DUS-H does, and cannot win by training on more of them
(under the `scaled` and `extra-steps` quota meanings more samples are more learning, which a
reward would pay for). `free` keeps the chosen quotas, for policies exported before budgets
existed.
Invalid actions (wrong shape, NaN, out of bounds) raise ValueError: training never runs on
garbage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmbalance.errors import ConfigError

ACTION_MODES = ("discrete", "flat", "continuous")
BUDGETS = ("fixed", "free")
DEFAULT_BUDGET = "fixed"  # what a quota policy's actions are rescaled to, unless told
# the rule of policy files exported before budgets existed (they kept the chosen quotas)
UNSTATED_BUDGET = "free"
DEFAULT_GRID = (0.25, 0.5, 1.0, 1.5, 2.0)


def spread_budget(weights, batch_size: int, n_min: int, n_max: int) -> np.ndarray:
    """The budget of a uniform iteration, M·B samples, shared in proportion to `weights`,
    each quota rounded (half to even) and clamped to [n_min, n_max]: DUS-H's rule and a
    fixed-budget action's. Plain Python over the M values: DUS-H runs it after every
    training step, where numpy's per-call overhead would cost more than the arithmetic."""
    values = [float(w) for w in weights]
    scale = batch_size * len(values) / sum(values)
    return np.asarray([min(n_max, max(n_min, round(scale * w))) for w in values],
                      dtype=np.int64)


@dataclass
class QuotaActionMap:
    num_modalities: int
    batch_size: int
    mode: str = "discrete"
    grid_multiples: tuple[float, ...] = DEFAULT_GRID
    budget: str = DEFAULT_BUDGET

    def __post_init__(self) -> None:
        if self.mode not in ACTION_MODES:
            raise ConfigError(f"action_mode: got {self.mode!r}, allowed {list(ACTION_MODES)}")
        if self.budget not in BUDGETS:
            raise ConfigError(f"budget: got {self.budget!r}, allowed {list(BUDGETS)}")
        mult = np.asarray(self.grid_multiples, dtype=np.float64)
        if mult.ndim != 1 or len(mult) < 2 or not np.all(np.isfinite(mult)) or mult.min() <= 0:
            raise ConfigError(
                f"quota_grid: needs >= 2 positive multiples of the batch size, got "
                f"{list(self.grid_multiples)}"
            )
        self.grid = np.unique(np.maximum(1, np.rint(mult * self.batch_size))).astype(np.int64)
        if len(self.grid) < 2:
            raise ConfigError(f"quota_grid: gives one batch size only ({self.grid.tolist()})")
        self.n_min, self.n_max = int(self.grid[0]), int(self.grid[-1])

    @property
    def num_flat(self) -> int:
        return len(self.grid) ** self.num_modalities

    def to_quotas(self, action) -> np.ndarray:
        q = self._raw_quotas(action)
        if self.budget == "free":
            return q
        return spread_budget(q, self.batch_size, self.n_min, self.n_max)

    def _raw_quotas(self, action) -> np.ndarray:
        a = np.asarray(action)
        if self.mode == "flat":
            if a.shape not in ((), (1,)) or not np.all(np.isfinite(a)) or a != np.round(a):
                raise ValueError(f"flat action must be one integer, got {a.tolist()}")
            k = int(a.reshape(-1)[0])
            if not 0 <= k < self.num_flat:
                raise ValueError(f"flat action must be in [0, {self.num_flat - 1}], got {k}")
            shape = (len(self.grid),) * self.num_modalities
            return self.grid[np.array(np.unravel_index(k, shape))]
        if a.shape != (self.num_modalities,):
            raise ValueError(f"action must have shape ({self.num_modalities},), got {a.shape}")
        if self.mode == "discrete":
            if not np.issubdtype(a.dtype, np.integer):
                if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                    raise ValueError(f"discrete action must be integers, got {a.tolist()}")
                a = a.astype(np.int64)
            if a.min() < 0 or a.max() >= len(self.grid):
                raise ValueError(f"discrete action must be in [0, {len(self.grid) - 1}], got {a.tolist()}")
            return self.grid[a]
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"continuous action has NaN or inf: {a.tolist()}")
        if a.min() < -1.0 - 1e-6 or a.max() > 1.0 + 1e-6:
            raise ValueError(f"continuous action must be in [-1, 1], got {a.tolist()}")
        q = self.n_min + (np.clip(a, -1, 1) + 1.0) / 2.0 * (self.n_max - self.n_min)
        return np.rint(q).astype(np.int64)

    def from_quotas(self, quotas) -> np.ndarray:
        """The action that gives (the nearest representable) `quotas`: heuristics as policies."""
        q = np.asarray(quotas, dtype=np.float64)
        if self.mode in ("discrete", "flat"):
            idx = np.abs(q[:, None] - self.grid[None, :]).argmin(1).astype(np.int64)
            if self.mode == "flat":
                shape = (len(self.grid),) * self.num_modalities
                return np.int64(np.ravel_multi_index(tuple(idx), shape))
            return idx
        span = max(1, self.n_max - self.n_min)
        return (np.clip((q - self.n_min) / span, 0, 1) * 2.0 - 1.0).astype(np.float32)
