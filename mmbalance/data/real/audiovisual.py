"""What the audio-visual datasets (CREMA-D, Kinetics-Sounds) share once their items are
listed: a log spectrogram of each clip's audio and evenly spaced frames, read into the
arrays the ResNet18 pair takes.

A subclass lists the items, with `src` (paths relative to the root) holding `wav` (else the
audio comes from the video) and `frames` (a frame folder) or `video` (a video file sampled
at the settings' `fps`, 1 if it has none); its settings have `sample_rate`,
`audio_seconds`, `frames` and `image_size`.
"""

from __future__ import annotations

import numpy as np

from mmbalance.data.real import audio, images, video
from mmbalance.data.real.preparer import Item, Preparer


class AudioVisualPreparer(Preparer):
    modalities = ("audio", "visual")

    def arrays(self) -> dict[str, tuple[tuple[int, ...], str]]:
        s = self.settings
        return {"audio": (audio.spectrogram_shape(s.sample_rate, s.audio_seconds), "float32"),
                "visual": ((3, s.frames, s.image_size, s.image_size), "uint8")}

    def process(self, item: Item) -> dict[str, np.ndarray]:
        s = self.settings
        src = {k: self.root / v for k, v in item.src.items()}
        if "wav" in src:
            spec = audio.wav_spectrogram(src["wav"], s.sample_rate, s.audio_seconds)
        else:
            spec = audio.spectrogram(*video.video_audio(src["video"]), s.sample_rate,
                                     s.audio_seconds)
        if "frames" in src:
            frames = images.read_frames(src["frames"], s.frames, s.image_size)
        else:
            frames = images.read_video_frames(src["video"], getattr(s, "fps", 1), s.frames,
                                              s.image_size)
        return {"audio": spec, "visual": frames}

    def encoders(self) -> dict[str, dict]:
        return {"audio": {"name": "resnet18"},
                "visual": {"name": "resnet18", "scale": 1 / 255, "mean": images.IMAGENET_MEAN,
                           "std": images.IMAGENET_STD}}
