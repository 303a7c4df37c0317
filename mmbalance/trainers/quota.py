"""What a DUS quota means: one training option (`TrainConfig.quota_mode`), read here only.

A quota sampler decides per-modality quotas n_j every iteration; the run's quota meaning
turns them into what each modality trains on:

- `share` (the default): the quotas are *shares* of a fixed budget. Each iteration trains
  M encoder updates of B samples each, as uniform training does, and gives them out in
  proportion to n_j / sum(n) by deterministic credit rounding (`QuotaPlan.allocate`): each
  modality's credit grows by M n_j / sum(n), and the M updates go one at a time to the
  modality with the most credit, which pays 1 for each. A modality may skip an iteration
  and take two in the next; every modality's update count stays within one of its
  cumulative share, and the totals equal uniform's exactly. So a quota moves compute
  between modalities and never adds any (the compute ledger checks it).
- `scaled`: one step per modality on its n_j samples, the loss weighted by n_j / B.
- `batch`: one mean-reduced step per modality on its n_j samples (a larger quota only lowers
  gradient noise: little leverage).
- `extra-steps`: ceil(n_j / B) optimizer steps on the n_j samples. It **adds** updates (a
  quota one sample above B doubles that encoder's updates) and is kept for ablation only;
  the ledger flags every run that uses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from mmbalance.errors import ConfigError

QUOTA_MODES = ("share", "scaled", "batch", "extra-steps")
DEFAULT_QUOTA_MODE = "share"  # `TrainConfig.quota_mode`'s default
# quota meanings whose compute depends on the quotas beyond a fixed budget
ADDS_COMPUTE = ("extra-steps",)
# names of the meanings before `share` existed, read from older configs and exported policies
LEGACY_NAMES = {"steps": "extra-steps"}


def check_quota_mode(mode: str) -> str:
    """The quota meaning `mode` (a legacy name mapped to today's), or a ConfigError."""
    mode = LEGACY_NAMES.get(mode, mode)
    if mode not in QUOTA_MODES:
        raise ConfigError(f"quota_mode: got {mode!r}, allowed {list(QUOTA_MODES)}")
    return mode


def quota_chunks(idx: torch.Tensor, batch_size: int, mode: str) -> list[tuple[torch.Tensor, float]]:
    """How a modality's rows of one iteration are trained: (index chunk, loss weight) per
    optimizer step. `batch`: one step, weight 1; `scaled`: one step, weight n / B;
    `extra-steps`: ceil(n / B) steps on near-equal chunks; `share`: the rows are k units of
    `batch_size` (`QuotaPlan.unit`: B, or the epoch's remainder), k steps. No rows: no
    step."""
    n = int(idx.shape[0])
    if n == 0:
        return []
    if mode == "batch":
        return [(idx, 1.0)]
    if mode == "scaled":
        return [(idx, n / batch_size)]
    if mode in ("extra-steps", "share"):
        if n <= batch_size:  # one step (every paired batch): no split, it costs a kernel
            return [(idx, 1.0)]
        return [(c, 1.0) for c in torch.tensor_split(idx, math.ceil(n / batch_size))]
    raise ValueError(f"quota_mode must be one of {list(QUOTA_MODES)}, got {mode!r}")


class QuotaPlan:
    """The run's quota meaning and, for `share`, the credits that spread its fixed budget.

    `rows(quotas)` is how many rows a quota sampler draws per modality this iteration.
    Under `share` that is k_j B with sum k_j = M (`allocate`); the credits are part of the
    run's state (checkpoints carry them).
    """

    def __init__(self, mode: str, batch_size: int, num_modalities: int) -> None:
        self.mode = check_quota_mode(mode)
        self.batch_size = batch_size
        self.num_modalities = num_modalities
        self.credit = [0.0] * num_modalities  # plain floats (`allocate`)
        self.last: np.ndarray | None = None  # the quotas of the latest draw (the step table's)
        # the samples of one update this iteration: B, but the epoch's last iteration has
        # only the rest of the training set, as uniform's last batch does
        self.unit = batch_size

    def allocate(self, quotas) -> np.ndarray:
        """The number of B-sample updates each modality trains this iteration (sum M)."""
        # plain floats: it runs at every step of a quota sampler, for a handful of
        # modalities, where numpy's per-call cost is most of the work; the arithmetic is
        # numpy's operation for operation (the first maximum; sums in index order, as
        # numpy's are below 8 terms), so runs repeat the numbers of the numpy version
        given = np.asarray(quotas)
        m = self.num_modalities
        q = [float(v) for v in given.tolist()] if given.shape == (m,) else []
        total = sum(q)
        if not q or not all(math.isfinite(v) and v >= 0 for v in q) or not total > 0:
            raise ValueError(f"quotas need {m} finite values >= 0 with a positive sum, got "
                             f"{given.tolist()}")
        self.last = given.astype(np.int64)
        credit = [c + m * v / total for c, v in zip(self.credit, q)]
        k = [0] * m
        for _ in range(m):
            j = max(range(m), key=credit.__getitem__)  # ties: the first modality
            k[j] += 1
            credit[j] -= 1.0
        # the credits sum to 0 up to rounding; keep them from drifting over a long run
        mean = sum(credit) / m
        self.credit = [c - mean for c in credit]
        return np.array(k, dtype=np.int64)

    def rows(self, quotas, unit: int | None = None) -> np.ndarray:
        """Rows to draw per modality this iteration (`unit`: the samples of one update
        under `share`, default B)."""
        if self.mode == "share":
            self.unit = unit or self.batch_size
            return self.allocate(quotas) * self.unit
        self.last = np.asarray(quotas, dtype=np.int64)
        return self.last

    def draw(self, quotas, take: Callable[[int, int], np.ndarray], paired: bool,
             remaining: int | None = None) -> tuple[list[np.ndarray], np.ndarray | None]:
        """This iteration's rows per modality, drawn with `take(stream, n)` (stream j is
        modality j's, stream M the paired batch's), and, with `paired`, a paired batch for a
        fusion loss beside the per-modality ones. `remaining`: the training samples left in
        this epoch; under `share` an update then takes min(B, remaining) of them, as
        uniform's last batch does, so an epoch costs what uniform's costs."""
        m, b = self.num_modalities, self.batch_size
        if self.mode == "share" and remaining is not None:
            b = max(1, min(b, remaining))
        if self.mode == "share" and paired:
            # k_j updates for modality j: the first on the paired batch (the uniform step's
            # rows), the others on rows of its own stream; k_j = 0 draws nothing
            both = take(m, b)
            updates = self.rows(quotas, b) // b
            rows = [np.concatenate([both, take(j, int(k - 1) * b)]) if k > 1
                    else both if k == 1 else both[:0] for j, k in enumerate(updates)]
            return rows, both
        counts = self.rows(quotas, b)
        rows = [take(j, int(counts[j])) for j in range(m)]
        return rows, (take(m, b) if paired else None)

    def state_dict(self) -> dict:
        return {"mode": self.mode, "credit": list(self.credit)}

    def load_state_dict(self, state: dict) -> None:
        self.credit = [float(c) for c in state["credit"]]
