"""NVGesture (25 dynamic hand gestures; RGB, depth, optical flow), as the BSS code reads it.

Raw layout (`--root RAW`):

```
RAW/nvgesture_train_correct_cvpr2016_v2.lst  (the BSS code names them
RAW/nvgesture_test_correct_cvpr2016_v2.lst   nvgesture_{train,test}_correct_v2.lst)
    lines such as  path:./Video_data/class_01/subject13_r0 depth:sk_depth:138:218
                   color:sk_color:138:218 duo_left:duo_left:161:254 label:1
RAW/Video_data/class_XX/<subject>/sk_color.avi   (or a folder sk_color/ of frame images,
RAW/Video_data/class_XX/<subject>/sk_depth.avi    or sk_color.npy (T, H, W[, C]) uint8)
RAW/Video_data/flow_data/{train,test}/<i>.npy    optical flow (H, W, 2, T) of the i-th line
```

The official download (nvGesture_v1, from NVIDIA's research page) has the lists and the
videos but no optical flow: `--set flow_source=computed` computes it from the colour frames
(Horn-Schunck, `flow.py`; a substitute for the authors' unnamed flow), instead of reading
`flow_data/`. Labels are 1..25 in the lists and 0..24 here. Frames [start, end) of each
sensor are read (`.avi` with PyAV, the media extra); depth keeps one channel.

Prepared (`OUT`, see `writer.py`): `rgb` (3, frames, size, size) uint8, `depth`
(1, frames, size, size) uint8 and `flow` (2, flow_frames, size, size) float16. Each is the
clip's central window (zero-padded when shorter, as the code pads clips under 64 frames),
frames resized to size / crop_ratio (256) and centre-cropped to size (224): the code's test
transform; flow is centre-cropped the same way. Defaults follow the code: 64 RGB/depth
frames (its training window), all 80 flow frames. Val is carved from train (stratified,
seeded). Backbones: three I3D streams (RGB ImageNet-normalised, depth scaled to [0, 1], flow
raw).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmbalance.data.real import images
from mmbalance.data.real.preparer import Item, Preparer
from mmbalance.data.real.rawfiles import read_text
from mmbalance.errors import ConfigError, DataError

CLASSES = tuple(f"class_{i:02d}" for i in range(1, 26))
FLOW_SOURCES = ("files", "computed")
LISTS = {s: (f"nvgesture_{s}_correct_cvpr2016_v2.lst", f"nvgesture_{s}_correct_v2.lst")
         for s in ("train", "test")}  # the official download's names, then the BSS code's


@dataclass
class Settings:
    frames: int = 64
    flow_frames: int = 80
    image_size: int = 224
    crop_ratio: float = 0.875  # 224 of 256
    val_fraction: float = 0.1
    split_seed: int = 0
    flow_source: str = "files"  # "files": flow_data/*.npy; "computed": from the colour video

    def check(self) -> None:
        for key in ("frames", "flow_frames", "image_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"prepare: {key} must be > 0, got {getattr(self, key)}")
        if self.flow_source not in FLOW_SOURCES:
            raise ConfigError(f"prepare: flow_source must be one of {list(FLOW_SOURCES)}, got "
                              f"{self.flow_source!r}")
        if not 0 < self.crop_ratio <= 1:
            raise ConfigError(f"prepare: crop_ratio must be in (0, 1], got {self.crop_ratio}")


def parse_list(path: Path) -> list[dict]:
    """Entries of an NVGesture `.lst` file: path, label (0-based), per sensor name/start/end."""
    lines = read_text(path, "list file").splitlines()
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        head = fields[0].split(":", 1)
        if head[0] != "path" or len(head) != 2:
            raise DataError(f"{path}: line {n}: expected 'path:...' first, got {fields[0]!r}")
        entry: dict = {"path": head[1], "line": n}
        try:
            for param in fields[1:]:
                parts = param.split(":")
                if parts[0] == "label":
                    entry["label"] = int(parts[1]) - 1
                elif parts[0] in ("color", "depth"):
                    entry[parts[0]] = (parts[1], int(parts[2]), int(parts[3]))
        except (IndexError, ValueError):
            raise DataError(f"{path}: line {n}: malformed field {param!r}") from None
        for key in ("label", "color", "depth"):
            if key not in entry:
                raise DataError(f"{path}: line {n}: no '{key}:' field")
        if not 0 <= entry["label"] < len(CLASSES):
            raise DataError(f"{path}: line {n}: label {entry['label'] + 1} outside 1..25")
        out.append(entry)
    return out


def npy_problem(path: Path) -> str | None:
    """Why a `.npy` array cannot be read or holds nothing; None if it can (header only, the
    array is mapped, not read)."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        return f"is unreadable: {exc}"
    if not isinstance(arr, np.ndarray) or arr.size == 0:
        return "holds no values"
    return None


def sensor_problem(path: Path) -> str | None:
    """A sensor's frames as they come: a video with no decodable frame, a frame folder
    whose first frame does not decode, or an empty or unreadable `.npy`."""
    if path.is_dir():
        return images.frames_problem(path)
    if path.suffix.lower() == ".npy":
        return npy_problem(path)
    from mmbalance.data.real.video import stream_problem

    return stream_problem(path)


class NVGesturePreparer(Preparer):
    name = "nvgesture"
    modalities = ("rgb", "depth", "flow")
    settings_cls = Settings

    def items(self) -> tuple[list[Item], list[str]]:
        if not any((self.root / n).is_file() for names in LISTS.values() for n in names):
            raise self.layout_error(f"{LISTS['train'][0]} (or {LISTS['train'][1]}), the test "
                                    "list and Video_data/")
        out = []
        for split, names in LISTS.items():
            lst = next((self.root / n for n in names if (self.root / n).is_file()),
                       self.root / names[0])
            for idx, entry in enumerate(parse_list(lst)):
                folder = self.root / entry["path"]
                item_id = f"{split}:{idx}:{entry['path']}"
                src: dict = {}
                ok = True
                for sensor in ("color", "depth"):
                    name, start, end = entry[sensor]
                    base = folder / name
                    found = next((p for p in (base.with_name(name + ".avi"), base,
                                              base.with_name(name + ".npy")) if p.exists()),
                                 base.with_name(name + ".avi"))
                    ok = ok and self.require(found, f"{sensor} video", item_id, sensor_problem)
                    src[sensor] = [str(base.relative_to(self.root)), start, end]
                if self.settings.flow_source == "files":
                    flow = self.root / "Video_data" / "flow_data" / split / f"{idx}.npy"
                    ok = ok and self.require(flow, "optical flow", item_id, npy_problem)
                    src["flow"] = str(flow.relative_to(self.root))
                if ok:
                    out.append(Item(item_id, entry["label"], split, src))
        return out, list(CLASSES)

    def arrays(self) -> dict[str, tuple[tuple[int, ...], str]]:
        s = self.settings
        size = s.image_size
        return {"rgb": ((3, s.frames, size, size), "uint8"),
                "depth": ((1, s.frames, size, size), "uint8"),
                "flow": ((2, s.flow_frames, size, size), "float16")}

    def process(self, item: Item) -> dict[str, np.ndarray]:
        s = self.settings
        out, read = {}, {}
        for sensor, key, channels in (("color", "rgb", 3), ("depth", "depth", 1)):
            rel, start, end = item.src[sensor]
            read[sensor] = images.read_video(self.root / rel, start, end)
            out[key] = images.clip(read[sensor], s.frames, s.image_size, channels, s.crop_ratio)
        if "flow" in item.src:
            out["flow"] = images.flow_clip(self.root / item.src["flow"], s.flow_frames,
                                           s.image_size, s.crop_ratio)
        else:
            out["flow"] = images.computed_flow_clip(read["color"], s.flow_frames, s.image_size,
                                                    s.crop_ratio)
        return out

    def encoders(self) -> dict[str, dict]:
        return {"rgb": {"name": "i3d", "scale": 1 / 255, "mean": images.IMAGENET_MEAN,
                        "std": images.IMAGENET_STD},
                "depth": {"name": "i3d", "scale": 1 / 255},
                "flow": {"name": "i3d"}}
