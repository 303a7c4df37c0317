"""What one training iteration hands back, and how many iterations' numbers are read at once.

The learning status and the step log need, per step, each modality's batch score s_t and
unimodal CE, and the loss. A method leaves them where it computed them: as the detached
logits and labels they come from (`Pending`), or as a finished vector on the device
(`stats`). `read_outputs` turns a run of steps into host numbers in one batched pass per
kind of step (one log-softmax over the stacked logits of every step, ...) and one
transfer, instead of a dozen small kernels and a device sync per step. The batched kernels
compute every row as the per-step ones would (softmax and log-softmax per row, means over
the same contiguous samples), so the numbers are the same to the bit
(tests/test_golden_runs.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from mmbalance.balance import true_class_score


@dataclass
class Pending:
    """A step's numbers, not computed yet. `recipe`: "log" (a paired batch: from one
    log-softmax, s_t = mean exp(log p_y), CE = -mean log p_y) or "prob" (s_t = mean
    softmax p_y; the CEs are the step's own training losses, in `extra`). `logits`: each
    modality's (n, C) logits; `y`: the n labels; `extra`: 0-d tensors appended after (the
    loss, or the CEs). They are read under no_grad, after the step's backward, so they
    need not be detached."""

    recipe: str
    logits: list[torch.Tensor]
    y: torch.Tensor
    extra: list[torch.Tensor]


@dataclass
class StepOutput:
    """One training iteration's outputs. Its numbers (`stats` once read: s_t of every
    modality, then its unimodal CE, then the loss where the method has one of its own) stay
    on the device until the trainer reads many steps together (`read_outputs`); `host()`,
    `loss`, `scores` and `losses` read them now. `total` says how the loss is read: None,
    the last value; "sum", the sum of the unimodal CEs (MLA); (weights, w_fusion),
    sum_j w_j CE_j plus w_fusion times the last value unless w_fusion is None (joint-uni on
    quotas)."""

    stats: torch.Tensor | np.ndarray | None
    modalities: list[str]
    sizes: dict[str, int]
    # paired batches of a scoring sampler: detached unimodal + multimodal logits (M + 1, n, C)
    # and the batch's labels (the forward-pass outputs the sampler observes)
    logits: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    total: str | tuple | None = None
    pending: Pending | None = None

    def host(self) -> np.ndarray:
        return np.asarray(read_outputs([self])[0], dtype=np.float64)

    def loss_of(self, values: list[float]) -> float:
        """The loss from this step's host values (a row of `host()`, as Python floats)."""
        k = len(self.modalities)
        if self.total is None:
            return values[2 * k]
        # a modality that trained no rows this iteration (`share`) adds nothing
        trained = [self.sizes.get(m, 1) > 0 for m in self.modalities]
        ce = values[k : 2 * k]
        if self.total == "sum":
            return sum(c for c, t in zip(ce, trained) if t)
        weights, w_fusion = self.total
        loss = sum(w * c for w, c, t in zip(weights, ce, trained) if t)
        if w_fusion is not None:
            loss += w_fusion * values[2 * k]
        return loss

    @property
    def loss(self) -> float:
        return self.loss_of(self.host().tolist())

    @property
    def scores(self) -> dict[str, float]:
        """s_t per trained modality."""
        return dict(zip(self.modalities, self.host().tolist()))

    @property
    def losses(self) -> dict[str, float]:
        """Unimodal CE per trained modality."""
        k = len(self.modalities)
        return dict(zip(self.modalities, self.host().tolist()[k : 2 * k]))


@torch.no_grad()
def _compute(group: list[Pending]) -> list[torch.Tensor]:
    """The numbers of pending steps of one recipe and one count of modalities and of extras,
    batched: every step's rows in one (log-)softmax (a row's value does not depend on the
    rows beside it), then, per run of consecutive steps with the same batch size, the means
    over an (S, M, n) view, the same reduction as for one step alone. Returns one (S, ...)
    tensor per run, in order."""
    first = group[0]
    m = len(first.logits)
    z = torch.cat([t for p in group for t in p.logits])  # (rows, C): step, modality, sample
    y = torch.cat([p.y for p in group for _ in range(m)])
    log = first.recipe == "log"
    true = true_class_score(z, y, log=log)
    extra = torch.stack([e for p in group for e in p.extra]).view(len(group), -1) \
        if first.extra else None
    parts, a, row = [], 0, 0
    while a < len(group):
        n = group[a].y.shape[0]
        b = a + 1
        while b < len(group) and group[b].y.shape[0] == n:
            b += 1
        run = true[row : row + (b - a) * m * n].view(b - a, m, n)
        cols = [run.exp().mean(2), -run.mean(2)] if log else [run.mean(2)]
        if extra is not None:
            cols.append(extra[a:b])
        parts.append(torch.cat(cols, dim=1))
        row += (b - a) * m * n
        a = b
    return parts


def read_outputs(outs: list[StepOutput]) -> list[list[float]]:
    """Every step's numbers on the host (float64 rows, in order): pending steps computed
    in one batched pass per recipe, and one transfer per such batch. (The steps of one run
    live on one device.)"""
    values: list[list[float] | None] = [None] * len(outs)
    batches: dict[tuple, list[int]] = defaultdict(list)
    for i, out in enumerate(outs):
        p = out.pending
        if p is not None and out.stats is None:
            batches[(p.recipe, len(p.logits), len(p.extra))].append(i)
        elif isinstance(out.stats, torch.Tensor):
            batches[("stats", out.stats.shape)].append(i)
        else:
            values[i] = np.asarray(out.stats, dtype=np.float64).tolist()
    for key, idx in batches.items():
        if key[0] != "stats":
            parts = _compute([outs[i].pending for i in idx])
            stats = parts[0] if len(parts) == 1 else torch.cat(parts)
        elif len(idx) == 1:  # a sampler that reads the status every step: no stack
            stats = outs[idx[0]].stats.unsqueeze(0)
        else:
            stats = torch.stack([outs[i].stats for i in idx])
        # tolist gives a float32's exact value as a Python float: no float64 copy needed
        for i, row in zip(idx, stats.cpu().tolist()):
            values[i] = row
    return values
