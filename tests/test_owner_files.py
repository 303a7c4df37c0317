"""Issue 21, data: what owners of the papers' datasets have (class lists spelt their own
way, an empty clip of the official release, truncated JPEGs, macOS `._*` files, upper-case
extensions, folders named in another case, Git LFS pointers, a FIFO) is used or reported,
never silently damaged; and Twitter2015 keeps its target. All on fabricated raw folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from raw_layouts import (
    make_cremad,
    make_cremad_official,
    make_ks,
    make_ks_videos,
    make_nvgesture,
    make_sarcasm_original,
    make_twitter,
    ramp_frames,
    write_video,
    write_wav,
)

from mmbalance.cli import main
from mmbalance.data.real import load_real, prepare_dataset
from mmbalance.data.real.text import HashingTokenizer, english_words, pre_caption
from mmbalance.errors import DataError, ProblemList

TINY_AV = {"sample_rate": 8000, "audio_seconds": 0.25, "image_size": 16}
AV_SETS = [f"--set={k}={v}" for k, v in TINY_AV.items()]


def _prepare_cli(raw: Path, out: Path, name: str = "cremad", *extra: str) -> int:
    sets = AV_SETS if name in ("cremad", "ks") else ["--set=image_size=16"]
    return main(["prepare", name, "--root", str(raw), "--out", str(out), "--no-progress",
                 *sets, *extra])


def _empty_wav(path: Path) -> None:
    """A valid WAV header and no audio: CREMA-D's 1076_MTI_SAD_XX.wav is such a file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)


# ----------------------------------------------------------- Kinetics-Sounds class list


def test_a_class_list_is_matched_by_identity_and_never_drops_a_class(tmp_path, capsys):
    raw = make_ks(tmp_path / "raw")  # classes "playing drums" and "singing"
    listed = tmp_path / "classes.txt"
    listed.write_text("Playing_Drums\n  SINGING  \n")  # case, spaces, underscores
    out = tmp_path / "out"
    assert _prepare_cli(raw, out, "ks", f"--set=classes={listed}") == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["class_names"] == ["playing drums", "singing"]
    assert meta["counts"] == {"train": 6, "val": 2, "test": 2}
    assert "classes per split: train 2, val 2, test 2 (of 2)" in capsys.readouterr().err

    # a spelling that differs ('drum'), a class the CSV lacks: an error naming both and
    # the nearest CSV spelling, not a preparation of the one class left
    listed.write_text("playing drum\nPlaying Bagpipes\nsinging\n")
    with pytest.raises(DataError) as err:
        prepare_dataset("ks", raw, tmp_path / "o", {**TINY_AV, "classes": str(listed)},
                        progress=False)
    message = str(err.value)
    assert "2 listed class(es) not in train.csv" in message
    assert "'playing drum' (nearest in train.csv: 'playing drums')" in message
    assert "'Playing Bagpipes' (" in message and not (tmp_path / "o").exists()
    capsys.readouterr()
    assert _prepare_cli(raw, tmp_path / "o", "ks", f"--set=classes={listed}") == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "'playing drum'" in stderr

    # a list that leaves one class: a split of one class is an error, never accuracy 1.0
    listed.write_text("singing\n")
    with pytest.raises(DataError, match="split 'train' would hold 1 class"):
        prepare_dataset("ks", raw, tmp_path / "o", {**TINY_AV, "classes": str(listed)},
                        progress=False)


# ----------------------------------------------------------------- content, not header


def test_empty_silent_and_short_clips_are_listed_at_once_or_skipped_with_reasons(tmp_path,
                                                                                 capsys):
    raw = make_cremad(tmp_path / "raw", per_class=2)  # 18 clips
    wavs = raw / "AudioWAV"
    _empty_wav(wavs / "1000_IEO_NEU_HI.wav")
    write_wav(wavs / "1011_IEO_HAP_HI.wav", 0.0, seconds=0.2)  # every sample 0
    write_wav(wavs / "1021_IEO_SAD_HI.wav", 400, seconds=0.01)  # 10 ms
    out = tmp_path / "out"
    with pytest.raises(ProblemList) as err:
        prepare_dataset("cremad", raw, out, TINY_AV, progress=False)
    lines = str(err.value).splitlines()
    assert "3 items have problems; nothing was prepared" in lines[0]
    assert "--skip-missing" in lines[0] and len(lines) == 4
    assert f"{wavs / '1000_IEO_NEU_HI.wav'}: audio file holds no audio samples" in lines[1]
    assert f"{wavs / '1011_IEO_HAP_HI.wav'}: audio file is silent" in lines[2]
    assert f"{wavs / '1021_IEO_SAD_HI.wav'}: audio file is too short: 0.010 s" in lines[3]
    assert not out.exists()
    # the CLI prints this listing as it is: the one error of several lines
    capsys.readouterr()
    assert _prepare_cli(raw, out) == 2
    assert capsys.readouterr().err.strip().splitlines()[1:] == lines[1:]

    assert _prepare_cli(raw, out, "cremad", "--skip-missing") == 0
    printed = capsys.readouterr().out
    assert ("left out 3 item(s) (1 audio file holds no audio samples; 1 audio file is "
            "silent; 1 audio file is too short)") in printed
    meta = json.loads((out / "meta.json").read_text())
    assert sum(meta["counts"].values()) == 15
    reasons = {s.split(":")[0]: s for s in meta["skipped"]}
    assert "holds no audio samples" in reasons["1000_IEO_NEU_HI"]
    assert "is silent" in reasons["1011_IEO_HAP_HI"]
    assert "too short" in reasons["1021_IEO_SAD_HI"]
    index = pd.read_parquet(out / "index.parquet")
    assert not set(reasons) & set(index["id"])  # none of them in any split


def test_many_problems_list_the_first_20_then_a_count(tmp_path, capsys):
    raw = make_cremad(tmp_path / "raw", per_class=3)  # 24 clips
    broken = sorted((raw / "AudioWAV").glob("*.wav"))[:22]
    for path in broken:
        _empty_wav(path)
    assert _prepare_cli(raw, tmp_path / "out") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"error: {raw}: 22 items have problems")
    assert len(lines) == 22 and lines[-1] == "  ... and 2 more"
    named = [ln.split(":")[0].strip() for ln in lines[1:21]]
    assert len(set(named)) == 20 and set(named) <= {str(p) for p in broken}


def test_a_truncated_jpeg_is_named_or_skipped(tmp_path, capsys):
    raw = make_twitter(tmp_path / "raw")
    cut = raw / "twitter2015_images" / "train11.jpg"
    whole = cut.read_bytes()
    scan = whole.index(b"\xff\xda")  # start of the compressed pixels
    cut.write_bytes(whole[: (scan + len(whole)) // 2])  # opens; its pixels stop halfway
    assert _prepare_cli(raw, tmp_path / "o", "twitter2015") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{cut}: image cannot be decoded completely" in err and "--skip-missing" in err
    assert _prepare_cli(raw, tmp_path / "out", "twitter2015", "--skip-missing") == 0
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["counts"]["train"] == 8 and len(meta["skipped"]) == 1
    assert "train11.jpg" in meta["skipped"][0] and "decoded completely" in meta["skipped"][0]


def test_a_video_without_a_decodable_frame_is_named(tmp_path):
    raw = make_cremad_official(tmp_path / "raw", per_class=3, seconds=1.0)
    bad = raw / "VideoFlash" / "1001_IEO_SAD_HI.flv"
    with av.open(str(bad)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(bad.read_bytes())
    for pos, size in packets:  # the header stays valid; every frame's payload is zeroed
        data[pos + 11: pos + 11 + size] = bytes(size)
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{bad}: video has no decodable video frame"):
        prepare_dataset("cremad", raw, tmp_path / "o", TINY_AV, progress=False)
    meta = prepare_dataset("cremad", raw, tmp_path / "out", TINY_AV, progress=False,
                           skip_missing=True)
    assert sum(meta["counts"].values()) == 17
    assert meta["skipped_counts"] == {"video has no decodable video frame": 1}


def test_a_kinetics_video_with_a_silent_sound_track_is_named(tmp_path):
    raw = make_ks_videos(tmp_path / "raw", labels=("playing drums", "singing"))
    silent = next((raw / "train_video" / "singing").glob("*.mp4"))
    write_video(silent, ramp_frames(30, 0), codec="mpeg4", audio=np.zeros(16000))
    with pytest.raises(DataError, match=f"{silent}: video sound track is silent"):
        prepare_dataset("ks", raw, tmp_path / "o", TINY_AV, progress=False)
    meta = prepare_dataset("ks", raw, tmp_path / "out", TINY_AV, progress=False,
                           skip_missing=True)
    assert sum(meta["counts"].values()) == 7
    assert meta["skipped_counts"] == {"video sound track is silent": 1}


def test_a_fifo_named_like_a_wav_is_never_opened(tmp_path):
    raw = make_cremad(tmp_path / "raw", per_class=2)
    fifo = raw / "AudioWAV" / "1000_IEO_NEU_HI.wav"
    fifo.unlink()
    os.mkfifo(fifo)
    frame_fifo = raw / "Image-01-FPS" / "1010_IEO_HAP_HI" / "0001.jpg"  # the frame read
    frame_fifo.unlink()
    os.mkfifo(frame_fifo)
    cmd = [sys.executable, "-m", "mmbalance.cli", "prepare", "cremad", "--root", str(raw),
           "--no-progress", *AV_SETS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # opening a FIFO blocks until a writer comes: a timeout here is the failure
    run = subprocess.run([*cmd, "--out", str(tmp_path / "o")], capture_output=True, check=False,
                         text=True, timeout=120, env=env)
    assert run.returncode == 2, run.stderr
    assert f"{fifo}: audio file is a FIFO (named pipe), not a regular file" in run.stderr
    assert "frame folder has a frame that is a FIFO" in run.stderr
    run = subprocess.run([*cmd, "--out", str(tmp_path / "out"), "--skip-missing"],
                         capture_output=True, text=True, timeout=120, env=env, check=False)
    assert run.returncode == 0, run.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert sum(meta["counts"].values()) == 16
    assert sorted(s.split(":")[0] for s in meta["skipped"]) == ["1000_IEO_NEU_HI",
                                                                 "1010_IEO_HAP_HI"]


# -------------------------------------------------------------- files as owners have them


def test_lfs_pointers_are_named_with_the_command_that_fetches_them(tmp_path):
    raw = make_cremad(tmp_path / "clone", per_class=1)
    (raw / ".git").mkdir()  # a clone made without git-lfs: pointers in place of media
    pointer = raw / "AudioWAV" / "1020_IEO_SAD_HI.wav"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:"
                       + "ab" * 32 + "\nsize 74412\n")
    with pytest.raises(DataError) as err:
        prepare_dataset("cremad", raw, tmp_path / "o", TINY_AV, progress=False)
    message = str(err.value)
    assert f"{pointer}: audio file is a Git LFS pointer, not the file itself" in message
    assert f"cd {raw.resolve()} && git lfs pull" in message
    assert "RIFF" not in message


def test_official_files_in_any_case_and_hidden_files(tmp_path, capsys):
    raw = make_cremad_official(tmp_path / "raw", per_class=3, seconds=1.0)
    (raw / "AudioWAV").rename(raw / "audiowav")
    (raw / "VideoFlash").rename(raw / "videoflash")
    upper = raw / "audiowav" / "1002_IEO_ANG_HI.WAV"
    (raw / "audiowav" / "1002_IEO_ANG_HI.wav").rename(upper)
    for name in ("._1000_IEO_NEU_HI.wav", ".DS_Store"):  # macOS copies
        (raw / "audiowav" / name).write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (raw / "videoflash" / "._1000_IEO_NEU_HI.flv").write_bytes(b"\x00\x05\x16\x07")
    (raw / ".gitattributes").write_text("*.wav filter=lfs\n")  # the clone's own: not data
    out = tmp_path / "out"
    assert _prepare_cli(raw, out) == 0
    assert "ignored 3 hidden file(s)" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert sum(meta["counts"].values()) == 18 and meta["hidden_files_ignored"] == 3
    index = pd.read_parquet(out / "index.parquet")
    assert "1002_IEO_ANG_HI" in set(index["id"])  # the upper-case .WAV is used

    # --root one level too deep: what was found, what was expected, which folder to pass
    with pytest.raises(DataError) as err:
        prepare_dataset("cremad", raw / "audiowav", tmp_path / "o", TINY_AV, progress=False)
    message = str(err.value)
    assert "expected AudioWAV/ and VideoFlash/ (the official download)" in message
    assert "found 1000_IEO_ANG_HI.wav" in message and "frame folder for fps" not in message
    assert f"--root points one level too deep: pass {raw.resolve()}" in message
    # a download without videos nor frames: the layout is named, not an fps setting
    (raw / "videoflash").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"expected VideoFlash/ \(the official videos\) or "
                       r"Image-01-FPS/ \(frames\) beside AudioWAV/; found audiowav/"):
        prepare_dataset("cremad", raw, tmp_path / "o", TINY_AV, progress=False)


def test_hidden_frames_are_not_frames(tmp_path):
    raw = make_cremad(tmp_path / "raw", per_class=2)
    clip = raw / "Image-01-FPS" / "1000_IEO_NEU_HI"
    (clip / "._0000.jpg").write_bytes(b"\x00\x05\x16\x07")  # sorts first; not an image
    meta = prepare_dataset("cremad", raw, tmp_path / "out", {**TINY_AV, "frames": 2},
                           progress=False)
    assert sum(meta["counts"].values()) == 18 and meta["skipped"] == []


@pytest.mark.parametrize("name", ["ks", "twitter2015", "sarcasm", "nvgesture"])
def test_root_one_level_too_deep_says_which_folder_to_pass(name, tmp_path):
    raw = tmp_path / "raw"
    inner = {"ks": "annotations", "twitter2015": "annotations", "sarcasm": "text",
             "nvgesture": "Video_data"}[name]
    if name == "ks":
        make_ks(raw)
    elif name == "twitter2015":
        make_twitter(raw)
    elif name == "sarcasm":
        make_sarcasm_original(raw)
    else:
        make_nvgesture(raw)
    with pytest.raises(DataError) as err:
        prepare_dataset(name, raw / inner, tmp_path / "o", progress=False)
    message = str(err.value)
    assert message.startswith(f"{raw / inner}: expected ") and "; found " in message
    assert message.endswith(f"--root points one level too deep: pass {raw.resolve()}")
    assert not (tmp_path / "o").exists()


def test_an_empty_nvgesture_array_is_named(tmp_path):
    raw = make_nvgesture(tmp_path / "raw")
    depth = raw / "Video_data" / "class_01" / "subject1_r0" / "sk_depth.npy"
    np.save(depth, np.zeros((0, 20, 24), np.uint8))
    with pytest.raises(DataError, match=f"{depth}: depth video holds no values"):
        prepare_dataset("nvgesture", raw, tmp_path / "o", {"frames": 4, "flow_frames": 4,
                                                           "image_size": 8}, progress=False)


# ------------------------------------------------------------------ Twitter2015's target


def test_twitter_targets_of_one_tweet_are_distinct_inputs(tmp_path):
    raw = make_twitter(tmp_path / "raw")
    tomb = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String\n"
    rows = {"train.tsv": [(2, "train00.jpg", "$T$ beat Madrid at home", "Barca"),
                          (0, "train00.jpg", "Barca beat $T$ at home", "Madrid"),
                          (1, "train01.jpg", "$T$ again", "Real Madrid"),
                          (2, "train02.jpg", "watching $T$", "Messi"),
                          (1, "train10.jpg", "$T$ news", "CNN"),
                          (0, "train11.jpg", "sad about $T$", "Rome")],
            "dev.tsv": [(y, f"val0{y}.jpg", f"$T$ dev {y}", "Paris") for y in range(3)],
            "test.tsv": [(y, f"test0{y}.jpg", f"$T$ test {y}", "Berlin") for y in range(3)]}
    for name, recs in rows.items():
        (raw / "annotations" / name).write_text(tomb + "".join(
            f"{i}\t{y}\t{img}\t{text}\t{target}\n" for i, (y, img, text, target) in
            enumerate(recs)))
    out = tmp_path / "out"
    meta = prepare_dataset("twitter2015", raw, out, {"image_size": 16, "text_length": 12},
                           progress=False)
    assert meta["counts"] == {"train": 6, "val": 3, "test": 3}
    index = pd.read_parquet(out / "index.parquet")
    train = index[index.split == "train"].reset_index(drop=True)
    # the sentence whole (target put back) and the target as its own column
    assert train["text"][0] == train["text"][1] == "barca beat madrid at home"
    assert list(train["target"][:3]) == ["barca", "madrid", "real madrid"]
    assert list(train["label"][:2]) == [2, 0]
    ids = load_real("twitter2015", out).splits["train"].x["text"]
    assert not np.array_equal(ids[0], ids[1])  # two targets, two inputs
    tok = HashingTokenizer()
    sentence = [tok.word_id(w) for w in ["barca", "beat", "madrid", "at", "home"]]
    for row, target in ((0, "barca"), (1, "madrid")):  # [CLS] sentence [SEP] target [SEP]
        assert ids[row].tolist() == [tok.cls_id, *sentence, tok.sep_id, tok.word_id(target),
                                     tok.sep_id, 0, 0, 0]
    # a sentence longer than the room is cut, never its target
    long = tok.encode_pair(" ".join(f"w{i}" for i in range(40)), "real madrid", 12)
    assert long.tolist()[-3:] == [tok.word_id("real"), tok.word_id("madrid"), tok.sep_id]
    # the BSS files have no target column: read as they are, no target column written,
    # and their $T$ masks (the target lost before they were written) are said
    plain = make_twitter(tmp_path / "bss")
    lines: list[str] = []
    prepare_dataset("twitter2015", plain, tmp_path / "bss_out", {"image_size": 16},
                    progress=False, report=lines.append)
    assert any(line.startswith("text: 5 tweets hold a $T$ mask") for line in lines)
    bss = pd.read_parquet(tmp_path / "bss_out" / "index.parquet")
    assert "target" not in bss.columns
    assert bss["text"][0] == pre_caption(english_words("RT @user: Great game tonight! #win 0"),
                                         20)


def test_ramp_video_helper_is_decodable(tmp_path):
    """The fabricated videos decode (so the broken-video test above tests the damage)."""
    path = tmp_path / "v.flv"
    write_video(path, ramp_frames(5, 0), rate=5)
    from mmbalance.data.real import video

    assert video.stream_problem(path) is None
