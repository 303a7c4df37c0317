"""Kinetics-Sounds (audio-visual action classes), in the layout the BSS code reads.

Raw layout (`--root RAW`):

```
RAW/annotations/train.csv            header `youtube_id,label` (other columns ignored)
RAW/annotations/test.csv
RAW/train_img/Image-01-FPS/<youtube_id>/*.jpg    frames at 1 fps
RAW/train_wav/<youtube_id>.wav
RAW/test_img/Image-01-FPS/<youtube_id>/*.jpg
RAW/test_wav/<youtube_id>.wav
```

Classes are the label strings of train.csv in sorted order (test labels must be among them).
Prepared (`OUT`, see `store.py`): `audio` (1, 257, T) float32 log spectrogram (the BSS code
loads KS at 35400 Hz and tiles to 10 s: T = 1003) and `visual` (3, frames, size, size) uint8
(3 frames, evenly spaced over the clip's frames). A clip needs at least `frames` frames; the
authors' loader likewise drops clips with 3 or fewer. Val is carved from train (stratified,
seeded). Backbones: ResNet18 for both.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from mmbalance.data.real import images
from mmbalance.data.real.audiovisual import AudioVisualPreparer
from mmbalance.data.real.store import Item
from mmbalance.errors import ConfigError, DataError


@dataclass
class Settings:
    sample_rate: int = 35400
    audio_seconds: float = 10.0
    frames: int = 3
    image_size: int = 224
    val_fraction: float = 0.1
    split_seed: int = 0

    def check(self) -> None:
        for key in ("sample_rate", "audio_seconds", "frames", "image_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"prepare: {key} must be > 0, got {getattr(self, key)}")


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

    def items(self) -> tuple[list[Item], list[str]]:
        rows = {s: read_table(self.root / "annotations" / f"{s}.csv", ("youtube_id", "label"))
                for s in ("train", "test")}
        classes = sorted({r["label"] for r in rows["train"]})
        out = []
        for split, table in rows.items():
            path = self.root / "annotations" / f"{split}.csv"
            for n, row in enumerate(table, start=2):
                vid, label = row["youtube_id"], row["label"]
                if label not in classes:
                    raise DataError(f"{path}: line {n}: label {label!r} does not occur in "
                                    "train.csv")
                folder = self.root / f"{split}_img" / "Image-01-FPS" / vid
                wav = self.root / f"{split}_wav" / f"{vid}.wav"
                if not (self.require(folder, "frame folder", vid)
                        and self.require(wav, "audio file", vid)):
                    continue
                if len(images.list_frames(folder)) < self.settings.frames:
                    if self.skip_missing:
                        self.skipped.append(f"{vid}: fewer than {self.settings.frames} frames")
                        continue
                    raise DataError(f"{folder}: fewer than {self.settings.frames} frames "
                                    f"(item {vid!r}; --skip-missing leaves such clips out)")
                out.append(Item(vid, classes.index(label), split,
                                {"wav": str(wav.relative_to(self.root)),
                                 "frames": str(folder.relative_to(self.root))}))
        return out, classes
