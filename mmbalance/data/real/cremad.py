"""CREMA-D (audio-visual emotion, 6 classes): from the official download, or from the layout
the OGM-GE/BSS code reads.

The official download (`git lfs clone https://github.com/CheyneyComputerScience/CREMA-D`):

```
RAW/AudioWAV/<clip>.wav        7442 clips named <actor>_<sentence>_<EMO>_<level>,
RAW/VideoFlash/<clip>.flv      EMO in NEU HAP SAD FEA DIS ANG
```

is read as it is: labels from the file names, frames decoded from the `.flv` videos with
PyAV (`fps` frames per second, the middle frame of each interval, as the OGM-GE extraction
script does with moviepy), and the train/test split made here, since the papers' code reads
a split file it does not say how it made (the OGM-GE repository ships one: 6698 train, 744
test clips, a random tenth). Ours is the same size, stratified by class and seeded
(`test_fraction`, `split_seed`), and written to `OUT/annotations/{train,test}.csv` in the
authors' format: copy that folder to `RAW/annotations/` to pin the split.

The authors' layout is read when its files are there:

```
RAW/annotations/train.csv      rows `clip_name,EMO`, no header (e.g. OGM-GE's files)
RAW/annotations/test.csv
RAW/Image-01-FPS/<clip_name>/*.jpg   frames extracted at 1 fps (`fps` picks the folder)
```

Annotation files win over the file names, a frame folder `Image-<fps>-FPS/` over the
videos. Prepared (`OUT`, see `writer.py`): `audio` (1, 257, T) float32 log-magnitude
spectrogram (22050 Hz, tiled to `audio_seconds`; T = 1 + samples // 353) and `visual`
(3, frames, size, size) uint8 frames (ImageNet-normalised by the encoder). Val is carved
from train (per class, `val_fraction`, `split_seed`). Backbones: ResNet18 for both.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmbalance.data.real import audio, images, video
from mmbalance.data.real.audiovisual import AudioVisualPreparer
from mmbalance.data.real.preparer import Item, stratified_carve
from mmbalance.errors import ConfigError, DataError

CLASSES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")  # the authors' class order
VIDEO_DIRS = (("VideoFlash", ".flv"), ("VideoFlash", ".mp4"), ("VideoMP4", ".mp4"))


@dataclass
class Settings:
    sample_rate: int = 22050
    audio_seconds: float = 20.0  # BSS code tiles to 20 s; the OGM-GE code used 3 s
    fps: int = 1
    frames: int = 1
    image_size: int = 224
    val_fraction: float = 0.1
    split_seed: int = 0
    test_fraction: float = 0.1  # official layout only: the OGM-GE split's 744 of 7442

    def check(self) -> None:
        for key in ("sample_rate", "audio_seconds", "fps", "frames", "image_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"prepare: {key} must be > 0, got {getattr(self, key)}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"prepare: test_fraction must be in (0, 1), got "
                              f"{self.test_fraction}")


def read_annotations(path: Path) -> list[tuple[int, str, str]]:
    """(line, clip, emotion) rows of a CREMA-D annotation CSV (BOM tolerated, blank lines
    skipped)."""
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    rows = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            for n, row in enumerate(csv.reader(f), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2:
                    raise DataError(f"{path}: line {n}: expected clip_name,EMO, got {row}")
                rows.append((n, row[0].strip(), row[1].strip()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable annotation file: {exc}") from exc
    return rows


def emotion_of(wav: Path) -> str:
    """The emotion code in an official clip name `<actor>_<sentence>_<EMO>_<level>`."""
    parts = wav.stem.split("_")
    if len(parts) != 4 or parts[2] not in CLASSES:
        raise DataError(f"{wav}: not an official CREMA-D clip name "
                        f"<actor>_<sentence>_<EMO>_<level> with EMO in {list(CLASSES)}")
    return parts[2]


def split_lines(rows: list[tuple[str, str]]) -> str:
    """`clip,EMO` lines, the authors' annotation format."""
    return "".join(f"{clip},{emo}\n" for clip, emo in rows)


class CremadPreparer(AudioVisualPreparer):
    name = "cremad"
    settings_cls = Settings
    _source = "frames"
    _split_made: dict[str, list[tuple[str, str]]] | None = None

    def _wav_dir(self) -> Path:
        return self.child(self.root, "AudioWAV")

    def _wavs(self) -> dict[str, Path]:
        """{clip: file} of AudioWAV/'s clips: `.wav` in any case, hidden files left out."""
        return {p.stem: p for p in self.listing(self._wav_dir()).values()
                if p.suffix.lower() == ".wav"}

    def _check_root(self) -> None:
        """A folder that holds neither layout: say what was found, and when --root is one
        of the download's own folders (AudioWAV/ itself), which folder to pass."""
        if self.child(self.root, "annotations").is_dir() or self._wav_dir().is_dir():
            return
        raise self.layout_error(
            "AudioWAV/ and VideoFlash/ (the official download), or annotations/ and "
            "Image-01-FPS/ (the authors' layout)")

    def _labelled_clips(self) -> list[tuple[str, str, str, str]]:
        """(split, clip, emotion, where) from annotations/, else from AudioWAV's names."""
        ann = self.child(self.root, "annotations")
        files = {s: self.child(ann, f"{s}.csv") for s in ("train", "test")}
        present = [s for s, p in files.items() if p.is_file()]
        if present:
            if len(present) == 1:
                missing = files["test" if present == ["train"] else "train"]
                raise DataError(f"{missing}: annotation file not found (its pair "
                                f"{files[present[0]].name} is there)")
            self._split_made = None
            return [(s, clip, emo, f"{files[s]}: line {n}")
                    for s in ("train", "test") for n, clip, emo in read_annotations(files[s])]
        wav_dir = self._wav_dir()
        wavs = sorted(self._wavs().values(), key=lambda p: p.name)
        if not wavs:
            raise DataError(f"{wav_dir}: holds no .wav files")
        emos = [emotion_of(w) for w in wavs]
        s = self.settings
        labels = np.array([CLASSES.index(e) for e in emos])
        test = stratified_carve(labels, s.test_fraction, [s.split_seed, 2], "test_fraction")
        out = [("test" if t else "train", w.stem, e, str(w)) for w, e, t in zip(wavs, emos, test)]
        self._split_made = {sp: [(c, e) for split, c, e, _ in out if split == sp]
                            for sp in ("train", "test")}
        return out

    def _video_dirs(self) -> list[tuple[Path, str]]:
        return [(self.child(self.root, d), suffix) for d, suffix in VIDEO_DIRS
                if self.child(self.root, d).is_dir()]

    def _visual_source(self) -> tuple[str, Path]:
        """("frames", Image-<fps>-FPS folder) or ("video", the official video folder)."""
        s = self.settings
        frames_dir = self.child(self.root, f"Image-{s.fps:02d}-FPS")
        if frames_dir.is_dir():
            return "frames", frames_dir
        videos = self._video_dirs()
        if videos:
            return "video", videos[0][0]
        others = sorted(p.name for p in self.listing(self.root).values()
                        if p.is_dir() and p.name.lower().startswith("image-")
                        and p.name.lower().endswith("-fps"))
        if others:
            raise DataError(f"{frames_dir}: the frame folder for fps={s.fps} is missing (nor "
                            "is there a VideoFlash/ folder of videos to extract frames from); "
                            f"found {', '.join(others)} (another --set fps)")
        raise self.layout_error(f"VideoFlash/ (the official videos) or Image-{s.fps:02d}-FPS/ "
                                "(frames) beside AudioWAV/")

    def _video_of(self, clip: str) -> Path:
        for folder, suffix in self._video_dirs():
            path = self.listing(folder).get(f"{clip}{suffix}".lower())
            if path is not None:
                return path
        return self.root / VIDEO_DIRS[0][0] / f"{clip}{VIDEO_DIRS[0][1]}"

    def items(self) -> tuple[list[Item], list[str]]:
        self._check_root()
        kind, frames_dir = self._visual_source()
        self._source = kind
        wavs = self._wavs()
        frames = self.settings.frames
        out = []
        for split, clip, emo, where in self._labelled_clips():
            if emo not in CLASSES:
                raise DataError(f"{where}: emotion {emo!r} not in {list(CLASSES)}")
            wav = wavs.get(clip, self._wav_dir() / f"{clip}.wav")
            if kind == "frames":
                visual, what = self.child(frames_dir, clip), "frame folder"
                check = lambda p: images.frames_problem(p, frames)
            else:
                visual, what, check = self._video_of(clip), "video", video.stream_problem
            if (self.require(wav, "audio file", clip, audio.clip_problem)
                    and self.require(visual, what, clip, check)):
                out.append(Item(clip, CLASSES.index(emo), split,
                                {"wav": str(wav.relative_to(self.root)),
                                 kind: str(visual.relative_to(self.root))}))
        return out, list(CLASSES)

    def sources(self) -> dict:
        return {"visual": self._source}

    def written_files(self) -> dict[str, str]:
        if not self._split_made:
            return {}
        return {f"annotations/{sp}.csv": split_lines(rows) for sp, rows in self._split_made.items()}

    def describe(self) -> dict:
        if not self._split_made:
            return {}
        s = self.settings
        return {"split": f"made from AudioWAV/ file names: test_fraction {s.test_fraction} per "
                         f"class, split_seed {s.split_seed}; written to annotations/"}
