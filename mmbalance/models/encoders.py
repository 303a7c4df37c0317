"""Unimodal encoders: an MLP for feature vectors and a small CNN for image-like inputs.

Datasets that name their backbones (ResNet, BERT, I3D) get them from `backbones.py`.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from mmbalance.errors import ConfigError


class MLPEncoder(nn.Module):
    """Flattened input -> `layers` hidden ReLU layers -> a feature vector of size `out_dim`."""

    def __init__(self, in_shape: tuple[int, ...], out_dim: int, hidden: int = 128, layers: int = 2):
        super().__init__()
        dims = [math.prod(in_shape)] + [hidden] * (layers - 1) + [out_dim]
        blocks: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(dims):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*blocks)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNNEncoder(nn.Module):
    """(C, H, W) input -> two conv blocks -> global average pool -> linear to `out_dim`."""

    def __init__(self, in_shape: tuple[int, ...], out_dim: int, channels: int = 32):
        super().__init__()
        c = in_shape[0]
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels * 2, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels * 2, out_dim),
            nn.ReLU(),
        )
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_encoder(
    in_shape: tuple[int, ...],
    out_dim: int,
    hidden: int,
    encoder: str | dict | None = None,
    pretrained: str | None = None,
    modality: str | None = None,
) -> nn.Module:
    """MLP for vectors (ndim 1), CNN for (C, H, W) inputs, unless `encoder` names one.

    `encoder` is what a dataset asks for in `info["encoders"][modality]`: a name ("mlp",
    "cnn", or a backbone of `mmbalance.models.backbones`: "resnet18", "resnet50", "bert",
    "i3d", ...) or a dict `{"name": ..., **options}` (e.g. input normalisation, vocab size).
    `pretrained` is a local checkpoint path; backbones without one start from random init.
    """
    if encoder is None:
        name, options = ("cnn" if len(in_shape) == 3 else "mlp"), {}
    elif isinstance(encoder, str):
        name, options = encoder, {}
    else:
        options = dict(encoder)
        name = options.pop("name")
    if name in ("mlp", "cnn"):
        if options:
            raise ConfigError(f"encoder {name!r}: unknown option(s) {sorted(options)}")
        enc: nn.Module = (
            CNNEncoder(in_shape, out_dim, channels=max(8, hidden // 4))
            if name == "cnn"
            else MLPEncoder(in_shape, out_dim, hidden=hidden)
        )
        if pretrained is not None:
            from mmbalance.models.backbones import load_pretrained

            load_pretrained(enc, pretrained)
        return enc
    from mmbalance.models.backbones import build_backbone

    return build_backbone(name, in_shape, out_dim, pretrained=pretrained, modality=modality,
                          **options)
