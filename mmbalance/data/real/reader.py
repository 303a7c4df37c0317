"""Reading a prepared dataset (the folder `writer.py` describes and writes): its arrays stay on
disk, memory-mapped, and travel to other processes as their paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data.dataset import SPLITS, MultimodalDataset, Split, check_modality_names
from mmbalance.errors import ConfigError, DataError
from mmbalance.limits import check_path


class NpyMemmap(np.memmap):
    """A read-only memory map of a whole `.npy` file that pickles as its path.

    Sending a dataset to another process (Ray tasks, spawn workers) then costs a few bytes
    and the receiver maps the same file, instead of copying gigabytes of frames. Slices and
    batches taken from it are ordinary arrays.
    """

    _npy_path: str | None = None

    def __array_finalize__(self, obj: Any) -> None:
        super().__array_finalize__(obj)
        self._npy_path = None  # a view or a copy is not the whole file

    def __getitem__(self, index: Any) -> Any:
        res = super().__getitem__(index)
        if isinstance(res, NpyMemmap) and res._mmap is None:
            return res.view(np.ndarray)
        return res

    def __reduce_ex__(self, protocol: int) -> Any:
        if self._npy_path is not None:
            return (open_npy, (self._npy_path,))
        return np.asarray(self).__reduce_ex__(protocol)

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)


def open_npy(path: str | Path) -> NpyMemmap:
    """Map a `.npy` file read-only (the `np.load(path, mmap_mode='r')` of the trainer)."""
    path = Path(path)
    try:
        probe = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable array: {exc}") from exc
    if not isinstance(probe, np.memmap):
        raise DataError(f"{path}: not a plain .npy array")
    order = "F" if probe.flags.f_contiguous and not probe.flags.c_contiguous else "C"
    arr = NpyMemmap(path, dtype=probe.dtype, mode="r", offset=probe.offset, shape=probe.shape,
                    order=order)
    del probe
    arr._npy_path = str(path)
    return arr


def load_prepared(path: str | Path, name: str | None = None,
                  encoders: dict[str, str | dict] | None = None,
                  pretrained: dict[str, str] | None = None) -> MultimodalDataset:
    """A prepared folder as a `MultimodalDataset` whose arrays stay on disk (memory-mapped).

    `encoders` overrides backbones per modality (a name keeps the prepared input options,
    e.g. normalisation); `pretrained` gives local checkpoint paths per modality.
    """
    path = check_path(path, f"data: {name or 'prepared'}")  # a name over the OS limits
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        hint = f"mmbalance prepare {name or 'DATASET'} --root RAW_DIR --out {path}"
        state = "preparation is unfinished" if (path / "plan.json").exists() else "not prepared"
        raise DataError(f"{path}: no meta.json ({state}); run `{hint}`")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise DataError(f"{meta_path}: unreadable: {exc}") from exc
    if name is not None and meta.get("dataset") != name:
        raise DataError(f"{path}: holds a prepared {meta.get('dataset')!r} dataset, not {name!r}")
    # checked before any name becomes a file name (`<split>/<m>.npy`: `../x` would leave)
    modalities = check_modality_names(meta.get("modalities"), str(meta_path))
    splits = {}
    for s in SPLITS:
        y_path = path / s / "labels.npy"
        try:
            y = np.load(y_path).astype(np.int64)
        except (OSError, ValueError) as exc:
            raise DataError(f"{y_path}: unreadable labels: {exc}") from exc
        bad = np.flatnonzero((y < 0) | (y >= meta["num_classes"]))
        if bad.size:
            raise DataError(f"{y_path}: row {int(bad[0])}: label {int(y[bad[0]])} outside "
                            f"0..{meta['num_classes'] - 1}")
        x = {}
        for m in modalities:
            arr_path = path / s / f"{m}.npy"
            if not arr_path.is_file():
                raise DataError(f"{arr_path}: array not found")
            arr = open_npy(arr_path)
            want = (len(y), *meta["arrays"][m]["shape"])
            if arr.shape != want:
                raise DataError(f"{arr_path}: shape {arr.shape}, meta.json says {want}")
            x[m] = arr
        splits[s] = Split(x=x, y=y)
    enc = {m: dict(spec) for m, spec in meta["encoders"].items()}
    for m, choice in (encoders or {}).items():
        if m not in modalities:
            raise ConfigError(f"encoder_{m}: no modality {m!r}; the data has {modalities}")
        if isinstance(choice, dict):
            enc[m] = dict(choice)
        elif choice in ("mlp", "cnn"):  # the input step the arrays need, not the backbone's
            keep = ("scale", "mean", "std", "vocab_size", "pad_id")
            enc[m] = {"name": choice, **{k: v for k, v in enc.get(m, {}).items() if k in keep}}
        else:  # another backbone: keep the input options the data needs (norm, vocab)
            enc[m] = {**enc.get(m, {}), "name": choice}
    for m, p in (pretrained or {}).items():
        if m not in modalities:
            raise ConfigError(f"pretrained_{m}: no modality {m!r}; the data has {modalities}")
        if not Path(p).exists():
            raise DataError(f"{p}: pretrained weights for '{m}' not found")
    info = {
        "encoders": enc,
        "pretrained": dict(pretrained or {}),
        "class_names": meta["class_names"],
        "prepared": str(path),
        "settings": meta["settings"],
        **{k: meta[k] for k in ("tokenizer",) if k in meta},
    }
    return MultimodalDataset(name=meta["dataset"], modalities=modalities,
                             num_classes=int(meta["num_classes"]), splits=splits, info=info)
