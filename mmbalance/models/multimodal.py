"""The multimodal classifier: one encoder per modality and a fusion or shared head."""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.errors import ConfigError
from mmbalance.models.encoders import build_encoder
from mmbalance.models.heads import ConcatFusionHead, FusionWithUnimodalHeads, SharedHead


class MultimodalModel(nn.Module):
    def __init__(
        self,
        input_shapes: dict[str, tuple[int, ...]],
        num_classes: int,
        head: str = "fusion",
        feature_dim: int = 64,
        hidden: int = 128,
        fusion: str = "entropy",
        encoders: dict | None = None,
        pretrained: dict | None = None,
        inference: str = "sum",
    ):
        """`head`: "fusion" (concatenation), "shared" (MLA) or "fusion+uni" (concatenation
        plus a head per modality; `inference` says which heads predict).
        `encoders`/`pretrained`: a dataset's `info["encoders"]` / `info["pretrained"]`
        ({modality: backbone name or spec} / {modality: local checkpoint path}); without
        them every modality gets the MLP or CNN its input shape calls for."""
        super().__init__()
        self.modalities = list(input_shapes)
        encoders, pretrained = encoders or {}, pretrained or {}
        unknown = sorted((set(encoders) | set(pretrained)) - set(self.modalities))
        if unknown:
            raise ConfigError(f"encoders/pretrained name unknown modalities {unknown}; "
                             f"the data has {self.modalities}")
        self.encoders = nn.ModuleDict({
            m: build_encoder(s, feature_dim, hidden, encoders.get(m), pretrained.get(m), m)
            for m, s in input_shapes.items()
        })
        if head == "fusion":
            self.head: nn.Module = ConcatFusionHead(
                {m: feature_dim for m in self.modalities}, num_classes
            )
        elif head == "shared":
            self.head = SharedHead(feature_dim, num_classes, self.modalities, fusion=fusion)
        elif head == "fusion+uni":
            self.head = FusionWithUnimodalHeads(
                {m: feature_dim for m in self.modalities}, num_classes, inference=inference
            )
        else:
            raise ValueError(f"head must be 'fusion', 'shared' or 'fusion+uni', got {head!r}")

    def pretrained_from(self) -> dict[str, dict]:
        """{modality: the checkpoint its encoder loaded (file, tensors)}: the proof, for the
        run's log and config.json, that pretrained weights are in, not just asked for."""
        return {m: dict(e.pretrained_from) for m, e in self.encoders.items()
                if getattr(e, "pretrained_from", None)}

    def encode(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.encoders[m](x[m]) for m in self.modalities}

    def forward(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.head(self.encode(x))

    def parts(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(fusion logits, unimodal logits): what a method trains on and BSS measures."""
        return self.head.parts(self.encode(x))
