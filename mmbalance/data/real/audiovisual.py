"""What the audio-visual datasets (CREMA-D, Kinetics-Sounds) share once their items are
listed: a log spectrogram of each clip's WAV and evenly spaced frames from its frame folder,
read into the arrays the ResNet18 pair takes.

A subclass lists the items (`src` = {"wav": ..., "frames": ...}, relative to the root) and
has settings with `sample_rate`, `audio_seconds`, `frames` and `image_size`.
"""

from __future__ import annotations

import numpy as np

from mmbalance.data.real import audio, images
from mmbalance.data.real.store import Item, Preparer


class AudioVisualPreparer(Preparer):
    modalities = ("audio", "visual")

    def arrays(self) -> dict[str, tuple[tuple[int, ...], str]]:
        s = self.settings
        return {"audio": (audio.spectrogram_shape(s.sample_rate, s.audio_seconds), "float32"),
                "visual": ((3, s.frames, s.image_size, s.image_size), "uint8")}

    def process(self, item: Item) -> dict[str, np.ndarray]:
        s = self.settings
        return {
            "audio": audio.wav_spectrogram(self.root / item.src["wav"], s.sample_rate,
                                           s.audio_seconds),
            "visual": images.read_frames(self.root / item.src["frames"], s.frames, s.image_size),
        }

    def encoders(self) -> dict[str, dict]:
        return {"audio": {"name": "resnet18"},
                "visual": {"name": "resnet18", "scale": 1 / 255, "mean": images.IMAGENET_MEAN,
                           "std": images.IMAGENET_STD}}
