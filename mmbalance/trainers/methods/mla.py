"""`mla` (Zhang et al., CVPR 2024): alternating unimodal updates through one shared head.

The head's gradient for each later modality is projected away from the previous modality's
features (OWM-style recursive projector) so the head keeps what it learned; switchable (the
authors' public projection never runs: a parameter-name check never matches). Inference is
a weighted sum of unimodal logits (fixed equal weights or entropy-based per sample).
`mla_batched.py` trains K runs of this method in one batched update, with the same projector
update (`owm_update`, `project`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from mmbalance.errors import ConfigError
from mmbalance.models.heads import FUSIONS
from mmbalance.trainers.methods.base import (
    Method,
    StepOutput,
    batch_output,
    check_choice,
    quota_chunks,
)


@dataclass
class MLAOptions:
    mla_projection: bool = True
    mla_proj_alpha: float = 0.1
    mla_fusion: str = "entropy"

    def check(self) -> None:
        check_choice(self, "mla_fusion", FUSIONS)
        if not self.mla_proj_alpha > 0:
            raise ConfigError(f"mla_proj_alpha: must be > 0, got {self.mla_proj_alpha}")


def owm_update(projector: torch.Tensor, r: torch.Tensor, alpha: float) -> torch.Tensor:
    """The recursive OWM projector after seeing mean feature r: P - k kᵀ / (α + rᵀ k), k = P r.

    P (F, F) and r (F, 1), or a leading run dimension on both (R, F, F), (R, F, 1). P stays
    symmetric with eigenvalues in (0, 1]; directions the previous modalities' features
    occupy are damped, unexplored ones pass unchanged.
    """
    k = projector @ r
    return projector - (k @ k.mT) / (alpha + (r.mT @ k))


def project(grad: torch.Tensor, projector: torch.Tensor) -> torch.Tensor:
    """The shared head's weight gradient (C, F) with the damped directions removed: g P."""
    return grad @ projector


class MLAMethod(Method):
    name = "mla"
    head = "shared"
    accepts_unimodal_batches = True
    Options = MLAOptions

    def __init__(self, ctx, options: MLAOptions) -> None:
        super().__init__(ctx, options)
        dim = ctx.model.head.fc.in_features
        self.projector = torch.eye(dim, device=ctx.model.head.fc.weight.device)

    @classmethod
    def model_options(cls, options: MLAOptions) -> dict:
        return {"fusion": options.mla_fusion}

    def update_projector(self, features: torch.Tensor) -> None:
        """Damp the span of the previous modality's (detached) features: their mean r,
        `owm_update`."""
        r = features.mean(0, keepdim=True).T  # (F, 1)
        self.projector = owm_update(self.projector, r, self.options.mla_proj_alpha)

    def step(self, batch: dict[str, torch.Tensor], want_logits: bool) -> StepOutput:
        ctx, opt = self.ctx, self.options
        mods = ctx.modalities
        self.train_mode()
        head = ctx.model.head
        uni: dict[str, torch.Tensor] = {}
        ys: dict[str, torch.Tensor] = {}
        ce: dict[str, torch.Tensor | None] = {}
        prev_features = None
        unit = self.unit
        for m in mods:
            chunks = quota_chunks(batch[m], unit, ctx.quota_mode)
            if not chunks:  # a `share` quota: this modality sits this iteration out
                continue
            if opt.mla_projection and prev_features is not None:
                # once per modality switch: damp what the previous modality's features span
                self.update_projector(prev_features)
            feats, zs, yy, losses = [], [], [], []
            for idx, weight in chunks:
                y = ctx.y[idx]
                feat = ctx.model.encoders[m](ctx.x[m][idx])
                z = head.unimodal(feat)
                loss = F.cross_entropy(z, y)
                ctx.optimizer.zero_grad(set_to_none=True)
                (loss * weight if weight != 1.0 else loss).backward()
                if opt.mla_projection and prev_features is not None:
                    g = head.fc.weight.grad
                    g.copy_(project(g, self.projector))
                ctx.optimizer.step()
                feats.append(feat.detach())  # the projector's input: no graph on it
                zs.append(z)  # read under no_grad (`batch_output`)
                yy.append(y)
                losses.append(loss)
            if len(chunks) == 1:  # one optimizer step on this modality (every paired batch)
                prev_features, uni[m], ys[m], ce[m] = feats[0], zs[0], yy[0], losses[0]
            else:
                prev_features, uni[m], ys[m] = torch.cat(feats), torch.cat(zs), torch.cat(yy)
                ce[m] = None  # no one loss of exactly these samples
        if want_logits:  # BSS samplers feed paired batches
            y = ctx.y[self.paired_index(batch)]
            return self.paired_output(uni, head.fuse(uni), y, None, True, total="sum")
        first = batch[mods[0]]
        paired = all(batch[m] is first for m in mods)
        return batch_output(uni, ys, ce, {m: batch[m].shape[0] for m in mods},
                            same_rows=paired, total="sum", modalities=mods)
