"""Real-dataset preparers and loaders on tiny raw folders generated in the authors' layouts.

Every fixture writes real files (`raw_layouts.py`: WAVs with the `wave` module, JPEG/PNG
frames with Pillow, CSV/TSV/JSON annotations, NVGesture `.lst` files, frame folders, `.npy`
videos, optical flow `.npy` of shape (H, W, 2, T), an `.avi` written with PyAV) and runs the
real pipeline at tiny sizes.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from raw_layouts import (
    make_cremad,
    make_ks,
    make_nvgesture,
    make_sarcasm,
    make_twitter,
    write_image,
    write_wav,
)

from mmbalance.cli import main
from mmbalance.data.real import audio, images, load_real, prepare_dataset
from mmbalance.data.real.cremad import CLASSES as CREMAD_CLASSES
from mmbalance.data.real.defaults import dataset_defaults
from mmbalance.data.real.preparer import stratified_carve
from mmbalance.data.real.reader import open_npy
from mmbalance.data.real.text import (
    HashingTokenizer,
    WordPieceTokenizer,
    english_words,
    pre_caption,
)
from mmbalance.data.registry import load_dataset
from mmbalance.errors import ConfigError, DataError
from mmbalance.trainers.config import TrainConfig

TINY_AV = {"sample_rate": 8000, "audio_seconds": 0.25, "image_size": 16}
SPEC_SHAPE = (1, 257, 1 + 2000 // 353)


NV_TINY = {"frames": 8, "flow_frames": 6, "image_size": 16}


@pytest.fixture(scope="module")
def cremad(tmp_path_factory):
    raw = make_cremad(tmp_path_factory.mktemp("cremad_raw"))
    out = tmp_path_factory.mktemp("cremad") / "prepared"
    meta = prepare_dataset("cremad", raw, out, TINY_AV, progress=False)
    return raw, out, meta


@pytest.fixture(scope="module")
def nvgesture(tmp_path_factory):
    raw = make_nvgesture(tmp_path_factory.mktemp("nv_raw"), avi=True)
    out = tmp_path_factory.mktemp("nv") / "prepared"
    meta = prepare_dataset("nvgesture", raw, out, NV_TINY, progress=False)
    return raw, out, meta, True


# ---------------------------------------------------------------------------- helpers


def test_spectrogram_has_the_tone_in_its_bin_and_the_authors_shape(tmp_path):
    rate, n_fft = 22050, 512
    k = 40  # a tone exactly on bin 40
    write_wav(tmp_path / "a.wav", k * rate / n_fft, seconds=0.5, rate=16000)
    spec = audio.wav_spectrogram(tmp_path / "a.wav", rate, 1.0)
    assert spec.shape == audio.spectrogram_shape(rate, 1.0) == (1, 257, 1 + rate // 353)
    assert spec.dtype == np.float32
    assert int(np.argmax(spec[0].mean(1))) == k  # resampled 16 kHz -> 22050 Hz, same pitch
    assert spec.min() >= np.log(1e-7) - 1e-3


def test_wav_formats_and_tiling(tmp_path):
    write_wav(tmp_path / "u8.wav", 440, rate=8000, channels=2, width=1)
    write_wav(tmp_path / "i16.wav", 440, rate=8000)
    a, ra = audio.read_wav(tmp_path / "u8.wav")
    b, rb = audio.read_wav(tmp_path / "i16.wav")
    assert ra == rb == 8000 and a.ndim == b.ndim == 1
    np.testing.assert_allclose(a, b, atol=0.02)
    assert np.abs(b).max() == pytest.approx(0.5, abs=1e-3)
    np.testing.assert_array_equal(audio.tile_to(np.arange(3, dtype=np.float32), 7),
                                  [0, 1, 2, 0, 1, 2, 0])
    assert audio.tile_to(np.zeros(0, np.float32), 4).tolist() == [0, 0, 0, 0]


def test_frames_are_evenly_spaced_and_deterministic(tmp_path):
    assert images.evenly_spaced(10, 3) == [1, 5, 8]
    assert images.evenly_spaced(2, 3) == [0, 1, 1]
    assert images.evenly_spaced(7, 1) == [3]
    for f in range(5):
        write_image(tmp_path / "v" / f"{f}.jpg", 40 * f)
    frames = images.read_frames(tmp_path / "v", 2, 8)
    assert frames.shape == (3, 2, 8, 8) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[:, 0], images.read_image(tmp_path / "v" / "1.jpg", 8))
    assert images.temporal_window(80, 64) == (8, 64, 0)
    assert images.temporal_window(50, 64) == (0, 50, 7)


def test_text_cleaning_and_tokenizers(tmp_path):
    assert english_words("RT @u: it's 2 GOOD!! café") == "RT u it s GOOD"  # café: not ASCII
    assert pre_caption("Hello, World!  It's a-b/c", 4) == "hello world its a"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "un", "##aff", "##able", "!"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = WordPieceTokenizer.from_path(tmp_path)
    ids = tok.encode("Héllo unaffable world! zzz", 8)
    assert ids.tolist() == [2, 4, 6, 7, 8, 5, 9, 3]  # accents stripped, pieces, truncated
    assert tok.encode("hello", 5).tolist() == [2, 4, 3, 0, 0]
    assert tok.encode("qqq", 4).tolist() == [2, 1, 3, 0]
    h = HashingTokenizer(1000)
    a = h.encode("Hello world, hello!", 8)
    # [CLS] hello world , hello ! [SEP] [PAD]: punctuation is a token, as in BERT
    assert a[0] == h.cls_id and a[1] == a[4] and a[6] == h.sep_id and a[7] == 0
    assert (a[1:6] >= 4).all() and (a < 1000).all()
    assert h.encode("Hello world, hello!", 8).tolist() == a.tolist()
    with pytest.raises(DataError, match="vocab.txt"):
        WordPieceTokenizer.from_path(tmp_path / "missing" / "vocab.txt")


def test_val_carving_is_stratified_and_seeded():
    labels = np.repeat(np.arange(3), [10, 5, 2])
    mask = stratified_carve(labels, 0.2, seed=1)
    assert [int(mask[labels == c].sum()) for c in range(3)] == [2, 1, 1]
    np.testing.assert_array_equal(mask, stratified_carve(labels, 0.2, seed=1))
    assert not np.array_equal(mask, stratified_carve(labels, 0.2, seed=2))
    with pytest.raises(ConfigError, match="val_fraction"):
        stratified_carve(labels, 0.0, 0)


# ----------------------------------------------------------------------------- CREMA-D


def test_cremad_prepared_layout_shapes_labels_and_splits(cremad):
    raw, out, meta = cremad
    assert meta["counts"] == {"train": 12, "val": 6, "test": 6}  # one val clip per class
    assert meta["arrays"]["audio"] == {"shape": list(SPEC_SHAPE), "dtype": "float32"}
    assert meta["arrays"]["visual"] == {"shape": [3, 1, 16, 16], "dtype": "uint8"}
    ds = load_dataset(f"cremad:{out}")
    assert ds.modalities == ["audio", "visual"] and ds.num_classes == 6
    assert ds.input_shapes == {"audio": SPEC_SHAPE, "visual": (3, 1, 16, 16)}
    for split in ("train", "val", "test"):
        sp = ds.splits[split]
        assert isinstance(sp.x["audio"], np.memmap) and sp.y.dtype == np.int64
        assert sorted(set(sp.y.tolist())) == list(range(6))
    assert ds.info["encoders"]["audio"] == {"name": "resnet18"}
    assert ds.info["encoders"]["visual"]["name"] == "resnet18"
    import pandas as pd

    index = pd.read_parquet(out / "index.parquet")
    row = index[(index.split == "test")].iloc[2]
    clip = row["id"]
    assert row["class"] == CREMAD_CLASSES[row["label"]]
    expected = audio.wav_spectrogram(raw / "AudioWAV" / f"{clip}.wav", 8000, 0.25)
    np.testing.assert_array_equal(ds.splits["test"].x["audio"][row["row"]], expected)
    frames = images.read_frames(raw / "Image-01-FPS" / clip, 1, 16)
    np.testing.assert_array_equal(ds.splits["test"].x["visual"][row["row"]], frames)


def test_prepared_arrays_pickle_as_their_path(cremad):
    _, out, _ = cremad
    arr = open_npy(out / "train" / "audio.npy")
    blob = pickle.dumps(arr)
    assert len(blob) < 1000
    back = pickle.loads(blob)
    assert isinstance(back, np.memmap)
    np.testing.assert_array_equal(back, arr)
    part = arr[[0, 2]]
    assert type(part) is np.ndarray and len(pickle.dumps(part)) > part.nbytes


def test_interrupted_preparation_resumes_to_the_clean_result(cremad, tmp_path, monkeypatch):
    raw, clean_out, _ = cremad
    bad = raw / "AudioWAV" / "1030_IEO_FEA_HI.wav"  # a train clip in the middle of the list
    real = audio.wav_spectrogram

    def failing(path, *a):  # listing checks every file's content, so a failure mid-run
        if Path(path) == bad:  # is one the files cannot show (a disk error, say)
            raise DataError(f"{path}: unreadable WAV file: I/O error")
        return real(path, *a)

    out = tmp_path / "prep"
    with monkeypatch.context() as patch:
        patch.setattr(audio, "wav_spectrogram", failing)
        with pytest.raises(DataError, match=str(bad)):
            prepare_dataset("cremad", raw, out, TINY_AV, progress=False, flush_every=2)
    assert not (out / "meta.json").exists()
    done = sum(len(json.loads(line)["rows"]) for line in (out / "manifest.jsonl").open())
    assert 0 < done < 24
    with pytest.raises(DataError, match="unfinished"):
        load_real("cremad", out)
    calls = []
    monkeypatch.setattr(audio, "wav_spectrogram", lambda *a: calls.append(a[0]) or real(*a))
    prepare_dataset("cremad", raw, out, TINY_AV, progress=False)
    assert len(calls) == 24 - done  # only the rows the first run had not finished
    a, b = load_real("cremad", out), load_real("cremad", clean_out)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a.splits[split].y, b.splits[split].y)
        for m in a.modalities:
            np.testing.assert_array_equal(a.splits[split].x[m], b.splits[split].x[m])
    calls.clear()
    prepare_dataset("cremad", raw, out, TINY_AV, progress=False)  # finished: nothing to do
    assert calls == []


def test_missing_files_are_named_or_skipped(tmp_path):
    raw = make_cremad(tmp_path / "raw", per_class=2)
    missing = raw / "AudioWAV" / "1011_IEO_HAP_HI.wav"
    missing.unlink()
    with pytest.raises(DataError, match=str(missing)):
        prepare_dataset("cremad", raw, tmp_path / "out", TINY_AV, progress=False)
    assert not (tmp_path / "out").exists()  # the plan failed before anything was written
    meta = prepare_dataset("cremad", raw, tmp_path / "out", TINY_AV, progress=False,
                           skip_missing=True)
    assert sum(meta["counts"].values()) == 17 and len(meta["skipped"]) == 1
    assert "1011_IEO_HAP_HI" in meta["skipped"][0]
    (raw / "annotations" / "test.csv").unlink()
    with pytest.raises(DataError, match="test.csv: annotation file not found"):
        prepare_dataset("cremad", raw, tmp_path / "out2", TINY_AV, progress=False,
                        skip_missing=True)


def test_other_settings_never_mix_with_a_prepared_folder(cremad, tmp_path):
    raw, out, _ = cremad
    with pytest.raises(DataError, match="image_size: 16 before, 32 now"):
        prepare_dataset("cremad", raw, out, {**TINY_AV, "image_size": 32}, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        prepare_dataset("cremad", raw, tmp_path / "busy", TINY_AV, progress=False)
    with pytest.raises(ConfigError, match="unknown setting"):
        prepare_dataset("cremad", raw, tmp_path / "x", {"image_sise": 3}, progress=False)
    with pytest.raises(DataError, match="holds a prepared 'cremad'"):
        load_real("ks", out)


def test_prepare_command(cremad, tmp_path, capsys):
    raw, _, _ = cremad
    out = tmp_path / "cli"
    args = ["prepare", "cremad", "--root", str(raw), "--out", str(out), "--no-progress",
            "--set", "sample_rate=8000", "--set", "audio_seconds=0.25", "--set", "image_size=16"]
    assert main(args) == 0
    assert f"--data cremad:{out}" in capsys.readouterr().out
    assert main(["prepare", "cremad", "--root", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["prepare", "cremad", "--root", str(raw), "--out", str(tmp_path / "o"),
                 "--tokenizer", "v.txt"]) == 2
    assert "no text modality" in capsys.readouterr().err
    assert main(["prepare", "imagenet", "--root", str(raw), "--out", str(tmp_path / "o")]) == 2


def test_selector_options_and_errors(cremad, tmp_path):
    _, out, _ = cremad
    ds = load_dataset(f"cremad:path={out},encoder_visual=cnn,encoder_audio=resnet50")
    # cnn keeps the input step the uint8 frames need (the backbone's name is replaced)
    assert ds.info["encoders"] == {"audio": {"name": "resnet50"}, "visual": {
        "name": "cnn", "scale": 1 / 255, "mean": list(images.IMAGENET_MEAN),
        "std": list(images.IMAGENET_STD)}}
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"cremad:{out},pretrained_audio={tmp_path / 'none.pt'}")
    with pytest.raises(ConfigError, match="no modality 'text'"):
        load_dataset(f"cremad:{out},encoder_text=bert")
    with pytest.raises(ConfigError, match="needs the prepared folder"):
        load_dataset("cremad")
    with pytest.raises(DataError, match="not prepared"):
        load_dataset(f"ks:{tmp_path}")


# ------------------------------------------------------------------- the other datasets


def test_kinetics_sounds(tmp_path):
    raw = make_ks(tmp_path / "raw")
    meta = prepare_dataset("ks", raw, tmp_path / "out", {**TINY_AV, "frames": 3},
                           progress=False)
    assert meta["class_names"] == ["playing drums", "singing"]
    assert meta["counts"] == {"train": 6, "val": 2, "test": 2}
    ds = load_real("ks", tmp_path / "out")
    assert ds.input_shapes == {"audio": SPEC_SHAPE, "visual": (3, 3, 16, 16)}
    with pytest.raises(DataError, match="fewer than 5 frames"):
        prepare_dataset("ks", raw, tmp_path / "o5", {**TINY_AV, "frames": 5}, progress=False)


def test_twitter2015_uses_dev_and_tokenises(tmp_path):
    import pandas as pd

    raw = make_twitter(tmp_path / "raw")
    tiny = {"image_size": 16, "hash_vocab_size": 500}
    meta = prepare_dataset("twitter2015", raw, tmp_path / "out", tiny, progress=False,
                           workers=2)  # the worker-process path
    assert meta["counts"] == {"train": 9, "val": 3, "test": 3}
    assert meta["tokenizer"] == "hashing:500"
    ds = load_real("twitter2015", tmp_path / "out")
    assert ds.input_shapes == {"image": (3, 16, 16), "text": (30,)}
    assert ds.splits["train"].x["text"].dtype == np.int64
    assert ds.info["encoders"]["text"] == {"name": "bert", "vocab_size": 500, "pad_id": 0}
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    first = index.iloc[0]
    assert first["text"] == "rt user great game tonight win"
    ids = ds.splits["train"].x["text"][0]
    assert ids.tolist() == HashingTokenizer(500).encode(first["text"], 30).tolist()
    prepare_dataset("twitter2015", raw, tmp_path / "seq", tiny, progress=False)
    seq = load_real("twitter2015", tmp_path / "seq")
    for split in ("train", "val", "test"):
        for m in ds.modalities:
            np.testing.assert_array_equal(ds.splits[split].x[m], seq.splits[split].x[m])
    # the TomBERT column naming, target put back into the masked sentence
    ann = raw / "annotations"
    (ann / "test.tsv").write_text("index\t#1 Label\t#2 ImageID\t#3 String\t#3 String\n"
                                  "0\t2\ttest00.jpg\t$T$ wins again\tBarca\n")
    from mmbalance.data.real.twitter2015 import read_tsv

    assert read_tsv(ann / "test.tsv") == [(2, 2, "Barca wins again", "test00.jpg")]
    (ann / "dev.tsv").write_text("Label\tString\tImageID\n7\tx\ty.jpg\n")
    with pytest.raises(DataError, match="line 2: label 7"):
        read_tsv(ann / "dev.tsv")


def test_sarcasm_with_a_vocab_and_with_valid_json(tmp_path):
    raw = make_sarcasm(tmp_path / "raw")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "oh", "great", "#", "-", "0", "1"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    meta = prepare_dataset("sarcasm", raw, tmp_path / "out",
                           {"image_size": 16, "tokenizer": str(tmp_path / "vocab.txt")},
                           progress=False)
    assert meta["counts"] == {"train": 6, "val": 2, "test": 2}
    ds = load_real("sarcasm", tmp_path / "out")
    assert ds.splits["train"].x["text"][0][:3].tolist() == [2, 4, 5]  # [CLS] oh great
    assert ds.info["encoders"]["image"]["mean"] == list(images.CLIP_MEAN)
    raw2 = make_sarcasm(tmp_path / "raw2", with_valid=True)
    meta = prepare_dataset("sarcasm", raw2, tmp_path / "out2", {"image_size": 16},
                           progress=False)
    assert meta["counts"] == {"train": 8, "val": 2, "test": 2}
    with pytest.raises(ConfigError, match="hashing tokenizer"):
        load_dataset(f"sarcasm:{tmp_path / 'out2'},pretrained_text={tmp_path / 'vocab.txt'}")
    (raw2 / "images" / "test01.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(DataError, match="test01.jpg: image is unreadable"):
        prepare_dataset("sarcasm", raw2, tmp_path / "out3", {"image_size": 16}, progress=False)


def test_nvgesture_three_modalities(nvgesture):
    raw, out, meta, avi = nvgesture
    assert meta["counts"] == {"train": 6, "val": 2, "test": 2}
    assert meta["num_classes"] == 25
    ds = load_real("nvgesture", out)
    assert ds.modalities == ["rgb", "depth", "flow"]
    assert ds.input_shapes == {"rgb": (3, 8, 16, 16), "depth": (1, 8, 16, 16),
                               "flow": (2, 6, 16, 16)}
    assert ds.splits["train"].x["flow"].dtype == np.float16
    assert {e["name"] for e in ds.info["encoders"].values()} == {"i3d"}
    import pandas as pd

    index = pd.read_parquet(out / "index.parquet")
    for _, row in index[index.split != "val"].iterrows():
        split, idx, rel = row["id"].split(":", 2)
        folder = raw / rel
        # colour: frames 1..10 of 12 -> central 8 (frames 2..9), resized to 18, crop 16
        if (folder / "sk_color").is_dir():
            from PIL import Image

            files = sorted((folder / "sk_color").iterdir())[1:11]
            color = np.stack([np.asarray(Image.open(f)) for f in files])
        else:
            color = images.read_video(folder / "sk_color", 1, 11)
        expected = images.clip(color, 8, 16, 3, 0.875)
        got = ds.splits[split].x["rgb"][row["row"]]
        np.testing.assert_array_equal(got, expected)
        depth = np.load(folder / "sk_depth.npy")[1:11]
        np.testing.assert_array_equal(ds.splits[split].x["depth"][row["row"]][0],
                                      images.resize_crop(depth[1:9, ..., None].repeat(3, -1),
                                                         16, 0.875)[..., 0])
        flow = np.load(raw / "Video_data" / "flow_data" / split / f"{idx}.npy")
        got_flow = ds.splits[split].x["flow"][row["row"]].astype(np.float32)
        # 20 x 20 -> centre 18 x 18 -> resized to 16 x 16, vectors scaled by 16/18
        crop = torch.from_numpy(flow[1:19, 1:19, :, 2:8]).permute(3, 2, 0, 1)
        ref = torch.nn.functional.interpolate(crop, size=(16, 16), mode="bilinear") * 16 / 18
        np.testing.assert_allclose(got_flow, ref.permute(1, 0, 2, 3).numpy(), atol=2e-3)
    if avi:  # one colour video was a lossless .avi, decoded with PyAV to the very frames
        folder = raw / "Video_data" / "class_01" / "subject0_r0"
        assert (folder / "sk_color.avi").is_file() and not (folder / "sk_color").exists()
        color = np.random.default_rng(0).integers(0, 255, (12, 20, 24, 3), dtype=np.uint8)
        np.testing.assert_array_equal(images.read_video(folder / "sk_color", 1, 11), color[1:11])


def test_nvgesture_list_errors(tmp_path):
    from mmbalance.data.real.nvgesture import parse_list

    bad = tmp_path / "l.lst"
    bad.write_text("path:./Video_data/a depth:sk_depth:1:9 label:3\n")
    with pytest.raises(DataError, match="line 1: no 'color:' field"):
        parse_list(bad)
    bad.write_text("path:./a depth:sk_depth:1:x color:sk_color:1:9 label:3\n")
    with pytest.raises(DataError, match="malformed field"):
        parse_list(bad)
    raw = make_nvgesture(tmp_path / "raw")
    flow = raw / "Video_data" / "flow_data" / "test" / "1.npy"
    np.save(flow, np.zeros((4, 4, 3, 2), np.float32))
    with pytest.raises(DataError, match=f"{flow}: optical flow must have shape"):
        prepare_dataset("nvgesture", raw, tmp_path / "out", NV_TINY, progress=False)
    video = raw / "Video_data" / "class_01" / "subject0_r0" / "sk_color.avi"
    video.write_bytes(b"RIFF....AVI garbage")  # an .avi is read before the frame folder
    with pytest.raises(DataError, match=str(video)):
        prepare_dataset("nvgesture", raw, tmp_path / "out2", NV_TINY, progress=False)


def test_yaml_defaults_are_the_preparers_defaults():
    from dataclasses import asdict

    from mmbalance.data.real import make_preparer

    for name in ("cremad", "ks", "twitter2015", "sarcasm", "nvgesture"):
        d = dataset_defaults(name)
        prep = make_preparer(name, ".")
        assert d["prepare"] == asdict(prep.settings), name
        assert d["encoders"] == {m: e["name"] for m, e in prep.encoders().items()}, name
        assert d["train"]["optimizer"] in ("sgd", "adam")
        assert d["train"]["lr_step"] == 70 and d["train"]["lr_gamma"] == 0.1
        TrainConfig.from_dict(d["train"])  # the trainer's check (data/ does not import it)
    assert dataset_defaults("nvgesture")["train"]["batch_size"] == 2


def test_a_bad_train_key_in_a_defaults_file_is_named_with_the_file(tmp_path, monkeypatch):
    import yaml

    from mmbalance.cli import _dataset_defaults, build_parser
    from mmbalance.data.real import defaults

    data = dataset_defaults("ks")
    data["train"]["ogm_alpa"] = 0.3
    (tmp_path / "ks.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(defaults, "defaults_dir", lambda: tmp_path)
    args = build_parser().parse_args(["train", "--data", "ks:/x"])
    with pytest.raises(ConfigError, match=r"ks.yaml: train: .*unknown key.*ogm_alpa"):
        _dataset_defaults(args.data, args)


# ------------------------------------------------------------------------ end to end


@pytest.fixture
def trainer_with_backbones(monkeypatch):
    """The trainer builds its model from the dataset's `info["encoders"]`.

    Until trainer.py passes them itself, wrap its MultimodalModel so it does; once it does,
    `setdefault` leaves its arguments alone.
    """
    import mmbalance.trainers.trainer as trainer_mod
    from mmbalance.models.multimodal import MultimodalModel

    def build(*args, **kwargs):
        info = build.dataset.info
        kwargs.setdefault("encoders", info.get("encoders"))
        kwargs.setdefault("pretrained", info.get("pretrained"))
        return MultimodalModel(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "MultimodalModel", build)
    original_init = trainer_mod.Trainer.__init__

    def init(self, dataset, *a, **k):
        build.dataset = dataset
        original_init(self, dataset, *a, **k)

    monkeypatch.setattr(trainer_mod.Trainer, "__init__", init)
    return trainer_mod.Trainer


def test_trainer_on_prepared_cremad(cremad, trainer_with_backbones):
    from mmbalance.models.backbones import Encoder
    from mmbalance.trainers.config import TrainConfig

    _, out, _ = cremad
    ds = load_dataset(f"cremad:{out}")
    tr = trainer_with_backbones(ds, TrainConfig(epochs=2, batch_size=4, feature_dim=32,
                                                device="cpu", eval_batch_size=8))
    assert all(isinstance(e, Encoder) and e.name == "resnet18" for e in tr.model.encoders.values())
    assert not tr.x["train"]["audio"].resident  # read from disk per batch
    res = tr.fit()
    assert len(tr.history.epochs) == 2 and res["steps"] == 2 * 3
    assert np.isfinite([s["loss"] for s in tr.history.steps]).all()
    assert 0 <= res["test"]["acc"] <= 1 and "acc_visual" in res["test"]


def test_trainer_on_prepared_nvgesture_three_streams(nvgesture, trainer_with_backbones):
    from mmbalance.trainers.config import TrainConfig

    _, out, _, _ = nvgesture
    ds = load_dataset(f"nvgesture:{out}")
    tr = trainer_with_backbones(ds, TrainConfig(epochs=2, batch_size=2, feature_dim=16,
                                                device="cpu", eval_batch_size=4))
    assert [e.name for e in tr.model.encoders.values()] == ["i3d"] * 3
    before = {m: next(e.trunk.parameters()).clone() for m, e in tr.model.encoders.items()}
    res = tr.fit()
    assert res["steps"] == 2 * 3 and len(tr.history.epochs) == 2
    for m, e in tr.model.encoders.items():
        assert not torch.equal(before[m], next(e.trunk.parameters())), m  # each stream trained
    assert {f"acc_{m}" for m in ds.modalities} <= set(res["test"])


def test_train_command_on_prepared_data(cremad, trainer_with_backbones, tmp_path, capsys):
    from mmbalance.models.backbones import resnet18

    _, out, _ = cremad
    run = tmp_path / "run"
    ckpt = tmp_path / "weights" / "r18.pth"  # RGB weights: adapted to the 1-channel audio
    ckpt.parent.mkdir()
    torch.save(resnet18(3).state_dict(), ckpt)
    data = f"cremad:{out},pretrained_audio={ckpt}"
    assert main(["train", "--data", data, "--epochs", "1", "--batch-size", "6",
                 "--device", "cpu", "--set", "feature_dim=16", "--set", "eval_batch_size=8",
                 "--no-progress", "--out", str(run)]) == 0
    assert (run / "metrics.json").exists()
    resolved = json.loads((run / "config.json").read_text())
    assert resolved["data"] == data
    # the papers' set-up from tune_configs/datasets/cremad.yaml is the base; flags win
    paper = dataset_defaults("cremad")["train"]
    train = resolved["train"]
    assert (train["optimizer"], train["momentum"], train["weight_decay"]) == (
        paper["optimizer"], paper["momentum"], paper["weight_decay"])
    assert (train["lr_step"], train["lr_gamma"]) == (paper["lr_step"], paper["lr_gamma"])
    assert (train["epochs"], train["batch_size"], train["feature_dim"]) == (1, 6, 16)
    err = capsys.readouterr().err
    # the line says the values used, flags marked, not the YAML's 32 and 120
    line = next(x for x in err.splitlines() if x.startswith("cremad set-up"))
    assert "batch_size=6 (flag)" in line and "epochs=1 (flag)" in line
    assert "feature_dim=16 (flag)" in line and "optimizer=sgd," in line
    assert "batch_size=32" not in line and "epochs=120" not in line
    # the checkpoint is confirmed loaded, in the log and in config.json
    loaded = resolved["pretrained_loaded"]
    assert list(loaded) == ["audio"] and loaded["audio"]["file"] == str(ckpt.resolve())
    assert loaded["audio"]["tensors"] == len(resnet18(3).state_dict())
    assert "from 3 to 1 channels" in loaded["audio"]["adapted"]
    assert f"pretrained audio: loaded {loaded['audio']['tensors']} tensors from {ckpt}" in err
    # on CPU, the cost of an epoch is measured and said before training
    estimate = next(x for x in err.splitlines() if x.startswith("CPU: about"))
    assert "12 samples at" in estimate and "--device cuda" in estimate
    assert "--address" in estimate


def test_train_help_lists_every_data_kind(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for kind in ("synthetic", "digits", "parquet:PATH", "cremad:DIR", "ks:DIR",
                 "twitter2015:DIR", "sarcasm:DIR", "nvgesture:DIR"):
        assert kind in text
    assert "replaces the generic defaults" in text


def test_dataset_defaults_apply_only_to_the_papers_datasets():
    from mmbalance.cli import _dataset_defaults, build_parser
    from mmbalance.trainers.config import TrainConfig

    parser = build_parser()
    args = parser.parse_args(["train", "--data", "ks:/x"])
    assert _dataset_defaults(args.data, args) == dataset_defaults("ks")["train"]
    args = parser.parse_args(["compare", "--data", "ks:/x", "--no-dataset-defaults"])
    assert _dataset_defaults(args.data, args) == {}
    args = parser.parse_args(["train", "--data", "synthetic"])
    assert _dataset_defaults(args.data, args) == {}
    assert TrainConfig.from_dict({}).epochs != dataset_defaults("ks")["train"]["epochs"]


@pytest.mark.parametrize("name", ["twitter2015", "sarcasm"])
@pytest.mark.parametrize("bad, needle", [({"text_length": 1}, "text_length must be >= 2"),
                                         ({"image_size": 0}, "image_size must be > 0"),
                                         ({"max_words": -3}, "max_words must be > 0")])
def test_image_text_settings_are_checked(name, bad, needle):
    from mmbalance.data.real import preparer_class
    from mmbalance.data.real.preparer import make_settings

    with pytest.raises(ConfigError, match=needle):
        make_settings(preparer_class(name).settings_cls, bad)
