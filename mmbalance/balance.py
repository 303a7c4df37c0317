"""How balanced learning is, as the samplers and the trainer both read it (no Ray, no
trainer, no sampler here: `trainers/` and `policies/` import this module, never each other's
internals). Formulas and sources: `docs/architecture.md`.

- The true-class score of a sample: the softmax probability its unimodal logits give its
  label, computed here only (`true_class_score`, over any leading axes: one batch, M
  modalities, or S steps of M modalities at once; `log=True` gives log-probabilities).
  `true_class_log_probs` keeps the stacked log-softmax too, for paired batches whose
  learning status and BSS terms read the same values. Probabilities and log-probabilities
  are the same quantity in two numerical forms; each call site keeps the form it was
  written with so that runs repeat bit for bit (tests/test_golden_runs.py).
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


def _true_column(values: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The label's entry of per-class values (..., C); `y` broadcasts over the leading axes."""
    index = y.unsqueeze(-1).expand(*values.shape[:-1], 1)
    return values.gather(-1, index).squeeze(-1)


def true_class_score(logits: torch.Tensor, y: torch.Tensor, log: bool = False) -> torch.Tensor:
    """Per-sample softmax probability (or, with `log`, log-probability) of the true class,
    over the last axis of `logits` (..., C); `y` holds the labels of the sample axis and
    broadcasts over the others. No gradient."""
    with torch.no_grad():
        norm = F.log_softmax if log else F.softmax
        return _true_column(norm(logits.detach(), dim=-1), y)


def true_class_log_probs(
    uni_logits: Sequence[torch.Tensor], y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked log-softmax (M, n, C) of detached unimodal logits and its true-class column (M, n).

    The learning status (s_t, unimodal CE) and the BSS terms all read these, so a training
    step computes them once.
    """
    with torch.no_grad():
        logp = F.log_softmax(torch.stack([z.detach() for z in uni_logits]), dim=-1)
        return logp, _true_column(logp, y)


def terms_from_log_probs(
    logp: torch.Tensor,
    true_logp: torch.Tensor,
    mm_logits: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (similarity, weighted loss) from `true_class_log_probs` output."""
    m = logp.shape[0]
    if len(weights) != m + 1:
        raise ValueError(f"need {m + 1} loss weights, got {len(weights)}")
    with torch.no_grad():
        p = logp.exp()
        norms = p.norm(dim=-1)  # (M, n)
        if m == 2:  # the common case, in as few kernels as possible (it runs every step)
            sim = (p[0] * p[1]).sum(-1) / (norms[0] * norms[1])
        else:
            gram = torch.einsum("anc,bnc->abn", p, p) / (norms[:, None] * norms[None, :])
            a, b = torch.triu_indices(m, m, 1, device=logp.device)
            sim = gram[a, b].mean(0)
        mm_true = true_class_score(mm_logits, y, log=True)
        if all(w == weights[0] for w in weights[:-1]):  # equal unimodal weights: one sum
            loss = -float(weights[0]) * true_logp.sum(0) - float(weights[-1]) * mm_true
        else:
            w = torch.tensor(weights[:-1], dtype=logp.dtype, device=logp.device)
            loss = -(w[:, None] * true_logp).sum(0) - float(weights[-1]) * mm_true
    return sim, loss


def balance_terms(
    uni_logits: Sequence[torch.Tensor],
    mm_logits: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (similarity, weighted loss), detached. `weights` = per-modality + mm."""
    logp, true_logp = true_class_log_probs(uni_logits, y)
    return terms_from_log_probs(logp, true_logp, mm_logits, y, weights)



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
