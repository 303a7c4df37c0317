"""The multimodal classifier: one encoder per modality and a fusion or shared head."""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.models.encoders import build_encoder
from mmbalance.models.heads import ConcatFusionHead, SharedHead


class MultimodalModel(nn.Module):
    def __init__(
        self,
        input_shapes: dict[str, tuple[int, ...]],
        num_classes: int,
        head: str = "fusion",
        feature_dim: int = 64,
        hidden: int = 128,
        fusion: str = "entropy",
    ):
        super().__init__()
        self.modalities = list(input_shapes)
        self.encoders = nn.ModuleDict(
            {m: build_encoder(s, feature_dim, hidden) for m, s in input_shapes.items()}
        )
        if head == "fusion":
            self.head: nn.Module = ConcatFusionHead(
                {m: feature_dim for m in self.modalities}, num_classes
            )
        elif head == "shared":
            self.head = SharedHead(feature_dim, num_classes, self.modalities, fusion=fusion)
        else:
            raise ValueError(f"head must be 'fusion' or 'shared', got {head!r}")

    def encode(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.encoders[m](x[m]) for m in self.modalities}

    def forward(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.head(self.encode(x))
