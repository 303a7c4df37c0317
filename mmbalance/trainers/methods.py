"""MML base methods: how one training iteration updates the model.

Each method's `step(batch)` trains on a batch (paired or per-modality index arrays) and
returns a `StepOutput` with what the learning status and the samplers need, computed from
the forward passes it already does (no extra pass):

- `joint`: multimodal CE through a concatenation fusion head (+ optional unimodal CE).
- `ogm-ge`: joint, with the dominant modality's encoder gradients scaled by
  1 - tanh(α·ρ) and Gaussian noise of the gradient's own std added (GE), in an epoch window.
- `mla`: alternating unimodal updates through one shared head, with the head's gradient
  for each later modality projected away from the previous modality's features (OWM-style
  recursive projector) so the head keeps what it learned; switchable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from mmbalance.policies.bss_measure import true_class_log_probs
from mmbalance.trainers.status import true_class_score


@dataclass
class StepOutput:
    loss: float
    scores: dict[str, float]  # s_t per trained modality
    losses: dict[str, float]  # unimodal CE per trained modality
    sizes: dict[str, int]
    # paired batches of a scoring sampler: detached unimodal + multimodal logits (M + 1, n, C)
    logits: torch.Tensor | None = None


class Method:
    name = "base"
    head = "fusion"
    accepts_unimodal_batches = False

    def __init__(self, trainer) -> None:
        self.t = trainer
        self.cfg = trainer.config

    def step(self, batch: dict[str, np.ndarray], want_terms: bool) -> StepOutput:
        raise NotImplementedError

    def _paired_stats(
        self, uni: dict[str, torch.Tensor], mm: torch.Tensor, y: torch.Tensor, want_terms: bool
    ) -> tuple[dict, dict, torch.Tensor | None]:
        """Scores and unimodal CE of a paired batch (one softmax over the stacked logits, one
        device sync) and, for samplers that score samples, the detached logits (M + 1, n, C)
        the trainer keeps to compute the BSS terms of the whole epoch in one pass."""
        names = self.t.modalities
        _, true = true_class_log_probs([uni[m] for m in names], y)
        vals = torch.cat([true.exp().mean(1), -true.mean(1)]).cpu().numpy()
        k = len(names)
        scores = dict(zip(names, vals[:k].tolist()))
        losses = dict(zip(names, vals[k : 2 * k].tolist()))
        logits = torch.stack([*(uni[m].detach() for m in names), mm.detach()]) if want_terms else None
        return scores, losses, logits


def _summaries(uni: dict[str, torch.Tensor], ys: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Per-modality batch score and unimodal CE for per-modality batches, one device sync."""
    names = list(uni)
    with torch.no_grad():
        s = torch.stack([true_class_score(uni[m], ys[m]).mean() for m in names])
        ce = torch.stack([F.cross_entropy(uni[m].detach(), ys[m]) for m in names])
        vals = torch.stack([s, ce]).cpu().numpy()
    return dict(zip(names, vals[0].tolist())), dict(zip(names, vals[1].tolist()))


class JointMethod(Method):
    name = "joint"

    def step(self, batch: dict[str, np.ndarray], want_terms: bool) -> StepOutput:
        t = self.t
        idx = t.paired_index(batch)
        x = {m: t.train_x[m][idx] for m in t.modalities}
        y = t.train_y[idx]
        t.model.train()
        mm, uni = t.model(x)
        loss = F.cross_entropy(mm, y)
        if self.cfg.unimodal_loss_weight > 0:
            loss = loss + self.cfg.unimodal_loss_weight * sum(
                F.cross_entropy(z, y) for z in uni.values()
            )
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.modulate(uni, y)
        t.optimizer.step()
        scores, losses, logits = self._paired_stats(uni, mm, y, want_terms)
        sizes = {m: len(idx) for m in t.modalities}
        return StepOutput(float(loss.detach()), scores, losses, sizes, logits)

    def modulate(self, uni: dict[str, torch.Tensor], y: torch.Tensor) -> None:
        """Hook between backward and the optimizer step (OGM-GE overrides it)."""


def ogm_coefficients(batch_scores: list[float], alpha: float) -> list[float]:
    """OGM's per-modality gradient coefficients from summed true-class scores.

    ρ_j = s_j / mean_{k≠j} s_k (for two modalities the paper's ratio); a modality with
    ρ_j > 1 leads and gets 1 - tanh(α ρ_j), the others keep 1.
    """
    s = np.asarray(batch_scores, dtype=np.float64)
    coeffs = []
    for j in range(len(s)):
        others = np.delete(s, j).mean()
        rho = s[j] / max(others, 1e-12)
        coeffs.append(float(1.0 - np.tanh(alpha * rho)) if rho > 1.0 else 1.0)
    return coeffs


class OGMGEMethod(JointMethod):
    name = "ogm-ge"

    def modulate(self, uni: dict[str, torch.Tensor], y: torch.Tensor) -> None:
        cfg, t = self.cfg, self.t
        if not cfg.ogm_start <= t.epoch < cfg.ogm_end:
            self.last_coeffs = {m: 1.0 for m in t.modalities}
            return
        with torch.no_grad():
            sums = [float(true_class_score(uni[m], y).sum()) for m in t.modalities]
        coeffs = ogm_coefficients(sums, cfg.ogm_alpha)
        self.last_coeffs = dict(zip(t.modalities, coeffs))
        for m, c in zip(t.modalities, coeffs):
            for p in t.model.encoders[m].parameters():
                if p.grad is None:
                    continue
                p.grad.mul_(c)
                if cfg.ogm_ge and p.grad.numel() > 1:
                    std = float(p.grad.std())
                    noise = torch.randn(p.grad.shape, generator=t.generator, device=p.grad.device)
                    p.grad.add_(noise * (std + 1e-8))


class MLAMethod(Method):
    name = "mla"
    head = "shared"
    accepts_unimodal_batches = True

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        dim = self.cfg.feature_dim
        self.projector = torch.eye(dim, device=trainer.device)

    def update_projector(self, features: torch.Tensor) -> None:
        """Recursive OWM projector: P <- P - k kᵀ / (α + rᵀ k), k = P r, r = mean feature.

        P stays symmetric with eigenvalues in (0, 1]; directions the previous modalities'
        features occupy are damped, unexplored ones pass unchanged.
        """
        r = features.detach().mean(0, keepdim=True).T  # (F, 1)
        k = self.projector @ r
        self.projector = self.projector - (k @ k.T) / (self.cfg.mla_proj_alpha + (r.T @ k))

    def step(self, batch: dict[str, np.ndarray], want_terms: bool) -> StepOutput:
        t = self.t
        t.model.train()
        head = t.model.head
        uni: dict[str, torch.Tensor] = {}
        total = 0.0
        prev_features = None
        for m in t.modalities:
            idx = batch[m]
            y = t.train_y[idx]
            feat = t.model.encoders[m](t.train_x[m][idx])
            z = head.unimodal(feat)
            loss = F.cross_entropy(z, y)
            t.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.mla_projection and prev_features is not None:
                self.update_projector(prev_features)
                g = head.fc.weight.grad
                g.copy_(g @ self.projector)
            t.optimizer.step()
            prev_features = feat.detach()
            uni[m] = z.detach()
            total += float(loss.detach())
        sizes = {m: len(batch[m]) for m in t.modalities}
        if want_terms:  # BSS samplers feed paired batches
            y = t.train_y[t.paired_index(batch)]
            scores, losses, logits = self._paired_stats(uni, head.fuse(uni), y, True)
            return StepOutput(total, scores, losses, sizes, logits)
        scores, losses = _summaries(uni, {m: t.train_y[batch[m]] for m in t.modalities})
        return StepOutput(total, scores, losses, sizes)


METHOD_CLASSES: dict[str, type[Method]] = {
    "joint": JointMethod,
    "ogm-ge": OGMGEMethod,
    "mla": MLAMethod,
}
