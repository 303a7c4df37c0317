"""Frames and audio decoded from video files (`.flv`, `.mp4`, `.avi`, ...) with PyAV.

The official downloads ship videos, while the authors' loaders read frame folders and WAVs
they extracted beforehand (`Image-01-FPS/<clip>/*.jpg`, made with moviepy at 1 frame per
second: the frame in the middle of each second). Reading the videos directly does the same
extraction in memory, without writing JPEGs:

- `sample_frames(path, fps)`: one frame at the middle of each 1/fps-second interval of the
  clip (a clip shorter than one interval gives its frame nearest to the middle of the
  interval, i.e. at least one frame), as RGB images;
- `video_audio(path)`: the audio track, downmixed to mono float32 at its own rate (the
  caller resamples it like a WAV's samples).

PyAV is the `media` extra (`pip install 'mmbalance[media]'` or `pip install av`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.errors import DataError

VIDEO_SUFFIXES = (".flv", ".mp4", ".avi", ".mkv", ".webm", ".mov")


def _av(path: Path) -> Any:
    try:
        import av
    except ImportError:
        raise DataError(f"{path}: reading videos needs PyAV (pip install av, or the 'media' "
                        "extra: pip install 'mmbalance[media]')") from None
    return av


def stream_problem(path: Path, kinds: tuple[str, ...] = ("video",)) -> str | None:
    """Why `path` cannot give its `kinds` streams ("video", "audio"): from the container's
    header, then the first frame of each (a video with no decodable frame is left out like a
    missing one); None if it can. Cheap, so preparation checks every file before it starts
    (a Kinetics video without sound is then left out with --skip-missing, like a missing
    WAV, rather than stopping the run midway)."""
    av = _av(path)
    try:
        with av.open(str(path)) as container:
            for kind in kinds:
                if not getattr(container.streams, kind):
                    return f"has no {kind} stream"
    except (av.FFmpegError, OSError, ValueError) as exc:  # the container cannot be opened
        return f"is unreadable: {exc}"
    for kind in kinds:  # a header is not content: one frame of each stream must decode
        try:
            with av.open(str(path)) as container:
                stream = getattr(container.streams, kind)[0]
                if next(iter(container.decode(stream)), None) is None:
                    return f"has no decodable {kind} frame"
        except Exception as exc:  # noqa: BLE001 - decoders raise many types: all the same
            return f"has no decodable {kind} frame ({exc})"
    return None


def _decode(path: Path, kind: str) -> tuple[list, float]:
    """Every decoded frame of the first `kind` ("video" or "audio") stream of `path`, and
    the stream's frame rate (video) or sample rate (audio)."""
    av = _av(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            streams = getattr(container.streams, kind)
            if not streams:
                raise DataError(f"{path}: the file has no {kind} stream")
            stream = streams[0]
            rate = (stream.average_rate or stream.base_rate or 0) if kind == "video" else (
                stream.rate or 0)
            frames = list(container.decode(stream))
    except DataError:
        raise
    except Exception as exc:  # FFmpeg's errors (InvalidDataError, ...), all "unreadable"
        raise DataError(f"{path}: unreadable video: {exc!r}") from exc
    if not frames:
        raise DataError(f"{path}: the {kind} stream holds no decodable frames")
    return frames, float(rate)


def decode_range(path: str | Path, start: int, end: int) -> np.ndarray:
    """Frames [start, end) of a video as (T, H, W, 3) uint8 RGB."""
    path = Path(path)
    av = _av(path)
    out = []
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= end:
                    break
                if i >= start:
                    out.append(frame.to_ndarray(format="rgb24"))
    except Exception as exc:  # FFmpeg errors, no video stream (IndexError), bad frames...
        raise DataError(f"{path}: unreadable video: {exc!r}") from exc
    if not out:
        raise DataError(f"{path}: no frames in [{start}, {end})")
    return np.stack(out)


def frame_times(frames: list, rate: float) -> np.ndarray:
    """Start time (s) of each decoded frame, from the first; the frame index over the
    stream's frame rate where the container gives no increasing timestamps."""
    times = [f.time for f in frames]
    if all(t is not None for t in times):
        t = np.asarray(times, float)
        if len(t) == 1 or (np.diff(t) > 0).all():
            return t - t[0]
    if rate <= 0:
        raise DataError("video without timestamps or frame rate")
    return np.arange(len(frames)) / rate


def sample_indices(times: np.ndarray, fps: float) -> list[int]:
    """Which frames an `fps`-per-second extraction keeps: for each whole 1/fps interval of
    the clip, the last frame starting at or before its middle (at least one interval)."""
    step = np.median(np.diff(times)) if len(times) > 1 else 1.0 / fps
    duration = float(times[-1] + step)
    n = max(1, math.floor(duration * fps + 1e-9))
    mids = (np.arange(n) + 0.5) / fps
    return [int(max(0, np.searchsorted(times, m + 1e-9, side="right") - 1)) for m in mids]


def sample_frames(path: str | Path, fps: float) -> list:
    """One PIL RGB image per 1/fps seconds of the clip (see the module docstring)."""
    path = Path(path)
    frames, rate = _decode(path, "video")
    try:
        times = frame_times(frames, rate)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    keep = sample_indices(times, fps)
    return [frames[i].to_image() for i in keep]


def video_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """The first audio stream as mono float32 samples in [-1, 1] and its sample rate."""
    path = Path(path)
    frames, rate = _decode(path, "audio")
    av = _av(path)
    resampler = av.AudioResampler(format="fltp")  # planar float, own layout and rate
    parts = []
    rate = frames[0].sample_rate or rate
    for frame in frames:
        for out in resampler.resample(frame):
            parts.append(out.to_ndarray())
    for out in resampler.resample(None):
        parts.append(out.to_ndarray())
    x = np.concatenate(parts, axis=1).mean(axis=0)
    return x.astype(np.float32, copy=False), int(rate)
