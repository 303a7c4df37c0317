"""Audio as the OGM-GE/BSS code prepares it: mono WAV at a fixed rate, tiled to a fixed
length, clipped to [-1, 1], STFT (n_fft 512, hop 353, Hann window, centred, zero padding as
librosa >= 0.10) and `log(|S| + 1e-7)`.

WAV files are read with `scipy.io.wavfile` (scipy comes with scikit-learn) and resampled
with a polyphase filter (`scipy.signal.resample_poly`), so no audio library is needed.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from mmbalance.errors import DataError

N_FFT = 512
HOP = 353
MIN_SECONDS = 0.05  # a clip shorter than this is a broken file, not speech or a sound


def wav_problem(path: str | Path) -> str | None:
    """Why a WAV file cannot be read whole or holds no usable audio, judged from its header
    alone; None if it can.

    Cheap (a few small reads), so preparation checks every clip before it starts: a file
    whose body was cut (an interrupted copy or download) announces more audio than it holds;
    an empty data chunk or one under `MIN_SECONDS` is no clip. `clip_problem` adds the
    content check (silence).
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX",
                                                                          b"RF64"):
            return "is not a RIFF/WAVE file"
        if head[:4] == b"RF64":  # sizes live in a ds64 chunk: left to the reader
            return None
        order = "little" if head[:4] == b"RIFF" else "big"
        pos, byte_rate = 12, 0
        while True:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return "is truncated: no audio data chunk before the end of the file"
            n = int.from_bytes(chunk[4:], order)
            if chunk[:4] == b"fmt ":
                fmt = f.read(12)
                byte_rate = int.from_bytes(fmt[8:12], order) if len(fmt) == 12 else 0
            if chunk[:4] == b"data":
                held = size - pos - 8
                if n > held:
                    return (f"is truncated: its header announces {n} bytes of audio, the file "
                            f"holds {held}")
                if n == 0:  # a valid header and no audio (one such clip is in CREMA-D)
                    return "holds no audio samples (an empty clip)"
                if byte_rate and n / byte_rate < MIN_SECONDS:
                    return (f"is too short: {n / byte_rate:.3f} s of audio, under the "
                            f"{MIN_SECONDS} s floor")
                return None
            pos += 8 + n + (n & 1)


def clip_problem(path: str | Path) -> str | None:
    """`wav_problem`, then the content: a clip whose samples are all one value (silence,
    or a file of zeros) would become a constant spectrogram that teaches nothing."""
    problem = wav_problem(path)
    if problem:
        return problem
    try:
        x, rate = read_wav(path)
    except DataError as exc:
        return f"is unreadable: {str(exc).split(': ', 1)[-1]}"
    return samples_problem(x, rate)


def samples_problem(x: np.ndarray, rate: int) -> str | None:
    """Why decoded samples are no clip: none, fewer than `MIN_SECONDS`, or all one value
    (silence, or a file of zeros, which would become a constant spectrogram)."""
    if x.size == 0:
        return "holds no audio samples (an empty clip)"
    if rate and x.size / rate < MIN_SECONDS:
        return f"is too short: {x.size / rate:.3f} s of audio, under the {MIN_SECONDS} s floor"
    if float(x.max()) == float(x.min()):
        return f"is silent: every sample is {float(x[0]):g}"
    return None


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the file's sample rate; DataError names the file.

    A truncated file is an error, not the few samples it holds (which would be tiled to the
    clip length into a wrong spectrogram).
    """
    from scipy.io import wavfile

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    try:
        problem = wav_problem(path)
    except OSError as exc:
        raise DataError(f"{path}: unreadable WAV file: {exc}") from exc
    if problem:
        raise DataError(f"{path}: WAV file {problem}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="Reached EOF prematurely",
                                    category=wavfile.WavFileWarning)
            rate, data = wavfile.read(path)
    except (ValueError, OSError, EOFError, TypeError, wavfile.WavFileWarning) as exc:
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


def spectrogram(x: np.ndarray, rate: int, sample_rate: int, seconds: float) -> np.ndarray:
    """Samples at `rate` -> resampled, tiled to `seconds`, log spectrogram (1, F, T) float32."""
    x = tile_to(resample(x, rate, sample_rate), round(sample_rate * seconds))
    return log_spectrogram(x)[None]


def wav_spectrogram(path: str | Path, sample_rate: int, seconds: float) -> np.ndarray:
    """The whole pipeline for one WAV file: (1, F, T) float32."""
    return spectrogram(*read_wav(path), sample_rate, seconds)


def spectrogram_shape(sample_rate: int, seconds: float) -> tuple[int, int, int]:
    return (1, N_FFT // 2 + 1, n_frames(round(sample_rate * seconds)))
