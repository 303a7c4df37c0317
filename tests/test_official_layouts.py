"""The papers' datasets as their owners have them (official downloads, original releases),
and inputs that must never be silently corrupted: all on fabricated raw folders with real
files (`raw_layouts.py`), videos included (written with PyAV)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from raw_layouts import (
    make_cremad,
    make_cremad_official,
    make_ks_videos,
    make_nvgesture,
    make_sarcasm_original,
    make_twitter,
    ramp_frames,
    write_image,
    write_video,
)

from mmbalance.cli import main
from mmbalance.data.real import audio, images, load_real, prepare_dataset, video
from mmbalance.data.real.cremad import CLASSES as CREMAD_CLASSES
from mmbalance.data.real.text import english_words, pre_caption
from mmbalance.data.real.twitter2015 import read_tsv
from mmbalance.errors import DataError

TINY_AV = {"sample_rate": 8000, "audio_seconds": 0.25, "image_size": 16}



def _arrays_identical(a: Path, b: Path) -> None:
    """Every prepared .npy of `a` is byte for byte the one of `b`."""
    files = sorted(p.relative_to(a) for p in a.glob("*/*.npy"))
    assert files and files == sorted(p.relative_to(b) for p in b.glob("*/*.npy"))
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


# --------------------------------------------------------------------- silent corruption


def test_twitter_tsv_is_one_record_per_line_with_quoting_off(tmp_path, capsys):
    raw = make_twitter(tmp_path / "raw")
    tsv = raw / "annotations" / "train.tsv"
    tweets = ['"Quoted" words open this tweet #win', '"an open quote, never closed #fail',
              "a tab\tinside the tweet", '"fully quoted tweet"', 'an unbalanced " inside']
    lines = ["index\tLabel\tString\tImageID"]
    lines += [f"{i}\t{i % 3}\t{t}\ttrain{i // 3}{i % 3}.jpg" for i, t in enumerate(tweets)]
    lines.insert(3, "")  # a blank line: skipped, line numbers stay the file's
    tsv.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    rows = read_tsv(tsv)
    assert rows == [(2, 0, tweets[0], "train00.jpg"), (3, 1, tweets[1], "train01.jpg"),
                    (5, 2, tweets[2], "train02.jpg"), (6, 0, tweets[3], "train10.jpg"),
                    (7, 1, tweets[4], "train11.jpg")]
    meta = prepare_dataset("twitter2015", raw, tmp_path / "out", {"image_size": 16},
                           progress=False)
    assert meta["counts"]["train"] == 5  # a CSV reader glued 3 records into one here
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    train = index[index.split == "train"]
    assert train["text"].tolist() == [pre_caption(english_words(t), 20) for t in tweets]
    assert train["label"].tolist() == [0, 1, 2, 0, 1]

    # a short line is named by the file's own line number, in one line on stderr
    lines[4] = "2\t1\tno image column"
    tsv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{tsv}: line 5: 3 tab-separated fields, the header"):
        read_tsv(tsv)
    out = tmp_path / "cli"
    assert main(["prepare", "twitter2015", "--root", str(raw), "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tsv}: line 5:" in err and not out.exists()
    # TomBERT files have two text columns: a tab in the text is ambiguous there, so an error
    tsv.write_text("index\t#1 Label\t#2 ImageID\t#3 String\t#3 String\n"
                   "0\t2\ttrain00.jpg\t$T$ wins\tagain\tBarca\n")
    with pytest.raises(DataError, match="line 2: 6 tab-separated fields, the header has 5"):
        read_tsv(tsv)
    tsv.write_bytes(b"Label\tString\tImageID\n1\tok\ta.jpg\n1\t\xff\xfe bad\tb.jpg\n")
    with pytest.raises(DataError, match="line 3: not UTF-8"):
        read_tsv(tsv)


def test_truncated_wav_is_an_unreadable_file_not_a_short_clip(tmp_path, capsys):
    raw = make_cremad(tmp_path / "raw", per_class=2)
    cut = raw / "AudioWAV" / "1011_IEO_HAP_HI.wav"
    whole = cut.read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])  # valid header, body cut short
    assert "truncated" in audio.wav_problem(cut)
    assert audio.wav_problem(raw / "AudioWAV" / "1010_IEO_HAP_HI.wav") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no anonymous warning: an error naming the file
        with pytest.raises(DataError, match=rf"{cut}: WAV file is truncated"):
            audio.read_wav(cut)
    out = tmp_path / "out"
    assert main(["prepare", "cremad", "--root", str(raw), "--out", str(out), "--no-progress",
                 *[f"--set={k}={v}" for k, v in TINY_AV.items()]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{cut}: audio file is truncated" in err
    assert "--skip-missing" in err and not out.exists()
    meta = prepare_dataset("cremad", raw, out, TINY_AV, progress=False, skip_missing=True)
    assert sum(meta["counts"].values()) == 17  # 18 clips, the cut one left out and listed
    assert len(meta["skipped"]) == 1 and "1011_IEO_HAP_HI" in meta["skipped"][0]
    assert "truncated" in meta["skipped"][0]


def test_frames_are_ordered_by_their_number(tmp_path):
    folder = tmp_path / "clip"
    for f in range(12):
        write_image(folder / f"frame_{f + 1}.jpg", 20 * f)
    assert [p.name for p in images.list_frames(folder)] == [f"frame_{i}.jpg"
                                                            for i in range(1, 13)]
    picked = images.read_frames(folder, 3, 8)  # evenly spaced over 12: the 3rd, 7th, 11th
    for j, name in enumerate(("frame_3.jpg", "frame_7.jpg", "frame_11.jpg")):
        np.testing.assert_array_equal(picked[:, j], images.read_image(folder / name, 8))


# ------------------------------------------------------------------------ CREMA-D official


@pytest.fixture(scope="module")
def cremad_official(tmp_path_factory):
    raw = make_cremad_official(tmp_path_factory.mktemp("crema_official"))
    out = tmp_path_factory.mktemp("crema_off") / "prepared"
    meta = prepare_dataset("cremad", raw, out, TINY_AV, progress=False)
    return raw, out, meta


def test_cremad_from_the_official_download(cremad_official, tmp_path):
    raw, out, meta = cremad_official
    assert not (raw / "annotations").exists() and not list(raw.glob("Image-*"))
    # split made here, per class: 1 of 5 clips to test, then 1 of the 4 left to val
    assert meta["counts"] == {"train": 18, "val": 6, "test": 6}
    assert "test_fraction 0.1" in meta["split"]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["sources"] == {"visual": "video"}
    written = {s: [line.split(",") for line in (out / "annotations" / f"{s}.csv")
                   .read_text().splitlines()] for s in ("train", "test")}
    assert len(written["test"]) == 6 and len(written["train"]) == 24
    assert sorted(e for _, e in written["test"]) == sorted(CREMAD_CLASSES)
    for clip, emo in written["train"] + written["test"]:
        assert clip.split("_")[2] == emo  # the label is the name's emotion code
    index = pd.read_parquet(out / "index.parquet")
    assert sorted(index[index.split == "test"]["id"]) == sorted(c for c, _ in written["test"])
    ds = load_real("cremad", out)
    for _, row in index.iterrows():
        clip = row["id"]
        c, i = CREMAD_CLASSES.index(clip.split("_")[2]), int(clip[2:4])
        got = ds.splits[row["split"]].x["visual"][row["row"]]
        # a 2.5 s clip at 1 fps: the frames at 0.5 s and 1.5 s; one frame kept, the second:
        # frame 15 of the ramp, whatever the codec did to it
        sampled = video.sample_frames(raw / "VideoFlash" / f"{clip}.flv", 1)
        assert len(sampled) == 2
        np.testing.assert_array_equal(got[:, 0], images.image_array(sampled[1], 16))
        assert abs(float(got.mean()) - float(ramp_frames(16, 10 * c + i)[15].mean())) < 4
        spec = audio.wav_spectrogram(raw / "AudioWAV" / f"{clip}.wav", 8000, 0.25)
        np.testing.assert_array_equal(ds.splits[row["split"]].x["audio"][row["row"]], spec)

    # seeded: the same command gives the same split; another seed another one
    again = prepare_dataset("cremad", raw, tmp_path / "again", TINY_AV, progress=False)
    assert (tmp_path / "again" / "annotations" / "test.csv").read_text() == \
        (out / "annotations" / "test.csv").read_text()
    assert again["counts"] == meta["counts"]
    prepare_dataset("cremad", raw, tmp_path / "seed1", {**TINY_AV, "split_seed": 1},
                    progress=False)
    assert (tmp_path / "seed1" / "annotations" / "test.csv").read_text() != \
        (out / "annotations" / "test.csv").read_text()
    # the written split pins it: as RAW/annotations/ it is read like the authors' files
    pinned = tmp_path / "raw_pinned"
    shutil.copytree(raw, pinned)
    shutil.copytree(out / "annotations", pinned / "annotations")
    meta2 = prepare_dataset("cremad", pinned, tmp_path / "pinned", TINY_AV, progress=False)
    assert "split" not in meta2
    _arrays_identical(tmp_path / "pinned", out)


def test_cremad_layout_errors_name_what_is_missing(tmp_path, cremad_official):
    raw = make_cremad(tmp_path / "bss", per_class=1)  # Image-01-FPS/, no videos
    with pytest.raises(DataError) as err:
        prepare_dataset("cremad", raw, tmp_path / "o", {**TINY_AV, "fps": 2}, progress=False)
    message = str(err.value)
    assert f"{raw / 'Image-02-FPS'}: the frame folder for fps=2 is missing" in message
    assert "found Image-01-FPS" in message and "skip-missing" not in message
    (raw / "annotations" / "test.csv").unlink()
    with pytest.raises(DataError, match=r"test.csv: annotation file not found \(its pair"):
        prepare_dataset("cremad", raw, tmp_path / "o", TINY_AV, progress=False)
    official, _, _ = cremad_official
    odd = tmp_path / "odd"
    shutil.copytree(official, odd)
    (odd / "AudioWAV" / "notes.wav").write_bytes((odd / "AudioWAV" / "1000_IEO_NEU_HI.wav")
                                                 .read_bytes())
    with pytest.raises(DataError, match="notes.wav: not an official CREMA-D clip name"):
        prepare_dataset("cremad", odd, tmp_path / "o", TINY_AV, progress=False)
    (odd / "AudioWAV" / "notes.wav").unlink()
    (odd / "VideoFlash" / "1001_IEO_SAD_HI.flv").write_bytes(b"FLV\x01 cut")
    with pytest.raises(DataError, match="1001_IEO_SAD_HI.flv: video is unreadable"):
        prepare_dataset("cremad", odd, tmp_path / "o2", TINY_AV, progress=False)
    assert not (tmp_path / "o2").exists()  # found while listing, before anything is written
    meta = prepare_dataset("cremad", odd, tmp_path / "o3", TINY_AV, progress=False,
                           skip_missing=True)
    assert sum(meta["counts"].values()) == 29 and "1001_IEO_SAD_HI" in meta["skipped"][0]


# ------------------------------------------------------------------ interrupt and resume


def test_ctrl_c_says_how_to_resume_and_the_rerun_is_byte_identical(tmp_path, monkeypatch,
                                                                     capsys):
    raw = make_cremad(tmp_path / "raw", per_class=3)
    clean = tmp_path / "clean"
    prepare_dataset("cremad", raw, clean, TINY_AV, progress=False)
    real, calls = audio.wav_spectrogram, []

    def interrupted(*args):
        calls.append(args[0])
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(audio, "wav_spectrogram", interrupted)
    out = tmp_path / "out"
    cmd = ["prepare", "cremad", "--root", str(raw), "--out", str(out), "--no-progress",
           *[f"--set={k}={v}" for k, v in TINY_AV.items()]]
    assert main(cmd) == 130
    err = capsys.readouterr().err
    assert "interrupted: rerun the same command to resume (6 of 24 done)" in err
    monkeypatch.setattr(audio, "wav_spectrogram", real)
    assert main(cmd) == 0
    captured = capsys.readouterr()
    assert "resuming: 6 of 24 already prepared" in captured.err
    assert f"--data cremad:{out}" in captured.out
    _arrays_identical(out, clean)


# ------------------------------------------------------------- Sarcasm original release


def test_sarcasm_original_release(tmp_path):
    raw, kept = make_sarcasm_original(tmp_path / "raw")
    meta = prepare_dataset("sarcasm", raw, tmp_path / "out", {"image_size": 16},
                           progress=False)
    assert meta["counts"] == {"train": 8, "val": 2, "test": 2}  # valid2.txt is val
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    assert sorted(index["text"]) == sorted(pre_caption(t, 50) for t in kept)
    for _, row in index.iterrows():  # the last element is the label (valid/test: annotator)
        assert row["label"] == int(row["text"].split()[-1]), row["text"]
    assert not index["text"].str.contains("sarcasm").any()  # cue-word lines left out
    with pytest.raises(DataError, match="900000000000000000.jpg: image not found"):
        prepare_dataset("sarcasm", raw, tmp_path / "all", {"image_size": 16,
                                                           "drop_cue_words": False},
                        progress=False)
    bad = raw / "text" / "test2.txt"
    bad.write_text(bad.read_text() + "__import__('os').system('echo pwned')\n")
    with pytest.raises(DataError, match=r"test2.txt: line 4: not a list literal"):
        prepare_dataset("sarcasm", raw, tmp_path / "bad", {"image_size": 16}, progress=False)


# --------------------------------------------------------------- Kinetics-Sounds videos


def test_kinetics_sounds_from_kinetics_videos_and_csvs(tmp_path):
    raw = make_ks_videos(tmp_path / "raw")
    (tmp_path / "ks_classes.txt").write_text("# the classes to keep\nplaying drums\ntyping\n")
    settings = {**TINY_AV, "classes": str(tmp_path / "ks_classes.txt")}
    meta = prepare_dataset("ks", raw, tmp_path / "out", settings, progress=False)
    assert meta["class_names"] == ["playing drums", "typing"]  # singing is not in the list
    assert meta["counts"] == {"train": 4, "val": 2, "test": 2}
    assert json.loads((tmp_path / "out" / "plan.json").read_text())["sources"] == {
        "train": "video", "test": "video"}
    ds = load_real("ks", tmp_path / "out")
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    for _, row in index.iterrows():
        split_dir = "test_video" if row["split"] == "test" else "train_video"
        path = next((raw / split_dir / row["class"]).glob(f"{row['id']}_*.mp4"))
        x = ds.splits[row["split"]]
        spec = x.x["audio"][row["row"]]
        np.testing.assert_array_equal(spec, audio.spectrogram(*video.video_audio(path), 8000,
                                                              0.25))
        freq = 300 + 300 * (0 if row["class"] == "playing drums" else 2)
        assert abs(int(np.argmax(spec[0].mean(1))) - freq * 512 / 8000) <= 1  # its own tone
        c = 0 if row["class"] == "playing drums" else 2
        ramp = ramp_frames(30, 7 * c + int(row["id"][3]))
        frames = x.x["visual"][row["row"]]  # 3 s at 1 fps: the frames at 0.5, 1.5, 2.5 s
        for j, k in enumerate((5, 15, 25)):
            assert abs(float(frames[:, j].mean()) - float(ramp[k].mean())) < 5
    with pytest.raises(DataError, match="nothere.txt: class list file"):
        prepare_dataset("ks", raw, tmp_path / "o", {**TINY_AV, "classes": "nothere.txt"},
                        progress=False)
    # a Kinetics video without sound: named while listing; --skip-missing leaves it out
    silent = next((raw / "train_video" / "typing").glob("*.mp4"))
    write_video(silent, ramp_frames(30, 0), codec="mpeg4")
    with pytest.raises(DataError, match=f"{silent}: video has no audio stream"):
        prepare_dataset("ks", raw, tmp_path / "o", settings, progress=False)
    meta = prepare_dataset("ks", raw, tmp_path / "o", settings, progress=False,
                           skip_missing=True)
    assert sum(meta["counts"].values()) == 7 and "no audio stream" in meta["skipped"][0]


# ------------------------------------------------------------------ NVGesture official


def test_nvgesture_from_the_official_download(tmp_path):
    """Official list names, .avi colour video, no flow_data/: flow computed from colour."""
    raw = make_nvgesture(tmp_path / "raw", avi=True)
    shutil.rmtree(raw / "Video_data" / "flow_data")
    for split in ("train", "test"):
        (raw / f"nvgesture_{split}_correct_v2.lst").rename(
            raw / f"nvgesture_{split}_correct_cvpr2016_v2.lst")
    tiny = {"frames": 4, "flow_frames": 4, "image_size": 8}
    with pytest.raises(DataError, match="flow_data/train/0.npy: optical flow not found"):
        prepare_dataset("nvgesture", raw, tmp_path / "o", tiny, progress=False)
    meta = prepare_dataset("nvgesture", raw, tmp_path / "out",
                           {**tiny, "flow_source": "computed"}, progress=False)
    assert meta["counts"] == {"train": 6, "val": 2, "test": 2}
    ds = load_real("nvgesture", tmp_path / "out")
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    row = index[index.split == "train"].iloc[0]
    rel = row["id"].split(":", 2)[2]
    color = images.read_video(raw / rel / "sk_color", 1, 11)
    expected = images.computed_flow_clip(color, 4, 8, 0.875)
    np.testing.assert_array_equal(ds.splits["train"].x["flow"][row["row"]], expected)
    assert np.abs(expected).max() > 0
    (raw / "nvgesture_test_correct_cvpr2016_v2.lst").unlink()
    with pytest.raises(DataError, match="nvgesture_test_correct_cvpr2016_v2.lst: list file"):
        prepare_dataset("nvgesture", raw, tmp_path / "o", {**tiny, "flow_source": "computed"},
                        progress=False)


def test_computed_flow_finds_a_known_motion():
    from scipy.ndimage import gaussian_filter, shift

    from mmbalance.data.real.flow import clip_flow

    texture = gaussian_filter(np.random.default_rng(0).random((48, 64)), 2.0)
    texture = 255 * (texture - texture.min()) / np.ptp(texture)
    frames = np.stack([np.repeat(shift(texture, (1.0 * t, 2.0 * t), order=3, mode="wrap")
                                 [..., None], 3, axis=-1).astype(np.uint8) for t in range(3)])
    flow = clip_flow(frames)  # x moves 2 px per frame, y 1 px
    assert flow.shape == (2, 3, 48, 64)
    inner = flow[:, :2, 8:-8, 8:-8]
    assert abs(float(inner[0].mean()) - 2.0) < 0.25 and abs(float(inner[1].mean()) - 1.0) < 0.25
    assert not flow[:, 2].any()  # the last frame has no next frame
    still = clip_flow(np.repeat(frames[:1], 2, axis=0))
    assert np.abs(still).max() < 1e-3


# ------------------------------------------------------------------- text tokenizer notes


def test_tokenizer_is_said_at_prepare_time_and_stored_absolute(tmp_path, monkeypatch,
                                                               capsys):
    raw = make_twitter(tmp_path / "raw")
    args = ["prepare", "twitter2015", "--root", str(raw), "--no-progress", "--set",
            "image_size=16"]
    assert main([*args, "--out", str(tmp_path / "hashed")]) == 0
    assert "hashing tokenizer is used" in capsys.readouterr().err
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "great", "game"]
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--out", "wp", "--tokenizer", "bert/vocab.txt"]) == 0
    assert "hashing" not in capsys.readouterr().err
    meta = json.loads((tmp_path / "wp" / "meta.json").read_text())
    absolute = str((tmp_path / "bert" / "vocab.txt").resolve())
    assert meta["tokenizer"] == f"wordpiece:{absolute}"
    assert meta["settings"]["tokenizer"] == absolute
