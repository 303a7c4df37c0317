"""How balanced learning is, as the samplers and the trainer both read it (no Ray, no
trainer, no sampler here: `trainers/` and `policies/` import this module, never each other's
internals). Formulas and sources: `docs/architecture.md`.

- The true-class score of a sample: the softmax probability its unimodal logits give its
  label, computed here only (`true_class_score`, over any leading axes: one batch, M
  modalities, or S steps of M modalities at once; `log=True` gives log-probabilities; the
  BSS terms gather the same column from one log-softmax of every modality's logits).
  Probabilities and log-probabilities are the same quantity in two numerical forms; each
  call site keeps the form it was written with so that runs repeat bit for bit
  (tests/test_golden_runs.py). `log_softmax` is PyTorch's, to the bit, faster on a CPU for
  the thousands of rows of a step log or a scoring pass.
- The learning status (DUS paper): for modality j, the batch score s_t is the mean
  true-class score of a training batch; the cumulative score ŝ_t is a running mean (the
  paper's) or an EMA (a running mean over a long run barely moves). The discrepancy is
  max_j ŝ - min_j ŝ, which for two modalities is |ŝ_a - ŝ_b|; `gap[j] = ŝ_j - mean(ŝ)` says
  which modality leads.
- BSS's per-sample balance terms (the BSS authors' measurer): `sim_i`, the cosine between
  the modalities' softmax outputs (the mean of pairwise cosines for M > 2), and
  `loss_i = sum_j w_j CE(z_i^(j)) + w_mm CE(z_i^(mm))`. The BSS samplers turn them into
  balance degrees (`policies/bss_measure.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from mmbalance.errors import ConfigError

ACCUMULATIONS = ("mean", "ema")


# rows from which the transposed kernel beats PyTorch's row-by-row one (measured: ~200)
_FAST_LOG_SOFTMAX_ROWS = 256
_fast_log_softmax_ok: dict[tuple[int, torch.dtype], bool] = {}


def _log_softmax_by_class(rows: torch.Tensor) -> torch.Tensor:
    """`rows` (n, C) log-softmaxed over C, returned class by class (C, n), by PyTorch's
    kernel for a leading axis on the transpose, padded to whole SIMD vectors (a partial
    vector would take a scalar exp)."""
    n = rows.shape[0]
    padded = F.pad(rows.T, (0, -n % 64))
    return F.log_softmax(padded, dim=0)[:, :n]


def _fast_log_softmax_agrees(c: int, dtype: torch.dtype) -> bool:
    """Whether `_log_softmax_by_class` repeats `F.log_softmax` to the bit for C classes on
    this CPU, tried once on a probe (its own random stream: the run's is not touched)."""
    key = (c, dtype)
    if key not in _fast_log_softmax_ok:
        g = torch.Generator().manual_seed(c)
        probe = torch.cat([torch.randn(512, c, generator=g, dtype=dtype) * s
                           for s in (1e-3, 0.3, 3.0, 30.0, 1e3)])
        _fast_log_softmax_ok[key] = bool(torch.equal(
            _log_softmax_by_class(probe).T, F.log_softmax(probe, dim=-1)))
    return _fast_log_softmax_ok[key]


def _by_class(logits: torch.Tensor) -> bool:
    """Whether `logits` (..., C) take the class-by-class kernel (see `log_softmax`)."""
    return (logits.device.type == "cpu" and not logits.requires_grad and logits.dim() >= 2
            and logits.numel() >= _FAST_LOG_SOFTMAX_ROWS * logits.shape[-1]
            and _fast_log_softmax_agrees(logits.shape[-1], logits.dtype))


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """`F.log_softmax(logits, dim=-1)`, the same to the bit, several times faster where a
    step log or a scoring pass holds thousands of rows of a few classes on a CPU.

    PyTorch's CPU kernel over the last axis treats one row at a time, at about 70 ns a row
    for 6 classes. Over a leading axis it runs across rows in SIMD with the same arithmetic
    in the same order (max, the sum of exp(x - max) in class order, x - max - log(sum)). The
    two agree only while a row is shorter than one SIMD vector (the last-axis kernel sums a
    longer row in vector lanes), so agreement is tried once per class count and dtype, and
    the plain kernel serves everything else: autograd, other devices, few rows."""
    if not _by_class(logits):
        return F.log_softmax(logits, dim=-1)
    c = logits.shape[-1]
    return _log_softmax_by_class(logits.reshape(-1, c)).T.contiguous().view(logits.shape)


def _true_column(values: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The label's entry of per-class values (..., C); `y` broadcasts over the leading axes."""
    index = y.unsqueeze(-1).expand(*values.shape[:-1], 1)
    return values.gather(-1, index).squeeze(-1)


def true_class_score(logits: torch.Tensor, y: torch.Tensor, log: bool = False) -> torch.Tensor:
    """Per-sample softmax probability (or, with `log`, log-probability) of the true class,
    over the last axis of `logits` (..., C); `y` holds the labels of the sample axis and
    broadcasts over the others. No gradient."""
    with torch.no_grad():
        logits = logits.detach()
        if not log:
            return _true_column(F.softmax(logits, dim=-1), y)
        if not _by_class(logits):
            return _true_column(F.log_softmax(logits, dim=-1), y)
        # the label's entries straight from the class-by-class layout (no transpose back)
        labels = y.expand(logits.shape[:-1]).reshape(1, -1)
        by_class = _log_softmax_by_class(logits.reshape(-1, logits.shape[-1]))
        return by_class.gather(0, labels).view(logits.shape[:-1])


def stacked_balance_terms(
    logits: torch.Tensor, y: torch.Tensor, weights: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (similarity, weighted loss), detached, of logits stacked (M + 1, n, C):
    each modality's, then the fusion layer's (a `ForwardPass`'s layout); `weights` = one
    per modality, then the fusion loss's. One log-softmax serves every row."""
    m = logits.shape[0] - 1
    if len(weights) != m + 1:
        raise ValueError(f"need {m + 1} loss weights, got {len(weights)}")
    with torch.no_grad():
        logp_all = log_softmax(logits.detach().contiguous())
        true_all = _true_column(logp_all, y)
        logp, true_logp, mm_true = logp_all[:m], true_all[:m], true_all[m]
        p = logp.exp()
        norms = p.norm(dim=-1)  # (M, n)
        if m == 2:  # the common case, in as few kernels as possible
            sim = (p[0] * p[1]).sum(-1) / (norms[0] * norms[1])
        else:
            gram = torch.einsum("anc,bnc->abn", p, p) / (norms[:, None] * norms[None, :])
            a, b = torch.triu_indices(m, m, 1, device=logp.device)
            sim = gram[a, b].mean(0)
        if all(w == weights[0] for w in weights[:-1]):  # equal unimodal weights: one sum
            loss = -float(weights[0]) * true_logp.sum(0) - float(weights[-1]) * mm_true
        else:
            w = torch.tensor(weights[:-1], dtype=logp.dtype, device=logp.device)
            loss = -(w[:, None] * true_logp).sum(0) - float(weights[-1]) * mm_true
    return sim, loss


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
        self._keys = [(f"s_{n}", f"s_hat_{n}", f"loss_{n}") for n in self.modalities]
        self.t = np.zeros(m, dtype=np.int64)  # updates seen per modality
        self.s = np.zeros(m)
        self.s_hat = np.zeros(m)
        self.loss = np.zeros(m)

    def fold(self, steps: list[tuple[list[float], list[float]]],
             trained: list[list[bool]] | None = None) -> list[list[float]]:
        """Fold in a run of steps ((batch scores, unimodal losses) in modality order), in
        float64 arithmetic on plain floats; `trained[i][j]` False: modality j sat step i
        out (its numbers are not folded in). Returns each step's status as the values of
        `as_dict`, in its key order."""
        t, s, s_hat, loss = (a.tolist() for a in (self.t, self.s, self.s_hat, self.loss))
        mean, beta, m = self.accumulation == "mean", self.ema_beta, len(self.modalities)
        rows = []
        everyone = [True] * m
        for i, (scores, losses) in enumerate(steps):
            row = [0.0]
            on = trained[i] if trained is not None else everyone
            for j in range(m):
                if not on[j]:
                    row += (s[j], s_hat[j], loss[j])
                    continue
                t[j] += 1
                s[j] = scores[j]
                loss[j] = losses[j]
                if mean or t[j] == 1:
                    s_hat[j] += (s[j] - s_hat[j]) / t[j]
                else:
                    s_hat[j] += beta * (s[j] - s_hat[j])
                row += (s[j], s_hat[j], loss[j])
            row[0] = max(s_hat) - min(s_hat)
            rows.append(row)
        self.t[:], self.s[:], self.s_hat[:], self.loss[:] = t, s, s_hat, loss
        return rows

    def keys(self) -> list[str]:
        """The names of `as_dict`'s values, in order."""
        return ["discrepancy", *(k for keys in self._keys for k in keys)]

    @property
    def discrepancy(self) -> float:
        return float(self.s_hat.max() - self.s_hat.min())

    @property
    def gap(self) -> np.ndarray:
        return self.s_hat - self.s_hat.mean()

    def as_dict(self) -> dict[str, float]:
        """The status as one row of the step log (it is built at every step: plain floats,
        no numpy scalar arithmetic)."""
        s_hat = self.s_hat.tolist()
        out: dict[str, float] = {"discrepancy": max(s_hat) - min(s_hat)}
        for (ks, kh, kl), s, sh, loss in zip(self._keys, self.s.tolist(), s_hat,
                                             self.loss.tolist()):
            out[ks] = s
            out[kh] = sh
            out[kl] = loss
        return out

    def state_dict(self) -> dict:
        return {k: getattr(self, k).copy() for k in ("t", "s", "s_hat", "loss")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, np.asarray(v).copy())
