"""Heads that turn per-modality features into multimodal and unimodal logits.

Both heads return `(mm_logits, {modality: logits})`. The unimodal logits are what the
learning status, the BSS measurer and the per-modality accuracy read.
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


class SharedHead(nn.Module):
    """One linear classifier shared by every modality (MLA).

    Inference fuses the unimodal logits with fixed equal weights or, per sample, with
    entropy weights `softmax(-H_j)`: a confident modality counts more.
    """

    def __init__(self, feature_dim: int, num_classes: int, modalities: list[str], fusion: str = "entropy"):
        super().__init__()
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
