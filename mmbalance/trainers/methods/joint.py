"""`joint`: unimodal encoders and a concatenation fusion head trained with the multimodal CE
(plus, optionally, per-modality CE terms through the encoders: a partial rebalancing).
Each modality's monitoring logits are its block of the fusion weights (as the OGM-GE code
does), so they cost no extra forward."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from mmbalance.trainers.methods.base import Method, StepOutput, check_nonnegative


@dataclass
class JointOptions:
    # > 0 adds per-modality CE terms through the encoders (a partial rebalancing)
    unimodal_loss_weight: float = 0.0

    def check(self) -> None:
        check_nonnegative(self, ("unimodal_loss_weight",))


class JointMethod(Method):
    name = "joint"
    Options = JointOptions

    def step(self, batch: dict[str, torch.Tensor], want_logits: bool) -> StepOutput:
        ctx, model = self.ctx, self.ctx.model
        idx = self.paired_index(batch)
        x = {m: ctx.x[m][idx] for m in ctx.modalities}
        y = ctx.y[idx]
        self.train_mode()
        mm, uni = model(x)
        loss = F.cross_entropy(mm, y)
        if self.options.unimodal_loss_weight > 0:
            loss = loss + self.options.unimodal_loss_weight * sum(
                F.cross_entropy(z, y) for z in uni.values()
            )
        ctx.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.modulate(uni, y)
        ctx.optimizer.step()
        return self.paired_output(uni, mm, y, loss, want_logits)

    def modulate(self, uni: dict[str, torch.Tensor], y: torch.Tensor) -> None:
        """Hook between backward and the optimizer step (OGM-GE overrides it)."""
