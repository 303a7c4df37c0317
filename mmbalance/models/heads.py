"""Heads that turn per-modality features into multimodal and unimodal logits.

Every head returns `(mm_logits, {modality: logits})` from `forward`: the multimodal logits
are the model's prediction; the unimodal logits are what the learning status, the BSS
measurer and the per-modality accuracy read. `parts(feats)` returns the raw
`(fusion_logits, unimodal)` a method trains on (the same as `forward` except where the
prediction combines several heads).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConcatFusionHead(nn.Module):
    """One linear layer over the concatenated features (the field's "joint" baseline).

    Modality j's logits are its block of the fusion weights plus an M-th of the bias (as the
    OGM-GE code does), so the multimodal logits are exactly their sum.
    """

    def __init__(self, feature_dims: dict[str, int], num_classes: int):
        super().__init__()
        self.modalities = list(feature_dims)
        self.dims = [feature_dims[m] for m in self.modalities]
        self.fc = nn.Linear(sum(self.dims), num_classes)

    def forward(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        blocks = torch.split(self.fc.weight, self.dims, dim=1)
        bias = self.fc.bias / len(self.modalities)
        uni = {m: F.linear(feats[m], w, bias) for m, w in zip(self.modalities, blocks)}
        mm = torch.stack(list(uni.values())).sum(0)
        return mm, uni

    def parts(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self(feats)


FUSIONS = ("entropy", "equal")


class SharedHead(nn.Module):
    """One linear classifier shared by every modality (MLA).

    Inference fuses the unimodal logits with fixed equal weights or, per sample, with
    entropy weights `softmax(-H_j)`: a confident modality counts more.
    """

    def __init__(self, feature_dim: int, num_classes: int, modalities: list[str], fusion: str = "entropy"):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.modalities = list(modalities)
        self.fc = nn.Linear(feature_dim, num_classes)
        self.fusion = fusion

    def unimodal(self, feat: torch.Tensor) -> torch.Tensor:
        return self.fc(feat)

    def fuse(self, uni: dict[str, torch.Tensor]) -> torch.Tensor:
        z = torch.stack([uni[m] for m in self.modalities])  # (M, n, C)
        if self.fusion == "equal":
            return z.mean(0)
        logp = F.log_softmax(z, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)  # (M, n)
        w = torch.softmax(-entropy, dim=0).unsqueeze(-1)
        return (w * z).sum(0)

    def forward(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        uni = {m: self.fc(feats[m]) for m in self.modalities}
        return self.fuse(uni), uni

    def parts(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self(feats)


INFERENCES = ("sum", "unimodal", "fusion")


class FusionWithUnimodalHeads(nn.Module):
    """A concatenation fusion layer plus one linear head per modality (`joint-uni`).

    The papers' base model: the BSS authors train `w_mm CE(fusion) + sum_j w_j CE(head_j)`
    with separate heads, and predict with the sum of the heads' logits: all of them
    (`inference="sum"`, their code on Kinetics-Sounds, Twitter, Sarcasm, NVGesture), the
    unimodal ones only (`"unimodal"`, their CREMA-D code), or the fusion layer alone
    (`"fusion"`). Unimodal logits come from each modality's own head.
    """

    def __init__(self, feature_dims: dict[str, int], num_classes: int, inference: str = "sum"):
        super().__init__()
        if inference not in INFERENCES:
            raise ValueError(f"inference must be one of {INFERENCES}, got {inference!r}")
        self.modalities = list(feature_dims)
        self.fc = nn.Linear(sum(feature_dims.values()), num_classes)
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in feature_dims.items()})
        self.inference = inference

    def unimodal(self, m: str, feat: torch.Tensor) -> torch.Tensor:
        return self.heads[m](feat)

    def fusion(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(torch.cat([feats[m] for m in self.modalities], dim=1))

    def parts(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.fusion(feats), {m: self.heads[m](feats[m]) for m in self.modalities}

    def predict(self, fusion: torch.Tensor, uni: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.inference == "fusion":
            return fusion
        total = torch.stack([uni[m] for m in self.modalities]).sum(0)
        return total + fusion if self.inference == "sum" else total

    def forward(self, feats: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        fusion, uni = self.parts(feats)
        return self.predict(fusion, uni), uni
