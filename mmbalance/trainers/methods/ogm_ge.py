"""`ogm-ge` (Peng et al., CVPR 2022): joint training with the dominant modality's encoder
gradients scaled by 1 - tanh(α·ρ) and Gaussian noise added (GE) whose std is that of the
gradient *before* scaling (the authors' code), in the epoch window [ogm_start, ogm_end],
end included (the authors' code, read)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmbalance.balance import true_class_score
from mmbalance.trainers.methods.base import check_nonnegative
from mmbalance.trainers.methods.joint import JointMethod, JointOptions


@dataclass
class OGMGEOptions(JointOptions):
    ogm_alpha: float = 0.3
    ogm_ge: bool = True
    ogm_start: int = 0
    ogm_end: int = 50  # included: modulation runs for ogm_start <= epoch <= ogm_end

    def check(self) -> None:
        super().check()
        check_nonnegative(self, ("ogm_alpha", "ogm_start", "ogm_end"))


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


class OGMGEMethod(JointMethod):
    name = "ogm-ge"
    Options = OGMGEOptions

    def modulate(self, uni: dict[str, torch.Tensor], y: torch.Tensor) -> None:
        ctx, opt = self.ctx, self.options
        if not opt.ogm_start <= ctx.epoch <= opt.ogm_end:  # the authors' window: end included
            self.last_coeffs = {m: 1.0 for m in ctx.modalities}
            return
        with torch.no_grad():
            sums = [float(true_class_score(uni[m], y).sum()) for m in ctx.modalities]
        coeffs = ogm_coefficients(sums, opt.ogm_alpha)
        self.last_coeffs = dict(zip(ctx.modalities, coeffs))
        for m, c in zip(ctx.modalities, coeffs):
            for p in ctx.model.encoders[m].parameters():
                if p.grad is not None:
                    modulate_grad(p.grad, c, opt.ogm_ge, ctx.generator)
