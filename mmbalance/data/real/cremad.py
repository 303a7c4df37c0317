"""CREMA-D (audio-visual emotion, 6 classes), in the layout the OGM-GE/BSS code reads.

Raw layout (`--root RAW`):

```
RAW/annotations/train.csv      rows `clip_name,EMO`, no header; EMO in NEU HAP SAD FEA DIS ANG
RAW/annotations/test.csv
RAW/AudioWAV/<clip_name>.wav
RAW/Image-01-FPS/<clip_name>/*.jpg   frames extracted at 1 fps (`fps` picks the folder)
```

Prepared (`OUT`, see `store.py` for the common files): modalities `audio` (1, 257, T)
float32 log-magnitude spectrogram (22050 Hz, tiled to `audio_seconds`; T = 1 + samples //
353) and `visual` (3, frames, size, size) uint8 frames (ImageNet-normalised by the encoder).
Val is carved from train (stratified, `val_fraction`, `split_seed`). Backbones: ResNet18 for
both (spectrogram with one input channel; frames through the 2D net, averaged over time).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from mmbalance.data.real.audiovisual import AudioVisualPreparer
from mmbalance.data.real.store import Item
from mmbalance.errors import ConfigError, DataError

CLASSES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")  # the authors' class order


@dataclass
class Settings:
    sample_rate: int = 22050
    audio_seconds: float = 20.0  # BSS code tiles to 20 s; the OGM-GE code used 3 s
    fps: int = 1
    frames: int = 1
    image_size: int = 224
    val_fraction: float = 0.1
    split_seed: int = 0

    def check(self) -> None:
        for key in ("sample_rate", "audio_seconds", "fps", "frames", "image_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"prepare: {key} must be > 0, got {getattr(self, key)}")


def read_annotations(path: Path) -> list[tuple[str, str]]:
    """(clip, emotion) rows of a CREMA-D annotation CSV (BOM tolerated, blank lines skipped)."""
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
                rows.append((row[0].strip(), row[1].strip()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable annotation file: {exc}") from exc
    return rows


class CremadPreparer(AudioVisualPreparer):
    name = "cremad"
    settings_cls = Settings

    def items(self) -> tuple[list[Item], list[str]]:
        s = self.settings
        frames_dir = self.root / f"Image-{s.fps:02d}-FPS"
        out = []
        for split in ("train", "test"):
            path = self.root / "annotations" / f"{split}.csv"
            for n, (clip, emo) in enumerate(read_annotations(path), start=1):
                if emo not in CLASSES:
                    raise DataError(f"{path}: line {n}: emotion {emo!r} not in {list(CLASSES)}")
                wav, folder = self.root / "AudioWAV" / f"{clip}.wav", frames_dir / clip
                if self.require(wav, "audio file", clip) and self.require(folder, "frame folder",
                                                                           clip):
                    out.append(Item(clip, CLASSES.index(emo), split,
                                    {"wav": str(wav.relative_to(self.root)),
                                     "frames": str(folder.relative_to(self.root))}))
        return out, list(CLASSES)
