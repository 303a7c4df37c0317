"""Issue 21, training: every documented encoder trains on every kind of array it is offered
for (uint8 images and frames, float spectrograms, token ids) and refuses the others in one
line; a run that fails before its first step leaves no folder, a later failure says what
its folder keeps; config.json holds every TrainConfig field and every method option, and
rebuilds the run to the same numbers."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from raw_layouts import make_twitter

from mmbalance.cli import main
from mmbalance.data.real import images, prepare_dataset
from mmbalance.errors import ConfigError
from mmbalance.models.backbones import BACKBONES
from mmbalance.models.multimodal import MultimodalModel
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.methods import METHOD_CLASSES

SMALL = "synthetic:n_train=200,n_val=100,n_test=100,bayes_samples=500"
PIXELS = {"scale": 1 / 255, "mean": images.IMAGENET_MEAN, "std": images.IMAGENET_STD}
# each kind of array a prepared dataset stores, with the input options its spec carries
KINDS = {
    "image": ((3, 16, 16), np.uint8, PIXELS),
    "frames": ((3, 2, 16, 16), np.uint8, PIXELS),
    "spectrogram": ((1, 33, 9), np.float32, {}),
    "token ids": ((8,), np.int64, {"vocab_size": 64, "pad_id": 0}),
}
VISUAL = {"image", "frames", "spectrogram"}
OFFERED = {"mlp": set(KINDS), "cnn": VISUAL, "resnet18": VISUAL, "resnet50": VISUAL,
           "i3d": {"frames"}, **{b: {"token ids"} for b in BACKBONES if b.startswith("bert")}}


def test_the_documented_encoder_list_is_the_tested_one():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `encoder_<modality>"))
    assert set(re.findall(r"`([a-z0-9-]+)`", row)) == set(OFFERED)


def _array(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    shape, dtype, _ = KINDS[kind]
    if dtype == np.uint8:
        return rng.integers(0, 256, (n, *shape)).astype(np.uint8)
    if dtype == np.int64:
        ids = rng.integers(1, 64, (n, *shape))
        ids[:, -2:] = 0  # padding
        return ids.astype(np.int64)
    return rng.normal(-3, 2, (n, *shape)).astype(np.float32)  # log-magnitude scale


@pytest.mark.parametrize("name", sorted(OFFERED))
def test_every_encoder_trains_a_step_on_every_array_it_is_offered_for(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for kind, (shape, _, spec) in KINDS.items():
        encoders = {"x": {**spec, "name": name}}
        if kind not in OFFERED[name]:  # refused in one line that says what it needs
            with pytest.raises(ConfigError, match="need"):
                MultimodalModel({"x": shape}, 3, feature_dim=8, hidden=16, encoders=encoders)
            continue
        model = MultimodalModel({"x": shape}, 3, feature_dim=8, hidden=16, encoders=encoders)
        x = {"x": torch.from_numpy(_array(kind, 2, rng))}  # as stored: uint8, float, int64
        before = [p.detach().clone() for p in model.encoders["x"].parameters()]
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
        assert torch.isfinite(loss), (name, kind)
        loss.backward()
        opt.step()
        after = list(model.encoders["x"].parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, after)), (name, kind)


def test_uint8_pixels_enter_mlp_and_cnn_scaled_and_normalised():
    from mmbalance.models.encoders import build_encoder

    enc = build_encoder((3, 4, 4), 8, 16, {"name": "cnn", **PIXELS})
    white = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    expected = (1 - torch.tensor(images.IMAGENET_MEAN)) / torch.tensor(images.IMAGENET_STD)
    assert torch.allclose(enc.norm(white)[0, :, 0, 0], expected)
    assert torch.allclose(enc(white), enc.encoder(enc.norm(white)))


# ------------------------------------------------------------------- the train command


@pytest.fixture(scope="module")
def twitter(tmp_path_factory):
    raw = make_twitter(tmp_path_factory.mktemp("tw_raw") / "raw")
    out = tmp_path_factory.mktemp("tw") / "prepared"
    prepare_dataset("twitter2015", raw, out, {"image_size": 16, "text_length": 8},
                    progress=False)
    return out


TRAIN_FAST = ["--epochs", "1", "--batch-size", "4", "--device", "cpu", "--no-progress",
              "--set", "feature_dim=8", "--set", "hidden=16", "--set", "eval_batch_size=8"]


@pytest.mark.parametrize("image", ["cnn", "mlp"])
def test_train_with_cnn_or_mlp_on_images_and_text(twitter, image, tmp_path, capsys):
    out = tmp_path / "run"
    data = f"twitter2015:{twitter},encoder_image={image},encoder_text=mlp"
    assert main(["train", "--data", data, *TRAIN_FAST, "--out", str(out)]) == 0
    assert (out / "metrics.json").exists() and (out / "model.pt").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_a_run_that_fails_before_its_first_step_leaves_no_folder(tmp_path, monkeypatch,
                                                                 capsys):
    from mmbalance.trainers.trainer import Trainer

    def broken(self, *a, **k):
        raise RuntimeError("a bug in the first step")

    monkeypatch.setattr(Trainer, "step", broken)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        main(["train", "--data", SMALL, "--no-progress", "--out", str(out)])
    assert not out.exists()  # the same --out works for the corrected rerun
    made = tmp_path / "made"
    made.mkdir()  # a folder the user made stays, empty
    with pytest.raises(RuntimeError):
        main(["train", "--data", SMALL, "--no-progress", "--out", str(made)])
    assert made.is_dir() and not any(made.iterdir())
    # compare: no run finished, no folder
    with pytest.raises(RuntimeError):
        main(["compare", "--data", SMALL, "--grid", "joint/uniform", "--seeds", "1",
              "--parallel", "none", "--no-progress", "--out", str(tmp_path / "cmp")])
    assert not (tmp_path / "cmp").exists()


def test_a_run_that_fails_later_keeps_its_folder_and_says_so(tmp_path, monkeypatch, capsys):
    from mmbalance.trainers.trainer import Trainer

    real, calls = Trainer.step, []

    def stops(self, *a, **k):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Trainer, "step", stops)
    out = tmp_path / "run"
    assert main(["train", "--data", SMALL, "--no-progress", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"{out} keeps the run's logs up to step 4" in err and f"rm -r {out}" in err
    assert (out / "config.json").exists() and (out / "steps.parquet").exists()
    assert not (out / "metrics.json").exists()


# --------------------------------------------------------------------------- config.json


def test_config_json_holds_every_field_and_option_and_rebuilds_the_run(tmp_path):
    from mmbalance.data.registry import load_dataset
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.trainer import Trainer

    out = tmp_path / "run"
    assert main(["train", "--data", SMALL, "--method", "mla", "--epochs", "2", "--no-progress",
                 "--set", "mm_loss_weight=0.3", "--set", "inference=unimodal",
                 "--set", "mla_fusion=equal", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    train, unused = config["train"], config["unused_method_options"]
    general = {f.name for f in fields(TrainConfig)} - {"options"}
    mla = {f.name for f in fields(METHOD_CLASSES["mla"].Options)}
    others = {f.name for cls in METHOD_CLASSES.values() for f in fields(cls.Options)} - mla
    assert general | mla == set(train) and set(unused) == others
    assert train["mla_fusion"] == "equal" and train["method"] == "mla"
    # what the run was given but MLA ignores, as given; the rest at their defaults
    assert unused["mm_loss_weight"] == 0.3 and unused["inference"] == "unimodal"
    assert unused["uni_loss_weights"] == 1.0 and unused["ogm_alpha"] == 0.3

    rebuilt = TrainConfig.from_dict({**train, **unused})
    assert rebuilt.to_dict() == train
    trainer = Trainer(load_dataset(config["data"]), rebuilt, make_sampler(config["sampler"]))
    final = trainer.fit()
    metrics = json.loads((out / "metrics.json").read_text())
    assert final["test"] == pytest.approx(metrics["test"], abs=0, rel=0)
    assert final["val"] == pytest.approx(metrics["val"], abs=0, rel=0)


def test_compare_runs_record_their_unused_options_too(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--data", SMALL, "--grid", "mla/uniform", "--seeds", "1",
                 "--epochs", "1", "--parallel", "none", "--no-progress",
                 "--set", "mm_loss_weight=0.25", "--out", str(out)]) == 0
    run = next((out / "runs").iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["unused_method_options"]["mm_loss_weight"] == 0.25
    assert "mla_fusion" in config["train"]
