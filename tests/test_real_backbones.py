"""The papers' backbones at tiny input sizes on CPU, and loading local pretrained weights."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from torch import nn

from mmbalance.errors import ConfigError, DataError
from mmbalance.models.backbones import (
    BertTrunk,
    Encoder,
    I3DTrunk,
    build_backbone,
    load_pretrained,
    resnet18,
    resnet50,
)
from mmbalance.models.encoders import CNNEncoder, MLPEncoder, build_encoder
from mmbalance.models.multimodal import MultimodalModel


def one_step(enc: nn.Module, x: torch.Tensor, classes: int = 3) -> float:
    """One SGD step of encoder + linear head; checks the encoder's weights moved."""
    torch.manual_seed(0)
    head = nn.Linear(enc.out_dim, classes)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    before = [p.detach().clone() for p in enc.parameters()]
    y = torch.arange(x.shape[0]) % classes
    loss = nn.functional.cross_entropy(head(enc(x)), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    moved = sum(not torch.equal(a, b) for a, b in zip(before, enc.parameters()))
    assert moved == len(before)  # every parameter of the backbone got a gradient
    return float(loss.detach())


@pytest.mark.parametrize(
    ("name", "shape", "dtype"),
    [
        ("resnet18", (1, 40, 12), torch.float32),  # a spectrogram (1, F, T)
        ("resnet18", (3, 2, 16, 16), torch.uint8),  # frames (C, T, H, W), uint8 on disk
        ("resnet50", (3, 32, 32), torch.uint8),
        ("bert-tiny", (12,), torch.int64),
        ("i3d", (2, 8, 16, 16), torch.float16),  # flow is float16 on disk
    ],
)
def test_one_training_step_of_each_backbone(name, shape, dtype):
    opts = {"vocab_size": 50} if name.startswith("bert") else {}
    if dtype == torch.uint8:
        opts.update(scale=1 / 255, mean=[0.5] * shape[0], std=[0.25] * shape[0])
    enc = build_backbone(name, shape, out_dim=8, **opts)
    assert isinstance(enc, Encoder) and enc.out_dim == 8
    if dtype == torch.int64:
        x = torch.randint(1, 50, (4, *shape))
        x[:, 8:] = 0  # padding
    elif dtype == torch.uint8:
        x = torch.randint(0, 256, (4, *shape), dtype=torch.uint8)
    else:
        x = torch.randn(4, *shape).to(dtype)
    out = enc(x)
    assert out.shape == (4, 8) and out.dtype == torch.float32
    one_step(enc, x)


def test_trunks_have_the_checkpoint_names_and_sizes():
    with torch.device("meta"):  # shapes and names only: no memory, no initialisation cost
        r18, r50, bert = resnet18(), resnet50(), BertTrunk()
    assert sum(p.numel() for p in r18.parameters()) == 11_176_512  # torchvision's, minus fc
    assert sum(p.numel() for p in r50.parameters()) == 23_508_032
    assert {"conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.running_var"} <= set(
        r18.state_dict())
    assert "layer3.5.conv3.weight" in r50.state_dict()
    i3d = I3DTrunk(3)
    assert i3d.out_dim == 1024
    assert {"Conv3d_1a_7x7.conv3d.weight", "Mixed_3b.b1b.bn.running_mean",
            "Mixed_5c.b3b.conv3d.weight"} <= set(i3d.state_dict())
    # BERT-base: 110M parameters with the pooler, which we leave out
    assert sum(p.numel() for p in bert.parameters()) == 108_891_648
    assert {"embeddings.word_embeddings.weight", "encoder.layer.11.attention.self.query.weight",
            "encoder.layer.0.attention.output.LayerNorm.bias",
            "encoder.layer.3.output.dense.weight"} <= set(bert.state_dict())


def test_bert_ignores_padding_and_frames_are_averaged():
    torch.manual_seed(0)
    bert = build_backbone("bert-tiny", (10,), 128, vocab_size=30).eval()
    ids = torch.tensor([[2, 5, 6, 3, 0, 0, 0, 0, 0, 0]])
    longer = ids.clone()
    longer[0, 6:] = 0
    assert torch.allclose(bert(ids), bert(longer[:, :7]), atol=1e-5)
    torch.manual_seed(0)
    enc = build_backbone("resnet18", (3, 2, 16, 16), 512).eval()
    x = torch.randn(1, 3, 2, 16, 16)
    per_frame = [enc.trunk(x[:, :, t]).mean(dim=(-2, -1)) for t in range(2)]
    assert torch.allclose(enc(x), (per_frame[0] + per_frame[1]) / 2, atol=1e-5)


def test_pretrained_roundtrip_torch_and_safetensors(tmp_path):
    torch.manual_seed(1)
    src = build_backbone("resnet18", (3, 16, 16), 8).eval()
    ckpt = {f"module.{k}": v for k, v in src.trunk.state_dict().items()}
    ckpt["fc.weight"] = torch.zeros(1000, 512)  # a classifier head, ignored
    torch.save({"state_dict": ckpt}, tmp_path / "r18.pth")
    dst = build_backbone("resnet18", (3, 16, 16), 8, pretrained=tmp_path / "r18.pth").eval()
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(src.trunk(x), dst.trunk(x))
    from safetensors.torch import save_file  # the media extra: installed by the set-up

    save_file({k: v.contiguous() for k, v in src.trunk.state_dict().items()},
                          str(tmp_path / "model.safetensors"))
    dst2 = build_encoder((3, 16, 16), 8, 64, "resnet18", str(tmp_path)).eval()  # a folder
    assert torch.allclose(src.trunk(x), dst2.trunk(x))


def test_hugging_face_style_bert_folder(tmp_path):
    cfg = {"vocab_size": 40, "num_hidden_layers": 1, "hidden_size": 32,
           "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 16}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.manual_seed(2)
    src = BertTrunk(vocab_size=40, layers=1, hidden=32, heads=2, intermediate=64,
                    max_positions=16).eval()
    sd = {}
    for k, v in src.state_dict().items():  # BertForPreTraining naming, old LayerNorm names
        k = "bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma")
        sd[k.replace("LayerNorm.bias", "LayerNorm.beta")] = v
    sd["bert.pooler.dense.weight"] = torch.zeros(32, 32)
    sd["cls.predictions.bias"] = torch.zeros(40)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    enc = build_backbone("bert", (8,), 16, pretrained=tmp_path, vocab_size=40).eval()
    assert enc.trunk.out_dim == 32  # sizes from config.json, not BERT-base
    ids = torch.tensor([[2, 7, 9, 3, 0, 0, 0, 0]])
    assert torch.allclose(enc.trunk(ids), src(ids), atol=1e-6)
    with pytest.raises(ConfigError, match="tokenizer has 99 ids"):
        build_backbone("bert", (8,), 16, pretrained=tmp_path, vocab_size=99)


def test_mismatched_checkpoints_are_named(tmp_path):
    sd = resnet18().state_dict()
    sd.pop("layer1.0.conv1.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["layer4.1.bn2.weight"] = torch.zeros(7)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(DataError) as err:
        build_backbone("resnet18", (3, 16, 16), 8, pretrained=tmp_path / "bad.pt")
    msg = str(err.value)
    assert "bad.pt" in msg and "missing: layer1.0.conv1.weight" in msg
    assert "unexpected: extra.weight" in msg and "layer4.1.bn2.weight (7,) vs (512,)" in msg
    torch.save({"net": nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # a module, not tensors
    with pytest.raises(DataError, match="tensors-only"):
        build_backbone("resnet18", (3, 16, 16), 8, pretrained=tmp_path / "pickled.pt")
    with pytest.raises(DataError, match="not found"):
        build_backbone("resnet18", (3, 16, 16), 8, pretrained=tmp_path / "nope.pt")


def test_rgb_weights_adapt_to_fewer_input_channels(tmp_path):
    torch.manual_seed(3)
    rgb = resnet18(3)
    torch.save(rgb.state_dict(), tmp_path / "rgb.pt")
    spec = build_backbone("resnet18", (1, 32, 8), 8, pretrained=tmp_path / "rgb.pt")
    w = spec.trunk.conv1.weight
    assert w.shape == (64, 1, 7, 7)
    assert torch.allclose(w, rgb.conv1.weight.mean(1, keepdim=True))
    i3d = I3DTrunk(3)
    torch.save(i3d.state_dict(), tmp_path / "i3d.pt")
    depth = build_backbone("i3d", (1, 8, 16, 16), 8, pretrained=tmp_path / "i3d.pt")
    assert depth.trunk.Conv3d_1a_7x7.conv3d.weight.shape[1] == 1


def test_random_init_is_announced(caplog):
    with caplog.at_level(logging.WARNING, logger="mmbalance.models.backbones"):
        build_encoder((3, 16, 16), 8, 64, "resnet18", modality="visual")
    assert "resnet18 encoder for 'visual' starts from random initialisation" in caplog.text


def test_build_encoder_keeps_todays_defaults_and_names_errors():
    assert isinstance(build_encoder((5,), 8, 16), MLPEncoder)
    assert isinstance(build_encoder((1, 8, 8), 8, 16), CNNEncoder)
    assert isinstance(build_encoder((1, 8, 8), 8, 16, "mlp"), MLPEncoder)
    assert isinstance(build_encoder((5,), 8, 16, {"name": "mlp"}), MLPEncoder)
    with pytest.raises(ConfigError, match="unknown backbone 'vgg'"):
        build_encoder((3, 8, 8), 8, 16, "vgg")
    with pytest.raises(ConfigError, match=r"needs \(C, T, H, W\)"):
        build_encoder((3, 8, 8), 8, 16, "i3d")
    with pytest.raises(ConfigError, match="unknown option"):
        build_encoder((3, 8, 8), 8, 16, {"name": "resnet18", "depth": 3})


def test_multimodal_model_takes_the_datasets_encoders():
    shapes = {"a": (1, 20, 6), "b": (6,)}
    model = MultimodalModel(shapes, 3, feature_dim=8, hidden=16,
                            encoders={"a": "resnet18"})
    assert isinstance(model.encoders["a"], Encoder) and isinstance(model.encoders["b"], MLPEncoder)
    mm, uni = model({"a": torch.randn(2, 1, 20, 6), "b": torch.randn(2, 6)})
    assert mm.shape == (2, 3) and set(uni) == {"a", "b"}
    plain = MultimodalModel(shapes, 3, feature_dim=8, hidden=16)
    assert isinstance(plain.encoders["a"], CNNEncoder)  # today's behaviour without encoders
    with pytest.raises(ConfigError, match="unknown modalities"):
        MultimodalModel(shapes, 3, encoders={"c": "mlp"})
    assert np.isfinite(mm.detach().numpy()).all()


def test_load_pretrained_into_a_plain_encoder(tmp_path):
    torch.manual_seed(4)
    src = CNNEncoder((1, 8, 8), 4)
    torch.save(src.state_dict(), tmp_path / "cnn.pt")
    dst = load_pretrained(CNNEncoder((1, 8, 8), 4), tmp_path / "cnn.pt")
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(src(x), dst(x))
    via_build = build_encoder((1, 8, 8), 4, 128, "cnn", str(tmp_path / "cnn.pt"))  # 32 ch
    assert torch.equal(src(x), via_build(x))
    with pytest.raises(DataError, match="shape mismatch"):
        build_encoder((1, 8, 8), 5, 128, "cnn", str(tmp_path / "cnn.pt"))


def test_step_cost_is_measured_on_a_copy():
    import time

    from mmbalance.models.cost import seconds_per_sample

    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn, self.lin = nn.BatchNorm1d(4), nn.Linear(4, 2)

        def forward(self, x):
            time.sleep(0.03 * len(x["a"]))  # a known cost per sample
            h = self.bn(x["a"])
            return self.lin(nn.functional.dropout(h, 0.5)), {"a": h.sum()}

    torch.manual_seed(0)
    model = Slow().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {"a": torch.randn(3, 4)}
    rng = torch.get_rng_state()
    per = seconds_per_sample(model, batch)
    assert 0.03 <= per < 0.5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats
    assert all(p.grad is None for p in model.parameters()) and not model.training
    assert torch.equal(torch.get_rng_state(), rng)  # the run's random stream is untouched
