"""MML base methods: how one training iteration updates the model.

Each method's `step(batch)` trains on a batch (paired or per-modality index arrays) and
returns a `StepOutput` with what the learning status and the samplers need, computed from
the forward passes it already does (no extra pass):

- `joint`: multimodal CE through a concatenation fusion head (+ optional unimodal CE).
- `joint-uni`: the papers' baseline, `w_mm CE(fusion) + sum_j w_j CE(head_j)` with a
  separate linear head per modality; with DUS quotas, each unimodal loss on its own quota of
  samples and the fusion loss on a paired batch of B.
- `ogm-ge`: joint, with the dominant modality's encoder gradients scaled by
  1 - tanh(α·ρ) and Gaussian noise added (GE) whose std is that of the gradient *before*
  scaling (the authors' code), in the epoch window [ogm_start, ogm_end], end included.
- `mla`: alternating unimodal updates through one shared head, with the head's gradient
  for each later modality projected away from the previous modality's features (OWM-style
  recursive projector) so the head keeps what it learned; switchable.

Methods that take per-modality batches read a DUS quota n_j by the sampler's `quota_mode`
(`quota_chunks`): `batch` (one mean-reduced step on the n_j samples: a larger quota only
lowers gradient noise), `scaled` (that loss weighted by n_j / B, so twice the samples give
twice the step) or `steps` (ceil(n_j / B) optimizer steps on the n_j samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from mmbalance.balance import true_class_log_probs, true_class_score
from mmbalance.trainers.sampler import PAIRED


@dataclass
class StepOutput:
    loss: float
    scores: dict[str, float]  # s_t per trained modality
    losses: dict[str, float]  # unimodal CE per trained modality
    sizes: dict[str, int]
    # paired batches of a scoring sampler: detached unimodal + multimodal logits (M + 1, n, C)
    # and the batch's labels (the forward-pass outputs the sampler observes)
    logits: torch.Tensor | None = None
    labels: torch.Tensor | None = None


def quota_chunks(idx: torch.Tensor, batch_size: int, mode: str) -> list[tuple[torch.Tensor, float]]:
    """How a modality's quota of n samples is trained: (index chunk, loss weight) per
    optimizer step. `batch`: one step, weight 1; `scaled`: one step, weight n / B; `steps`:
    ceil(n / B) steps on near-equal chunks, weight 1 each."""
    n = int(idx.shape[0])
    if mode == "batch":
        return [(idx, 1.0)]
    if mode == "scaled":
        return [(idx, n / batch_size)]
    if mode == "steps":
        return [(c, 1.0) for c in torch.tensor_split(idx, max(1, math.ceil(n / batch_size)))]
    raise ValueError(f"quota_mode must be batch, scaled or steps, got {mode!r}")


class Method:
    name = "base"
    head = "fusion"
    accepts_unimodal_batches = False
    # with per-modality batches, also wants a paired batch of B under the key PAIRED
    wants_paired_with_quotas = False

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
    """Per-modality batch score and unimodal CE for per-modality batches, one device sync
    (over every sample a modality was trained on this iteration)."""
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
        return StepOutput(float(loss.detach()), scores, losses, sizes, logits, y)

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
        if not cfg.ogm_start <= t.epoch <= cfg.ogm_end:  # the authors' window: end included
            self.last_coeffs = {m: 1.0 for m in t.modalities}
            return
        with torch.no_grad():
            sums = [float(true_class_score(uni[m], y).sum()) for m in t.modalities]
        coeffs = ogm_coefficients(sums, cfg.ogm_alpha)
        self.last_coeffs = dict(zip(t.modalities, coeffs))
        for m, c in zip(t.modalities, coeffs):
            for p in t.model.encoders[m].parameters():
                if p.grad is not None:
                    modulate_grad(p.grad, c, cfg.ogm_ge, t.generator)


def modulate_grad(grad: torch.Tensor, coeff: float, ge: bool, generator: torch.Generator) -> None:
    """OGM-GE on one gradient, in place: `g <- coeff * g + N(0, std(g))`, the noise's std
    taken from the gradient *before* scaling (as the authors' code does; GE only for tensors
    with more than one element, whose std is defined)."""
    std = float(grad.std()) if ge and grad.numel() > 1 else None
    grad.mul_(coeff)
    if std is not None:
        noise = torch.randn(grad.shape, generator=generator, device=grad.device,
                            dtype=grad.dtype)
        grad.add_(noise * (std + 1e-8))


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
        t, cfg = self.t, self.cfg
        t.model.train()
        head = t.model.head
        uni: dict[str, torch.Tensor] = {}
        ys: dict[str, torch.Tensor] = {}
        prev_features = None
        for m in t.modalities:
            if cfg.mla_projection and prev_features is not None:
                # once per modality switch: damp what the previous modality's features span
                self.update_projector(prev_features)
            feats, zs, yy = [], [], []
            for idx, weight in quota_chunks(batch[m], cfg.batch_size, t.sampler.quota_mode):
                y = t.train_y[idx]
                feat = t.model.encoders[m](t.train_x[m][idx])
                z = head.unimodal(feat)
                loss = F.cross_entropy(z, y)
                t.optimizer.zero_grad(set_to_none=True)
                (loss * weight if weight != 1.0 else loss).backward()
                if cfg.mla_projection and prev_features is not None:
                    g = head.fc.weight.grad
                    g.copy_(g @ self.projector)
                t.optimizer.step()
                feats.append(feat.detach())
                zs.append(z.detach())
                yy.append(y)
            prev_features = feats[0] if len(feats) == 1 else torch.cat(feats)
            uni[m] = zs[0] if len(zs) == 1 else torch.cat(zs)
            ys[m] = yy[0] if len(yy) == 1 else torch.cat(yy)
        sizes = {m: len(batch[m]) for m in t.modalities}
        if want_terms:  # BSS samplers feed paired batches
            y = t.train_y[t.paired_index(batch)]
            scores, losses, logits = self._paired_stats(uni, head.fuse(uni), y, True)
            return StepOutput(sum(losses.values()), scores, losses, sizes, logits, y)
        scores, losses = _summaries(uni, ys)
        return StepOutput(sum(losses.values()), scores, losses, sizes)


class JointUniMethod(Method):
    """The papers' baseline: `w_mm CE(fusion) + sum_j w_j CE(head_j)`, separate heads.

    Paired batches (uniform, BSS): one step on that loss. Per-modality batches (DUS): each
    modality's unimodal loss on its own quota (read by `quota_mode`) and the fusion loss on
    the paired batch of B the quota sampler adds under `PAIRED` (a stream of its own, so the
    fusion layer sees every sample once per epoch whatever the quotas); with `steps`, the
    iteration takes max_j ceil(n_j / B) steps, the fusion loss in the first, each modality's
    chunks in the first ceil(n_j / B).
    """

    name = "joint-uni"
    head = "fusion+uni"
    accepts_unimodal_batches = True
    wants_paired_with_quotas = True

    def __init__(self, trainer) -> None:
        super().__init__(trainer)
        self.w_uni = dict(zip(trainer.modalities, self.cfg.uni_weights(trainer.modalities)))
        self.w_mm = float(self.cfg.mm_loss_weight)

    def _backward_step(self, loss: torch.Tensor) -> None:
        t = self.t
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.optimizer.step()

    def step(self, batch: dict[str, np.ndarray], want_terms: bool) -> StepOutput:
        t = self.t
        t.model.train()
        if PAIRED not in batch:
            idx = t.paired_index(batch)
            x = {m: t.train_x[m][idx] for m in t.modalities}
            y = t.train_y[idx]
            fusion, uni = t.model.parts(x)
            loss = self.w_mm * F.cross_entropy(fusion, y)
            for m in t.modalities:
                loss = loss + self.w_uni[m] * F.cross_entropy(uni[m], y)
            self._backward_step(loss)
            scores, losses, logits = self._paired_stats(uni, fusion, y, want_terms)
            return StepOutput(float(loss.detach()), scores, losses,
                              {m: len(idx) for m in t.modalities}, logits, y)
        return self._quota_step(batch)

    def _quota_step(self, batch: dict[str, np.ndarray]) -> StepOutput:
        t, cfg, model = self.t, self.cfg, self.t.model
        chunks = {m: quota_chunks(batch[m], cfg.batch_size, t.sampler.quota_mode) for m in t.modalities}
        zs: dict[str, list] = {m: [] for m in t.modalities}
        yy: dict[str, list] = {m: [] for m in t.modalities}
        fusion_loss = None
        for s in range(max(len(c) for c in chunks.values())):
            loss = None
            if s == 0 and self.w_mm > 0:
                paired = batch[PAIRED]
                feats = model.encode({m: t.train_x[m][paired] for m in t.modalities})
                fusion_loss = F.cross_entropy(model.head.fusion(feats), t.train_y[paired])
                loss = self.w_mm * fusion_loss
            for m in t.modalities:
                if s >= len(chunks[m]):
                    continue
                idx, weight = chunks[m][s]
                y = t.train_y[idx]
                z = model.head.unimodal(m, model.encoders[m](t.train_x[m][idx]))
                term = self.w_uni[m] * weight * F.cross_entropy(z, y)
                loss = term if loss is None else loss + term
                zs[m].append(z.detach())
                yy[m].append(y)
            self._backward_step(loss)
        uni = {m: torch.cat(v) for m, v in zs.items()}
        scores, losses = _summaries(uni, {m: torch.cat(v) for m, v in yy.items()})
        total = sum(self.w_uni[m] * losses[m] for m in t.modalities)
        if fusion_loss is not None:
            total += self.w_mm * float(fusion_loss.detach())
        return StepOutput(total, scores, losses, {m: len(batch[m]) for m in t.modalities})


METHOD_CLASSES: dict[str, type[Method]] = {
    "joint": JointMethod,
    "joint-uni": JointUniMethod,
    "ogm-ge": OGMGEMethod,
    "mla": MLAMethod,
}
