"""Fabricated raw datasets in the layouts their owners have: real files at tiny sizes.

WAVs with the `wave` module, JPEG/PNG frames with Pillow, videos (`.flv`, `.mp4`, `.avi`)
with PyAV, annotation files in each dataset's own format. Shared by the real-dataset tests.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from mmbalance.data.real.cremad import CLASSES as CREMAD_CLASSES


def write_wav(path: Path, freq: float, seconds: float = 0.2, rate: int = 16000,
              channels: int = 1, width: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    if width == 1:
        data = np.round(x * 127 + 128).astype(np.uint8)
    else:
        data = np.round(x * 32767).astype("<i2")
    data = np.repeat(data[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def write_image(path: Path, value: int, size: tuple[int, int] = (24, 20)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    arr = np.clip(rng.normal(value, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


def make_cremad(root: Path, per_class: int = 3) -> Path:
    ann = root / "annotations"
    ann.mkdir(parents=True)
    rows = {"train": [], "test": []}
    for c, emo in enumerate(CREMAD_CLASSES):
        for i in range(per_class + 1):
            clip = f"10{c}{i}_IEO_{emo}_HI"
            rows["train" if i < per_class else "test"].append(f"{clip},{emo}")
            write_wav(root / "AudioWAV" / f"{clip}.wav", 300 + 200 * c, seconds=0.1 + 0.05 * i)
            for f in range(2):
                write_image(root / "Image-01-FPS" / clip / f"{f:04d}.jpg", 30 * c + f)
    (ann / "train.csv").write_text("\ufeff" + "\n".join(rows["train"]) + "\n")
    (ann / "test.csv").write_text("\n".join(rows["test"]) + "\n")
    return root


def make_ks(root: Path) -> Path:
    ann = root / "annotations"
    ann.mkdir(parents=True)
    labels = ["playing drums", "singing"]
    for split, n in (("train", 4), ("test", 1)):
        lines = ["youtube_id,label,extra"]
        for c, label in enumerate(labels):
            for i in range(n):
                vid = f"{split}{c}{i}-yt"
                lines.append(f'{vid},"{label}",x')
                write_wav(root / f"{split}_wav" / f"{vid}.wav", 500 + 400 * c, seconds=0.15,
                          rate=22050, channels=2, width=1)
                for f in range(4):
                    write_image(root / f"{split}_img" / "Image-01-FPS" / vid / f"{f:03d}.jpg",
                                60 * c + 10 * f)
        (ann / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def make_twitter(root: Path) -> Path:
    ann = root / "annotations"
    ann.mkdir(parents=True)
    texts = ["RT @user: Great game tonight! #win", "Nothing special, just $T$ again",
             "I can't stand this - really awful/terrible"]
    for split, fname in (("train", "train.tsv"), ("val", "dev.tsv"), ("test", "test.tsv")):
        lines = ["index\tLabel\tString\tImageID"]
        for i in range(3 if split == "train" else 1):
            for y in range(3):
                image_id = f"{split}{i}{y}.jpg"
                lines.append(f"{i}\t{y}\t{texts[y]} {i}\t{image_id}")
                write_image(root / "twitter2015_images" / image_id, 80 * y + i)
        (ann / fname).write_text("\n".join(lines) + "\n")
    return root


def make_sarcasm(root: Path, with_valid: bool = False) -> Path:
    ann = root / "annotations"
    ann.mkdir(parents=True)
    splits = [("train", 4), ("test", 1)] + ([("valid", 1)] if with_valid else [])
    for split, n in splits:
        entries = []
        for i in range(n):
            for y in range(2):
                name = f"{split}{i}{y}.jpg"
                entries.append({"image": f"dataset_image/{name}", "text": f"Oh, GREAT. #{i}-{y}",
                                "label": y})
                write_image(root / "images" / name, 100 * y + i)
        (ann / f"{split}_data.json").write_text(json.dumps(entries))
    return root


def make_nvgesture(root: Path, avi: bool = False) -> Path:
    """Two classes, 4 train + 1 test clips each; colour as frame folders (or one .avi),
    depth as .npy, flow (20, 20, 2, 10)."""
    from PIL import Image

    video_root = root / "Video_data"
    lines = {"train": [], "test": []}
    for split, n in (("train", 4), ("test", 1)):
        for c in range(2):
            for i in range(n):
                rel = f"class_0{c + 1}/subject{i}_r{split == 'test':d}"
                folder = video_root / rel
                folder.mkdir(parents=True)
                rng = np.random.default_rng(100 * c + i)
                color = rng.integers(0, 255, (12, 20, 24, 3), dtype=np.uint8)
                if avi and split == "train" and c == 0 and i == 0:
                    write_video(folder / "sk_color.avi", color, codec="ffv1", pix_fmt="bgr0")
                else:
                    (folder / "sk_color").mkdir()
                    for f, frame in enumerate(color):
                        Image.fromarray(frame).save(folder / "sk_color" / f"{f:03d}.png")
                np.save(folder / "sk_depth.npy", rng.integers(0, 255, (12, 20, 24), np.uint8))
                lines[split].append(f"path:./Video_data/{rel} depth:sk_depth:1:11 "
                                    f"color:sk_color:1:11 duo_left:duo_left:2:12 label:{c + 1}")
        for idx in range(len(lines[split])):
            flow_dir = video_root / "flow_data" / split
            flow_dir.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(idx)
            np.save(flow_dir / f"{idx}.npy", rng.normal(0, 2, (20, 20, 2, 10)).astype(np.float32))
        (root / f"nvgesture_{split}_correct_v2.lst").write_text("\n".join(lines[split]) + "\n")
    return root


def write_video(path: Path, frames: np.ndarray, rate: int = 10, codec: str = "flv",
                audio: np.ndarray | None = None, audio_rate: int = 8000,
                pix_fmt: str = "yuv420p") -> None:
    """A video of (T, H, W, 3) uint8 frames at `rate` fps (`flv`: the Sorenson codec of
    CREMA-D's VideoFlash; `mpeg4` in .mp4; `ffv1` with pix_fmt bgr0: lossless, so a test
    can compare frames exactly), with an AAC mono sound track if `audio`."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=audio_rate)
            sound.layout = "mono"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            chunk = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="fltp",
                                               layout="mono")
            chunk.sample_rate = audio_rate
            for packet in [*sound.encode(chunk), *sound.encode()]:
                container.mux(packet)


def ramp_frames(n: int, seed: int, size: tuple[int, int] = (32, 48)) -> np.ndarray:
    """n frames whose brightness rises by 9 per frame from a seeded offset: a decoded frame
    tells which one it is, lossy codec or not."""
    base = np.random.default_rng(seed).integers(0, 30)
    return np.stack([np.full((*size, 3), base + 9 * i, np.uint8) for i in range(n)])


def make_cremad_official(root: Path, per_class: int = 5, rate: int = 10,
                         seconds: float = 2.5) -> Path:
    """The official download: AudioWAV/<actor>_<sentence>_<EMO>_<level>.wav and
    VideoFlash/<same>.flv, no annotations."""
    for c, emo in enumerate(CREMAD_CLASSES):
        for i in range(per_class):
            clip = f"10{i:02d}_IEO_{emo}_HI"
            write_wav(root / "AudioWAV" / f"{clip}.wav", 300 + 200 * c, seconds=0.1)
            write_video(root / "VideoFlash" / f"{clip}.flv",
                        ramp_frames(round(rate * seconds), 10 * c + i), rate=rate)
    return root


def make_sarcasm_original(root: Path) -> tuple[Path, list[str]]:
    """The original release: text/{train,valid2,test2}.txt list literals, dataset_image/.
    Returns the root and the texts kept (cue-word lines are left out)."""
    text = root / "text"
    text.mkdir(parents=True)
    kept = []
    lines = {"train.txt": [], "valid2.txt": [], "test2.txt": []}
    n = 0
    for name, count in (("train.txt", 4), ("valid2.txt", 1), ("test2.txt", 1)):
        for i in range(count):
            for y in range(2):
                n += 1
                tid = str(800000000000000000 + n)
                body = f"it 's \"great\" , isn 't it ? # {name[:4]} {i} {y}"
                labels = [y] if name == "train.txt" else [1 - y, y]  # hashtag, annotator
                lines[name].append(repr([tid, body, *labels]))
                kept.append(body)
                write_image(root / "dataset_image" / f"{tid}.jpg", 50 * y + i)
        lines[name].append(repr(["900000000000000000", "lol # sarcasm <url>", 1]))
    for name, rows in lines.items():
        (text / name).write_text("\n".join(rows) + "\n")
    return root, kept


def make_ks_videos(root: Path, labels: tuple[str, ...] = ("playing drums", "singing", "typing")
                   ) -> Path:
    """Kinetics' own CSVs (label,youtube_id,time_start,time_end,split) and videos named
    <youtube_id>_<start>_<end>.mp4 in per-class folders, with a sound track."""
    ann = root / "annotations"
    ann.mkdir(parents=True)
    for split, n in (("train", 3), ("test", 1)):
        lines = ["label,youtube_id,time_start,time_end,split"]
        for c, label in enumerate(labels):
            for i in range(n):
                vid = f"{split[:2]}{c}{i}abcdefgh"[:11]
                lines.append(f'"{label}",{vid},{10 * i},{10 * i + 10},{split}')
                t = np.arange(8000 * 2) / 8000
                write_video(root / f"{split}_video" / label / f"{vid}_{10 * i:06d}_"
                            f"{10 * i + 10:06d}.mp4", ramp_frames(30, 7 * c + i), rate=10,
                            codec="mpeg4", audio=0.5 * np.sin(2 * np.pi * (300 + 300 * c) * t))
        (ann / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root
