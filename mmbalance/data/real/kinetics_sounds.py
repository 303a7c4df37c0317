"""Kinetics-Sounds (audio-visual action classes): from Kinetics videos, or from the layout
the BSS code reads.

Kinetics-Sounds is a subset of the classes of Kinetics-400, whose download is the videos
(`<youtube_id>_<start>_<end>.mp4`, e.g. from the CVDF mirror) and the CSV files
`train.csv`, `validate.csv` (`label,youtube_id,time_start,time_end,split`). Raw layout
(`--root RAW`):

```
RAW/annotations/train.csv   header with `youtube_id` and `label` (other columns ignored):
RAW/annotations/test.csv    Kinetics' train.csv and validate.csv as they are
RAW/train_video/**/<youtube_id>[_<start>_<end>].mp4   (any depth, any of .mp4 .mkv .webm ...)
RAW/test_video/**/...
```

or, as the BSS code reads it, frames extracted at 1 fps and WAVs:

```
RAW/train_img/Image-01-FPS/<youtube_id>/*.jpg
RAW/train_wav/<youtube_id>.wav
RAW/test_img/Image-01-FPS/<youtube_id>/*.jpg
RAW/test_wav/<youtube_id>.wav
```

A split's frame folder wins over its video folder. From a video, the frames are sampled at
1 fps (the middle frame of each second, as the authors' extraction does) and the audio is
its sound track, decoded with PyAV. `classes` names a text file of the class names to keep
(one per line, e.g. the 31 of the BSS code; rows of other classes are left out), so
Kinetics' own CSVs need no editing; "" keeps every label of train.csv. Listed names are
matched to the CSV's by identity (case, spaces and underscores aside, `class_key`); one
that matches none is an error naming it and the CSV's nearest spellings, never a class
silently dropped.

Classes are the kept label strings of train.csv in sorted order (test labels must be among
them). Prepared (`OUT`, see `writer.py`): `audio` (1, 257, T) float32 log spectrogram (the
BSS code loads KS at 35400 Hz and tiles to 10 s: T = 1003) and `visual` (3, frames, size,
size) uint8 (3 frames, evenly spaced over the clip's 1-fps frames). From a frame folder, a
clip needs at least `frames` frames; the authors' loader likewise drops clips with 3 or
fewer. Val is carved from train (per class, seeded). Backbones: ResNet18 for both.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from mmbalance.data.real import audio, images
from mmbalance.data.real.audiovisual import AudioVisualPreparer
from mmbalance.data.real.preparer import Item
from mmbalance.data.real.rawfiles import read_text
from mmbalance.errors import ConfigError, DataError


@dataclass
class Settings:
    sample_rate: int = 35400
    audio_seconds: float = 10.0
    frames: int = 3
    image_size: int = 224
    val_fraction: float = 0.1
    split_seed: int = 0
    classes: str = ""  # a file of class names to keep, one per line; "" = all of train.csv

    def check(self) -> None:
        for key in ("sample_rate", "audio_seconds", "frames", "image_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"prepare: {key} must be > 0, got {getattr(self, key)}")


def read_classes(path: Path) -> list[str]:
    """Class names of a class list file (one per line, blank lines and # comments skipped)."""
    lines = read_text(path, "class list file (classes=)", "utf-8-sig").splitlines()
    names = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not names:
        raise DataError(f"{path}: the class list names no class")
    return names


def class_key(name: str) -> str:
    """A class name as matched: case, runs of spaces and underscores do not count
    (`Playing_Bagpipes` is `playing bagpipes`)."""
    return " ".join(name.replace("_", " ").lower().split())


def match_classes(listed: list[str], csv_names: set[str], path: str) -> set[str]:
    """The CSV's spellings of the listed classes, matched by `class_key`. A listed class
    that matches none is an error naming it and the CSV's nearest spellings: dropping it
    would shrink the task without a word (one class left gives a perfect test accuracy)."""
    import difflib

    by_key: dict[str, str] = {}
    for name in sorted(csv_names):
        by_key.setdefault(class_key(name), name)
    kept, unmatched = set(), []
    for name in listed:
        found = by_key.get(class_key(name))
        if found is None:
            unmatched.append(name)
        else:
            kept.add(found)
    if unmatched:
        keys = list(by_key)
        parts = []
        for name in unmatched:
            near = difflib.get_close_matches(class_key(name), keys, n=3, cutoff=0.6)
            hint = (f"nearest in train.csv: {', '.join(repr(by_key[k]) for k in near)}"
                    if near else "no similar name in train.csv")
            parts.append(f"{name!r} ({hint})")
        raise DataError(f"{path}: {len(unmatched)} listed class(es) not in train.csv (case, "
                        f"spaces and underscores aside): {'; '.join(parts)}")
    return kept


def youtube_key(path: Path) -> str:
    """`<id>` of a Kinetics video file named `<id>_<start>_<end>` (YouTube ids have 11
    characters) or `<id>`."""
    stem = path.stem
    return stem[:11] if len(stem) > 11 and stem[11] == "_" else stem


def _with_sound(path: Path) -> str | None:
    """A video with a decodable picture and a sound track that is a clip (`samples_problem`:
    not empty, not shorter than the floor, not silent), as a WAV must be."""
    from mmbalance.data.real.video import stream_problem, video_audio

    problem = stream_problem(path, ("video", "audio"))
    if problem:
        return problem
    try:
        x, rate = video_audio(path)
    except DataError as exc:
        return f"has an unreadable sound track: {str(exc).split(': ', 1)[-1]}"
    problem = audio.samples_problem(x, rate)
    return f"sound track {problem}" if problem else None


def index_videos(folder: Path, hidden: set[str] | None = None) -> dict[str, Path]:
    """{youtube id: video file} of every video under `folder` (two files of one id: error).
    Hidden files (macOS's `._*`) are left out, and added to `hidden`. FIFOs and other
    special files named like videos are kept: preparation names them, never opens them."""
    from mmbalance.data.real.video import VIDEO_SUFFIXES

    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(folder).parts):
            if hidden is not None:
                hidden.add(str(p))
            continue
        if p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir():
            key = youtube_key(p)
            if key in found:
                raise DataError(f"{p}: a second video of {key!r} (the first is {found[key]})")
            found[key] = p
    return found


def read_table(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV with a header row, checking that `columns` are present."""
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}; header is "
                                f"{reader.fieldnames}")
            return [{c: (row[c] or "").strip() for c in columns} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable annotation file: {exc}") from exc


class KineticsSoundsPreparer(AudioVisualPreparer):
    name = "ks"
    settings_cls = Settings
    path_settings = ("classes",)
    _sources: dict[str, str] | None = None

    def _split_source(self, split: str) -> tuple[str, dict[str, Path] | None]:
        """("frames", None) for the BSS layout, ("video", {id: file}) for Kinetics videos."""
        frames = self._frames_dir(split)
        if frames.is_dir():
            return "frames", None
        videos = self.child(self.root, f"{split}_video")
        if videos.is_dir():
            return "video", index_videos(videos, self.hidden)
        raise self.layout_error(f"{split}_img/Image-01-FPS/ (frames) or {split}_video/ "
                                "(videos)", f" for split '{split}'")

    def _frames_dir(self, split: str) -> Path:
        return self.child(self.child(self.root, f"{split}_img"), "Image-01-FPS")

    def items(self) -> tuple[list[Item], list[str]]:
        ann = self.child(self.root, "annotations")
        if not ann.is_dir():
            raise self.layout_error("annotations/ (train.csv, test.csv) and train_video/, "
                                    "test_video/ (or train_img/, train_wav/, ...)")
        rows = {s: read_table(self.child(ann, f"{s}.csv"), ("youtube_id", "label"))
                for s in ("train", "test")}
        keep = None
        if self.settings.classes:
            keep = match_classes(read_classes(Path(self.settings.classes)),
                                 {r["label"] for r in rows["train"]}, self.settings.classes)
        classes = sorted({r["label"] for r in rows["train"] if keep is None or r["label"] in keep})
        self._sources = {}
        out = []
        for split, table in rows.items():
            path = self.child(ann, f"{split}.csv")
            kind, videos = self._split_source(split)
            self._sources[split] = kind
            for n, row in enumerate(table, start=2):
                vid, label = row["youtube_id"], row["label"]
                if keep is not None and label not in keep:
                    continue
                if label not in classes:
                    raise DataError(f"{path}: line {n}: label {label!r} does not occur in "
                                    "train.csv")
                if videos is not None:
                    video = videos.get(vid, self.root / f"{split}_video" / f"{vid}.mp4")
                    if self.require(video, "video", vid, _with_sound):
                        out.append(Item(vid, classes.index(label), split,
                                        {"video": str(video.relative_to(self.root))}))
                    continue
                folder = self.child(self._frames_dir(split), vid)
                wav = self.child(self.child(self.root, f"{split}_wav"), f"{vid}.wav")
                n = self.settings.frames  # the authors' loader drops clips with too few
                if not (self.require(folder, "frame folder", vid,
                                     lambda p: images.frames_problem(p, n, n))  # noqa: B023
                        and self.require(wav, "audio file", vid, audio.clip_problem)):
                    continue
                out.append(Item(vid, classes.index(label), split,
                                {"wav": str(wav.relative_to(self.root)),
                                 "frames": str(folder.relative_to(self.root))}))
        return out, classes

    def sources(self) -> dict:
        return dict(self._sources or {})
