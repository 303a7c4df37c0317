"""Images, frame folders, videos and optical flow, as uint8/float arrays of fixed size.

Frames are stored `(C, T, H, W)` uint8 (the encoders normalise on the device); that is 4x
less disk than float32 and what the authors' loaders read from JPEGs anyway. Images are read
with Pillow; videos with PyAV (`video.py`), or, where the user extracted them, from a folder
of frame images (in numeric name order: frame_2 before frame_10) or a `.npy` array beside
the video's name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _resample_filter(name: str) -> int:
    from PIL import Image

    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    if name not in filters:
        raise DataError(f"resample: got {name!r}, allowed {sorted(filters)}")
    return filters[name]


def image_array(img: Any, size: int | tuple[int, int], resample: str = "bilinear"
                ) -> np.ndarray:
    """A PIL image as RGB resized to `size` (square, or (h, w)), (3, h, w) uint8."""
    h, w = (size, size) if isinstance(size, int) else size
    arr = np.asarray(img.convert("RGB").resize((w, h), _resample_filter(resample)),
                     dtype=np.uint8)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def read_image(path: str | Path, size: int | tuple[int, int], resample: str = "bilinear"
               ) -> np.ndarray:
    """An image file as RGB resized to `size` (square, or (h, w)), (3, h, w) uint8."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            return image_array(img, size, resample)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image: {exc}") from exc


def image_problem(path: str | Path) -> str | None:
    """Why an image file cannot be decoded completely (a truncated JPEG from a broken copy
    or download), None if it can: a full decode, never padded with grey, since Pillow
    opens such a file and fails, or with `LOAD_TRUNCATED_IMAGES` pads it, only when the
    pixels are read."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # set by some other library: would hide the damage
        return "cannot be checked: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set in this process"
    try:
        img = Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return f"is unreadable: {exc}"
    try:
        with img:
            img.load()
    except (OSError, ValueError, SyntaxError) as exc:
        return f"cannot be decoded completely: {exc}"
    return None


def frames_problem(folder: str | Path, count: int = 1, minimum: int = 1) -> str | None:
    """Why a frame folder cannot give its `count` frames: no images, fewer than `minimum`,
    or one of the frames that would be read (`evenly_spaced`) does not decode completely."""
    if not Path(folder).is_dir():
        return "is not a folder"
    files = list_frames(folder)
    if not files:
        return f"holds no images ({', '.join(IMAGE_SUFFIXES)})"
    if len(files) < minimum:
        return f"holds fewer than {minimum} frames ({len(files)})"
    from mmbalance.data.real.preparer import file_problem

    for f in files:  # a FIFO among them would block a later read: found by stat alone
        problem = file_problem(f)
        if problem:
            return f"has a frame that {problem}: {f.name}"
    for i in dict.fromkeys(evenly_spaced(len(files), count)):
        problem = image_problem(files[i])
        if problem:
            return f"has a frame that {problem}: {files[i].name}"
    return None


def natural_key(name: str) -> list:
    """Sort key that orders the numbers inside names by value: frame_2 before frame_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frames(folder: str | Path) -> list[Path]:
    """Image files of a frame folder, in numeric name order (frame_2 before frame_10)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: frame folder not found")
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith(".")),  # macOS's ._* files are not frames
                  key=lambda p: natural_key(p.name))


def evenly_spaced(n: int, k: int) -> list[int]:
    """`k` indices spread over `n` items: the centre of each of k equal segments.

    Deterministic, so a prepared dataset does not depend on a random draw (the authors
    draw training frames at random per epoch; we fix them once).
    """
    if n <= 0:
        raise ValueError("no items to pick from")
    return [min(n - 1, int((i + 0.5) * n / k)) for i in range(k)]


def read_frames(folder: str | Path, count: int, size: int) -> np.ndarray:
    """`count` evenly spaced frames of a folder, (3, count, size, size) uint8."""
    files = list_frames(folder)
    if not files:
        raise DataError(f"{folder}: frame folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    frames = [read_image(files[i], size) for i in evenly_spaced(len(files), count)]
    return np.stack(frames, axis=1)


def read_video_frames(path: str | Path, fps: float, count: int, size: int) -> np.ndarray:
    """`count` evenly spaced frames of a video sampled at `fps` (what `read_frames` gives
    on the frame folder an `fps` extraction would write), (3, count, size, size) uint8."""
    from mmbalance.data.real.video import sample_frames

    frames = sample_frames(path, fps)
    return np.stack([image_array(frames[i], size) for i in evenly_spaced(len(frames), count)],
                    axis=1)


# ------------------------------------------------------------------------------------ video


def read_video(base: str | Path, start: int, end: int) -> np.ndarray:
    """Frames [start, end) of the video `base` (no suffix) as (T, H, W, 3) uint8.

    Looks for `base.avi` (decoded with PyAV), then a folder `base/` of frame images, then
    `base.npy` holding (T, H, W[, C]) uint8. The first that exists is used.
    """
    base = Path(base)
    avi = base.with_name(base.name + ".avi")
    npy = base.with_name(base.name + ".npy")
    if avi.is_file():
        from mmbalance.data.real.video import decode_range

        return decode_range(avi, start, end)
    if base.is_dir():
        files = list_frames(base)[start:end]
        if not files:
            raise DataError(f"{base}: no frame images in [{start}, {end})")
        out = []
        for f in files:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(f) as img:
                    out.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"{f}: unreadable image: {exc}") from exc
        return np.stack(out)
    if npy.is_file():
        try:
            arr = np.load(npy, mmap_mode="r")[start:end]
        except (OSError, ValueError) as exc:
            raise DataError(f"{npy}: unreadable array: {exc}") from exc
        arr = np.asarray(arr, dtype=np.uint8)
        return np.repeat(arr[..., None], 3, axis=-1) if arr.ndim == 3 else arr
    raise DataError(f"{avi}: video not found (nor a frame folder {base}/ or {npy.name})")


def temporal_window(n: int, t: int) -> tuple[int, int, int]:
    """(first frame, frames taken, zero frames before) of a centred t-frame window over n.

    Longer clips give their central t frames; shorter ones are zero-padded on both sides,
    as the NVGesture code pads clips under 64 frames.
    """
    if n >= t:
        return (n - t) // 2, t, 0
    return 0, n, (t - n) // 2


def resize_crop(frames: np.ndarray, size: int, crop_ratio: float) -> np.ndarray:
    """(T, H, W, C) uint8 -> each frame resized to round(size / crop_ratio) square, then the
    central size x size crop (NVGesture: 256 then centre 224)."""
    from PIL import Image

    full = round(size / crop_ratio)
    off = (full - size) // 2
    out = np.empty((frames.shape[0], size, size, frames.shape[3]), np.uint8)
    for i, f in enumerate(frames):
        img = Image.fromarray(f).resize((full, full), Image.Resampling.BILINEAR)
        out[i] = np.asarray(img)[off:off + size, off:off + size]
    return out


def clip(frames: np.ndarray, t: int, size: int, channels: int, crop_ratio: float) -> np.ndarray:
    """A fixed (channels, t, size, size) uint8 clip: centred window, resize, centre crop."""
    first, taken, before = temporal_window(frames.shape[0], t)
    sel = resize_crop(frames[first:first + taken], size, crop_ratio)[..., :channels]
    out = np.zeros((channels, t, size, size), np.uint8)
    out[:, before:before + taken] = sel.transpose(3, 0, 1, 2)
    return out


def computed_flow_clip(frames: np.ndarray, t: int, size: int, crop_ratio: float) -> np.ndarray:
    """Flow computed from (T, H, W, 3) colour frames (`flow.py`), the window and crop of
    `clip`: (2, t, size, size) float16, vectors in pixels of the size x size frames. The
    window's last frame takes its flow to the frame after the window where there is one."""
    from mmbalance.data.real.flow import clip_flow

    first, taken, before = temporal_window(frames.shape[0], t)
    sel = resize_crop(frames[first:min(frames.shape[0], first + taken + 1)], size, crop_ratio)
    out = np.zeros((2, t, size, size), np.float16)
    out[:, before:before + taken] = clip_flow(sel)[:, :taken].astype(np.float16)
    return out


def flow_clip(path: str | Path, t: int, size: int, crop_ratio: float) -> np.ndarray:
    """Optical flow `.npy` of shape (H, W, 2, T) -> (2, t, size, size) float16.

    The centre crop keeps `crop_ratio` of each side (NVGesture: 224 of 256); if that is not
    `size`, the field is resized bilinearly and its vectors scaled by the same factor.
    """
    import torch
    from torch.nn import functional as F

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: optical flow file not found")
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable array: {exc}") from exc
    if arr.ndim != 4 or arr.shape[2] != 2:
        raise DataError(f"{path}: optical flow must have shape (H, W, 2, T), got {arr.shape}")
    h, w, _, n = arr.shape
    first, taken, before = temporal_window(n, t)
    ch, cw = round(h * crop_ratio), round(w * crop_ratio)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    part = np.array(arr[y0:y0 + ch, x0:x0 + cw, :, first:first + taken], dtype=np.float32)
    flow = torch.from_numpy(part).permute(3, 2, 0, 1)  # (taken, 2, ch, cw)
    if (ch, cw) != (size, size):
        flow = F.interpolate(flow, size=(size, size), mode="bilinear", align_corners=False)
        flow[:, 0] *= size / cw
        flow[:, 1] *= size / ch
    out = np.zeros((2, t, size, size), np.float16)
    out[:, before:before + taken] = flow.permute(1, 0, 2, 3).numpy().astype(np.float16)
    if not np.isfinite(out).all():
        raise DataError(f"{path}: optical flow holds NaN/inf or values beyond float16")
    return out
