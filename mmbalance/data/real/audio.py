"""Audio as the OGM-GE/BSS code prepares it: mono WAV at a fixed rate, tiled to a fixed
length, clipped to [-1, 1], STFT (n_fft 512, hop 353, Hann window, centred, zero padding as
librosa >= 0.10) and `log(|S| + 1e-7)`.

WAV files are read with `scipy.io.wavfile` (scipy comes with scikit-learn) and resampled
with a polyphase filter (`scipy.signal.resample_poly`), so no audio library is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from mmbalance.errors import DataError

N_FFT = 512
HOP = 353


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the file's sample rate; DataError names the file."""
    from scipy.io import wavfile

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError, EOFError, TypeError) as exc:
        raise DataError(f"{path}: unreadable WAV file: {exc}") from exc
    if data.dtype == np.uint8:
        x = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        x = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    else:
        x = data.astype(np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x, int(rate)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample from `rate` to `target` Hz (polyphase, anti-aliased)."""
    if rate == target or x.size == 0:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def tile_to(x: np.ndarray, n: int) -> np.ndarray:
    """Repeat the clip until it has `n` samples, then cut (an empty clip becomes silence)."""
    if x.size == 0:
        return np.zeros(n, np.float32)
    reps = -(-n // x.size)
    return np.tile(x, reps)[:n].astype(np.float32, copy=False)


def n_frames(n_samples: int, hop: int = HOP) -> int:
    """STFT frames of a centred transform."""
    return 1 + n_samples // hop


def log_spectrogram(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """`log(|STFT| + 1e-7)`, shape (n_fft // 2 + 1, 1 + len // hop), float32."""
    sig = torch.from_numpy(np.clip(x, -1.0, 1.0).astype(np.float32))
    spec = torch.stft(sig, n_fft=n_fft, hop_length=hop, window=torch.hann_window(n_fft),
                      center=True, pad_mode="constant", return_complex=True)
    return torch.log(spec.abs() + 1e-7).numpy().astype(np.float32)


def wav_spectrogram(path: str | Path, sample_rate: int, seconds: float) -> np.ndarray:
    """The whole pipeline for one file: (1, F, T) float32."""
    x, rate = read_wav(path)
    x = tile_to(resample(x, rate, sample_rate), round(sample_rate * seconds))
    return log_spectrogram(x)[None]


def spectrogram_shape(sample_rate: int, seconds: float) -> tuple[int, int, int]:
    return (1, N_FFT // 2 + 1, n_frames(round(sample_rate * seconds)))
