"""Unimodal encoders: an MLP for feature vectors and a small CNN for image-like inputs.

Datasets that name their backbones (ResNet, BERT, I3D) get them from `backbones.py`.

Every encoder takes the arrays as they are stored, whatever their dtype: the input step
(`backbones.InputNorm`, built here from the data's `scale`, `mean`, `std`) is where arrays
enter the model, once: uint8 pixels become floats (scaled and normalised as the data says),
float spectrograms and features pass as they are. Token ids (data that name a `vocab_size`)
go to an embedding, as long integers: `mlp` on text averages the embeddings of the non-padding
tokens, BERT reads them itself. The CNN takes one image `(C, H, W)` or frames `(C, T, H, W)`
(each frame through the same convolutions, features averaged over time).
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
            # in place: a linear layer's backward never reads its output, and a scoring
            # pass over a whole training set then writes each activation once, not twice
            blocks += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*blocks)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(_as_float(x))


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """Arrays given without an input step (no `scale` in the data's spec) still reach the
    float weights as float32: uint8 as 0..255, float16 flow widened."""
    return x if x.dtype == torch.float32 else x.float()


class TokenMLPEncoder(nn.Module):
    """Token ids (L,) -> mean embedding of the non-padding tokens -> an MLP to `out_dim`.

    An MLP on raw ids would read a word's id as a magnitude; the embedding is what any text
    encoder starts from."""

    def __init__(self, length: int, out_dim: int, vocab_size: int, pad_id: int = 0,
                 hidden: int = 128):
        super().__init__()
        self.pad_id = int(pad_id)
        self.embed = nn.Embedding(int(vocab_size), hidden, padding_idx=self.pad_id)
        self.mlp = MLPEncoder((hidden,), out_dim, hidden=hidden)
        self.out_dim = out_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        keep = (ids != self.pad_id).unsqueeze(-1).float()
        mean = (self.embed(ids) * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.mlp(mean)


class InputStep(nn.Module):
    """The data's input step (`InputNorm`: dtype, scale, normalisation), then `encoder`."""

    def __init__(self, norm: nn.Module, encoder: nn.Module):
        super().__init__()
        self.norm = norm
        self.encoder = encoder
        self.out_dim = encoder.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.norm(x))


class CNNEncoder(nn.Module):
    """(C, H, W) input -> two conv blocks -> global average pool -> linear to `out_dim`;
    frames (C, T, H, W) go through it one by one and their features are averaged."""

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
        x = _as_float(x)
        if x.ndim == 5:  # (B, C, T, H, W): time folded into the batch, as the ResNets do
            b, c, t = x.shape[:3]
            feat = self.net(x.transpose(1, 2).reshape(b * t, c, *x.shape[3:]))
            return feat.view(b, t, -1).mean(1)
        return self.net(x)


INPUT_OPTIONS = ("scale", "mean", "std")
TOKEN_OPTIONS = ("vocab_size", "pad_id")


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
        what = f"encoder {name!r}" + (f" for '{modality}'" if modality else "")
        norm_opts = {k: options.pop(k) for k in INPUT_OPTIONS if k in options}
        token_opts = {k: options.pop(k) for k in TOKEN_OPTIONS if k in options}
        if options:
            raise ConfigError(f"{what}: unknown option(s) {sorted(options)}")
        enc: nn.Module
        if "vocab_size" in token_opts:  # token ids: embedded, never read as numbers
            if name == "cnn" or len(in_shape) != 1 or norm_opts:
                raise ConfigError(f"{what}: token ids {in_shape} need an embedding: use "
                                  "encoder mlp or a BERT (bert, bert-tiny, ...)")
            enc = TokenMLPEncoder(in_shape[0], out_dim, token_opts["vocab_size"],
                                  token_opts.get("pad_id", 0), hidden=hidden)
        elif name == "cnn":
            if len(in_shape) not in (3, 4):
                raise ConfigError(f"{what}: needs (C, H, W) or (C, T, H, W) inputs, got "
                                  f"{in_shape}")
            enc = CNNEncoder(in_shape, out_dim, channels=max(8, hidden // 4))
        else:
            enc = MLPEncoder(in_shape, out_dim, hidden=hidden)
        if norm_opts:  # stored pixels (uint8) become the floats the data asks for
            from mmbalance.models.backbones import InputNorm

            enc = InputStep(InputNorm(**norm_opts), enc)
        if pretrained is not None:
            from mmbalance.models.backbones import load_pretrained

            inner = enc.encoder if isinstance(enc, InputStep) else enc
            load_pretrained(inner, pretrained)
            enc.pretrained_from = inner.pretrained_from  # what config.json records
        return enc
    from mmbalance.models.backbones import build_backbone

    return build_backbone(name, in_shape, out_dim, pretrained=pretrained, modality=modality,
                          **options)
