"""The papers' backbones in plain PyTorch: ResNet18/50, a BERT text encoder, I3D.

Every backbone is wrapped as an `Encoder`: an input step (uint8 pixels to float, per-channel
normalisation; token ids to long), the trunk, global pooling to the trunk's native width,
and a linear projection to `out_dim` (identity when the widths agree). The trunks use the
parameter names of the checkpoints users already have, so `load_pretrained` reads them as
they are:

- `resnet18`, `resnet50`: torchvision's names (`conv1`, `layer1.0.bn1`, ...; `fc.*` ignored).
  Input `(C, H, W)` (a spectrogram is `(1, F, T)`) or frames `(C, T, H, W)`: the frames go
  through the 2D trunk one by one and the feature maps are averaged over time and space, as
  the OGM-GE/BSS visual stream does.
- `bert`: Hugging Face `BertModel` names (`embeddings.word_embeddings`,
  `encoder.layer.0.attention.self.query`, ...), written here rather than imported from
  `transformers` so that the project needs no extra dependency and the BERT checkpoints
  users have (a folder with `config.json` and `model.safetensors` or `pytorch_model.bin`)
  still load. Input: token ids `(L,)`, padding id 0; the feature is the `[CLS]` position of
  the last layer (the Sarcasm code's `last_hidden_state[:, 0]`). Sizes: `bert` (= BERT-base),
  or the BERT miniatures `bert-medium`, `bert-small`, `bert-mini`, `bert-tiny`; a
  pretrained folder's `config.json` overrides them.
- `i3d`: Inception-v1 I3D with the module names of the widely used PyTorch port
  (`Conv3d_1a_7x7.conv3d`, `Mixed_3b.b1b.bn`, ...; `logits.*` ignored), TF "same" padding;
  input `(C, T, H, W)`, features averaged over time and space (1024).

Weights never come from a hub: `pretrained` is a local path. Without one, the encoder starts
from random initialisation and a warning says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from mmbalance.errors import ConfigError, DataError

log = logging.getLogger(__name__)

BACKBONES = ("resnet18", "resnet50", "bert", "bert-base", "bert-medium", "bert-small",
             "bert-mini", "bert-tiny", "i3d")

# ----------------------------------------------------------------------------- input step


class InputNorm(nn.Module):
    """`x.float() * scale`, then `(x - mean) / std` per channel (dim 1 of the batch).

    Frames are stored as uint8 on disk (4x smaller than float32); the encoder, which runs on
    the training device, turns them into the floats the trunk was trained on.
    """

    def __init__(self, scale: float = 1.0, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None):
        super().__init__()
        self.scale = float(scale)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32) if mean else None,
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32) if std else None,
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.scale != 1.0:
            x = x * self.scale
        if self.mean is not None:
            view = (1, -1) + (1,) * (x.ndim - 2)
            x = x - self.mean.view(view)
            if self.std is not None:
                x = x / self.std.view(view)
        return x


# ----------------------------------------------------------------------------------- ResNet


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)  # stride on the 3x3 (ResNet v1.5)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class ResNetTrunk(nn.Module):
    """ResNet up to the last stage; returns the feature map `(B, 512·expansion, h, w)`."""

    first_conv = "conv1.weight"
    ignore_prefixes = ("fc.",)

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: Sequence[int],
                 in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stride = 1 if i == 1 else 2
            down = None
            if stride != 1 or cin != width * block.expansion:
                down = nn.Sequential(nn.Conv2d(cin, width * block.expansion, 1, stride=stride,
                                               bias=False),
                                     nn.BatchNorm2d(width * block.expansion))
            blocks = [block(cin, width, stride, down)]
            cin = width * block.expansion
            blocks += [block(cin, width) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.out_dim = cin
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(mod, nn.BatchNorm2d):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet18(in_channels: int = 3) -> ResNetTrunk:
    return ResNetTrunk(BasicBlock, (2, 2, 2, 2), in_channels)


def resnet50(in_channels: int = 3) -> ResNetTrunk:
    return ResNetTrunk(Bottleneck, (3, 4, 6, 3), in_channels)


# ------------------------------------------------------------------------------------- I3D


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (front, back) for one dimension."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    pads: list[int] = []
    for dim in (4, 3, 2):  # F.pad lists the last dimension first
        pads += _same_pad(x.shape[dim], kernel[dim - 2], stride[dim - 2])
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d (eps 1e-3, momentum 0.01) + ReLU, 'same' padding."""

    def __init__(self, cin: int, cout: int, kernel: Sequence[int] = (1, 1, 1),
                 stride: Sequence[int] = (1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, stride=self.stride, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv3d(_pad_same(x, self.kernel, self.stride))))


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel: Sequence[int], stride: Sequence[int]):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches (1x1; 1x1-3x3; 1x1-3x3; pool-1x1) concatenated on channels."""

    def __init__(self, cin: int, widths: Sequence[int]):
        super().__init__()
        self.b0 = Unit3D(cin, widths[0])
        self.b1a = Unit3D(cin, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(cin, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, widths[5])
        self.out_dim = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


_I3D_MIXED = {  # name: branch widths (b0, b1a, b1b, b2a, b2b, b3b), from the I3D paper
    "Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class I3DTrunk(nn.Module):
    """Inception-v1 I3D up to Mixed_5c; returns the feature map `(B, 1024, t, h, w)`."""

    first_conv = "Conv3d_1a_7x7.conv3d.weight"
    ignore_prefixes = ("logits.",)

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        cin = 192
        for name, widths in _I3D_MIXED.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionBlock(cin, widths)
            setattr(self, name, block)
            cin = block.out_dim
        self.out_dim = cin
        self.order = list(self._modules)  # registration order is the forward order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order:
            x = self._modules[name](x)
        return x


# ------------------------------------------------------------------------------------ BERT

BERT_SIZES = {  # layers, hidden, heads (intermediate = 4 hidden): BERT-base and the miniatures
    "bert": (12, 768, 12), "bert-base": (12, 768, 12), "bert-medium": (8, 512, 8),
    "bert-small": (4, 512, 8), "bert-mini": (4, 256, 4), "bert-tiny": (2, 128, 2),
}


class BertEmbeddings(nn.Module):
    def __init__(self, vocab: int, hidden: int, max_pos: int, type_vocab: int, dropout: float,
                 pad_id: int = 0):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden, padding_idx=pad_id)
        self.position_embeddings = nn.Embedding(max_pos, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None]
        x = x + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, h // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :],
                                             dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, n, h)


class BertDenseNorm(nn.Module):
    """`LayerNorm(dropout(dense(x)) + residual)`: BERT's two "output" sub-layers."""

    def __init__(self, cin: int, hidden: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(cin, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.self = BertSelfAttention(hidden, heads, dropout)
        self.output = BertDenseNorm(hidden, hidden, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.dense = nn.Linear(hidden, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, dropout: float):
        super().__init__()
        self.attention = BertAttention(hidden, heads, dropout)
        self.intermediate = BertIntermediate(hidden, inner)
        self.output = BertDenseNorm(inner, hidden, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoderStack(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, inner: int, dropout: float):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(hidden, heads, inner, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertTrunk(nn.Module):
    """BERT encoder; returns the last layer's `[CLS]` vector `(B, hidden)`."""

    first_conv = ""
    ignore_prefixes = ("pooler.", "cls.", "embeddings.position_ids")

    def __init__(self, vocab_size: int = 30522, layers: int = 12, hidden: int = 768,
                 heads: int = 12, intermediate: int | None = None, max_positions: int = 512,
                 type_vocab_size: int = 2, dropout: float = 0.1, pad_id: int = 0):
        super().__init__()
        if hidden % heads:
            raise ConfigError(f"bert: hidden size {hidden} is not divisible by {heads} heads")
        self.pad_id = pad_id
        self.embeddings = BertEmbeddings(vocab_size, hidden, max_positions, type_vocab_size,
                                         dropout, pad_id)
        self.encoder = BertEncoderStack(layers, hidden, heads, intermediate or 4 * hidden,
                                        dropout)
        self.out_dim = hidden
        self.max_positions = max_positions
        for mod in self.modules():  # BERT's initialisation: N(0, 0.02), LayerNorm 1/0
            if isinstance(mod, nn.Linear | nn.Embedding):
                nn.init.normal_(mod.weight, std=0.02)
                if isinstance(mod, nn.Linear):
                    nn.init.zeros_(mod.bias)
                elif mod.padding_idx is not None:
                    with torch.no_grad():
                        mod.weight[mod.padding_idx].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        if ids.shape[1] > self.max_positions:
            raise ConfigError(f"bert: {ids.shape[1]} tokens > {self.max_positions} positions")
        mask = ids != self.pad_id
        mask[:, 0] = True  # an all-padding row would otherwise attend to nothing (NaN)
        return self.encoder(self.embeddings(ids), mask)[:, 0]

    @staticmethod
    def adapt_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept `BertForPreTraining`-style keys (`bert.` prefix) and old `gamma`/`beta`."""
        out = {}
        for key, value in sd.items():
            key = key.removeprefix("bert.")
            key = key.replace("LayerNorm.gamma", "LayerNorm.weight")
            key = key.replace("LayerNorm.beta", "LayerNorm.bias")
            out[key] = value
        return out


def _bert_config_from(path: str | Path | None) -> dict:
    """Sizes from a Hugging Face `config.json` beside (or in) the pretrained path."""
    if path is None:
        return {}
    p = Path(path)
    cfg_path = p / "config.json" if p.is_dir() else p.with_name("config.json")
    if not cfg_path.is_file():
        return {}
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{cfg_path}: unreadable BERT config: {exc}") from exc
    keys = {"vocab_size": "vocab_size", "num_hidden_layers": "layers", "hidden_size": "hidden",
            "num_attention_heads": "heads", "intermediate_size": "intermediate",
            "max_position_embeddings": "max_positions", "type_vocab_size": "type_vocab_size"}
    return {ours: cfg[theirs] for theirs, ours in keys.items() if theirs in cfg}


# --------------------------------------------------------------------------------- encoder


class Encoder(nn.Module):
    """input step -> trunk -> global average pool -> projection to `out_dim`."""

    def __init__(self, name: str, trunk: nn.Module, out_dim: int, norm: nn.Module | None = None,
                 frames: bool = False):
        super().__init__()
        self.name = name
        self.norm = norm if norm is not None else nn.Identity()
        self.trunk = trunk
        self.frames = frames  # 2D trunk over (C, T, H, W) inputs: fold time into the batch
        native = trunk.out_dim
        self.proj = nn.Identity() if native == out_dim else nn.Linear(native, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self.frames:
            b, c, t = x.shape[:3]
            x = x.transpose(1, 2).reshape(b * t, c, *x.shape[3:])
            feat = self.trunk(x).mean(dim=(-2, -1)).view(b, t, -1).mean(1)
        else:
            feat = self.trunk(x)
            if feat.ndim > 2:
                feat = feat.flatten(2).mean(-1)
        return self.proj(feat)


def build_backbone(name: str, in_shape: tuple[int, ...], out_dim: int,
                   pretrained: str | Path | None = None, modality: str | None = None,
                   **options) -> Encoder:
    """The encoder `name` for one sample of shape `in_shape`, loading `pretrained` if given.

    Options: `scale`, `mean`, `std` (input step); for BERT `vocab_size`, `layers`, `hidden`,
    `heads`, `intermediate`, `max_positions`, `pad_id`.
    """
    what = f"{name} encoder" + (f" for '{modality}'" if modality else "")
    norm_opts = {k: options.pop(k) for k in ("scale", "mean", "std") if k in options}
    norm = InputNorm(**norm_opts)  # also casts uint8 frames / float16 flow to float32
    if name in ("resnet18", "resnet50"):
        if len(in_shape) not in (3, 4):
            raise ConfigError(f"{what}: needs (C, H, W) or (C, T, H, W) inputs, got {in_shape}")
        _no_options(what, options)
        trunk: nn.Module = (resnet18 if name == "resnet18" else resnet50)(in_shape[0])
        enc = Encoder(name, trunk, out_dim, norm, frames=len(in_shape) == 4)
    elif name == "i3d":
        if len(in_shape) != 4:
            raise ConfigError(f"{what}: needs (C, T, H, W) inputs, got {in_shape}")
        _no_options(what, options)
        enc = Encoder(name, I3DTrunk(in_shape[0]), out_dim, norm)
    elif name in BERT_SIZES:
        if len(in_shape) != 1:
            raise ConfigError(f"{what}: needs token ids (L,), got {in_shape}")
        layers, hidden, heads = BERT_SIZES[name]
        cfg = {"layers": layers, "hidden": hidden, "heads": heads, **options,
               **_bert_config_from(pretrained)}
        allowed = {"vocab_size", "layers", "hidden", "heads", "intermediate", "max_positions",
                   "type_vocab_size", "pad_id", "dropout"}
        _no_options(what, {k: v for k, v in cfg.items() if k not in allowed})
        if "vocab_size" in options and cfg.get("vocab_size") != options["vocab_size"]:
            raise ConfigError(f"{what}: the data's tokenizer has {options['vocab_size']} ids but "
                              f"the pretrained config has {cfg['vocab_size']}; prepare the "
                              "data with that model's vocab.txt")
        if norm_opts:
            _no_options(what, norm_opts)
        enc = Encoder(name, BertTrunk(**cfg), out_dim)
    else:
        raise ConfigError(f"encoder: unknown backbone {name!r}; allowed: "
                          f"{['mlp', 'cnn', *BACKBONES]}")
    if pretrained is not None:
        load_pretrained(enc, pretrained)
    else:
        log.warning("%s starts from random initialisation (no pretrained weights given)", what)
    return enc


def _no_options(what: str, options: dict) -> None:
    if options:
        raise ConfigError(f"{what}: unknown option(s) {sorted(options)}")


# ------------------------------------------------------------------------ pretrained weights


def _find_checkpoint(path: Path) -> Path:
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return path / name
        found = sorted(p for ext in ("*.safetensors", "*.pt", "*.pth", "*.bin")
                       for p in path.glob(ext))
        if len(found) != 1:
            raise DataError(f"{path}: expected one checkpoint file (model.safetensors, "
                            f"pytorch_model.bin, *.pt, *.pth) in the folder, found "
                            f"{[p.name for p in found]}")
        return found[0]
    if not path.is_file():
        raise DataError(f"{path}: pretrained weights not found")
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a checkpoint without running code from it (safetensors or weights_only)."""
    file = _find_checkpoint(Path(path))
    if file.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise DataError(f"{file}: reading .safetensors needs the 'safetensors' package "
                            "(pip install safetensors)") from None
        try:
            sd = load_file(str(file), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise DataError(f"{file}: unreadable safetensors file: {exc}") from exc
    else:
        try:
            sd = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors of many kinds: all mean "not tensors only"
            raise DataError(f"{file}: not a tensors-only checkpoint (torch.load with "
                            f"weights_only=True refused it): {exc}") from exc
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DataError(f"{file}: expected a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_pretrained(module: nn.Module, path: str | Path) -> nn.Module:
    """Load a local checkpoint into `module` (an `Encoder`'s trunk, or any module).

    Keys must match exactly, apart from the trunk's known classifier heads (ignored) and
    BatchNorm's `num_batches_tracked`. A first convolution with a different number of input
    channels (RGB weights for a depth or flow stream, or a spectrogram) is adapted by
    averaging over the checkpoint's channels, as is usual for I3D/ResNet inflation. Any
    other missing, unexpected or mis-shaped key is an error that names it.
    """
    target = module.trunk if isinstance(module, Encoder) else module
    file = _find_checkpoint(Path(path))
    sd = read_state_dict(file)
    adapt = getattr(target, "adapt_state_dict", None)
    if adapt is not None:
        sd = adapt(sd)
    ignore = tuple(getattr(target, "ignore_prefixes", ()))
    sd = {k: v for k, v in sd.items() if not k.startswith(ignore)}
    own = target.state_dict()
    first = getattr(target, "first_conv", "")
    adapted = ""
    if first and first in sd and first in own:
        w, want = sd[first], own[first]
        if w.shape != want.shape and w.shape[0] == want.shape[0] and w.shape[2:] == want.shape[2:]:
            sd[first] = w.mean(dim=1, keepdim=True).expand_as(want).clone()
            adapted = f"first convolution adapted from {w.shape[1]} to {want.shape[1]} channels"
            log.info("%s: %s", path, adapted)
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in sd
              if k in own and sd[k].shape != own[k].shape]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected),
                       ("shape mismatch", shapes)):
        if keys:
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            problems.append(f"{what}: {', '.join(keys[:5])}{more}")
    if problems:
        raise DataError(f"{path}: checkpoint does not fit the {type(target).__name__}: "
                        + "; ".join(problems))
    target.load_state_dict(sd, strict=False)
    log.info("%s: loaded %d tensors", path, len(sd))
    # what was loaded, for the run's log and config.json (`MultimodalModel.pretrained_from`)
    module.pretrained_from = {"file": str(file.resolve()), "tensors": len(sd),
                              **({"adapted": adapted} if adapted else {})}
    return module


