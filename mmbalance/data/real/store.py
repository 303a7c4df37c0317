"""Prepared datasets on disk: resumable preparation and memory-mapped loading.

A prepared folder (`mmbalance prepare NAME --root RAW --out OUT`):

```
OUT/plan.json            what is being prepared: settings, classes, raw sources (frames or
                         videos), every split's item ids and labels, each modality's
                         per-sample shape and dtype
OUT/annotations/...      files a preparer writes (`written_files`): e.g. the CREMA-D split
                         it made from the official download
OUT/manifest.jsonl       one line per flushed batch of finished rows: {"split", "rows"}
OUT/<split>/labels.npy   int64 labels (split = train, val, test)
OUT/<split>/<m>.npy      one .npy per modality, (n, *shape), written in place through
                         np.lib.format.open_memmap and read back with mmap_mode="r"
OUT/index.parquet        one row per sample: split, row, id, label, class, text (if any)
OUT/meta.json            written last: modalities, classes, shapes, encoders, settings
```

Preparation writes each sample's arrays into its row and records finished rows in the
manifest after flushing the arrays, so an interrupted run (an error, Ctrl-C, a killed job)
resumes where it stopped: a re-run with the same settings skips the recorded rows; with other
settings it refuses to mix the two. Ctrl-C raises `PreparationInterrupted` (done / total)
once the finished rows are recorded. `meta.json` appears only when every row is done; the
loader refuses a folder without it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data.dataset import SPLITS, MultimodalDataset, Split
from mmbalance.errors import ConfigError, DataError

FORMAT = 1


@dataclass
class Item:
    """One sample to prepare: where its files are (relative to the raw root) and its label."""

    id: str
    label: int
    split: str
    src: dict[str, Any] = field(default_factory=dict)
    text: str | None = None


class Preparer:
    """What a dataset module provides; `prepare()` below does the rest.

    Subclasses set `name`, `modalities`, `settings_cls` and implement `items()` (the raw
    annotations as `Item`s and the class names), `arrays()` (per-sample shape and dtype per
    modality), `process(item)` (the arrays of one sample) and `encoders()`.
    """

    name = ""
    modalities: tuple[str, ...] = ()
    settings_cls: type = object
    has_val = False  # the raw layout has its own validation split
    path_settings: tuple[str, ...] = ()  # settings naming files: stored as absolute paths

    def __init__(self, root: str | Path, settings: Any = None, skip_missing: bool = False):
        self.root = Path(root)
        self.settings = settings if settings is not None else self.settings_cls()
        for key in self.path_settings:  # plan.json and meta.json say which file was used
            if getattr(self.settings, key):
                setattr(self.settings, key, str(Path(getattr(self.settings, key)).resolve()))
        self.skip_missing = skip_missing
        self.skipped: list[str] = []

    def items(self) -> tuple[list[Item], list[str]]:
        raise NotImplementedError

    def arrays(self) -> dict[str, tuple[tuple[int, ...], str]]:
        raise NotImplementedError

    def process(self, item: Item) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def encoders(self) -> dict[str, dict]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Extra facts for meta.json (e.g. the tokenizer)."""
        return {}

    def notes(self) -> list[str]:
        """Lines the user should read before a long preparation starts (e.g. a fallback)."""
        return []

    def sources(self) -> dict:
        """Which raw files feed each modality (e.g. frame folders or videos): part of the
        plan, so a resume never mixes two sources. Valid after `items()`."""
        return {}

    def written_files(self) -> dict[str, str]:
        """Files to write into the prepared folder ({relative path: text}), e.g. a split
        made at preparation time, in the authors' annotation format. Valid after `items()`."""
        return {}

    # helpers for items()
    def require(self, path: Path, what: str, item_id: str,
                check: Callable[[Path], str | None] | None = None) -> bool:
        """True if `path` exists (and `check(path)` finds no problem); else skip the item
        (skip_missing) or raise naming the file."""
        problem = "not found" if not path.exists() else (check(path) if check else None)
        if problem is None:
            return True
        if self.skip_missing:
            self.skipped.append(f"{item_id}: {what} {path} {problem}")
            return False
        raise DataError(f"{path}: {what} {problem} (item {item_id!r}; pass --skip-missing to "
                        "leave out items whose files are missing or cut short, as the authors' "
                        "loaders leave out missing ones)")


def make_settings(cls: type, values: dict | None) -> Any:
    """A settings dataclass from user values; unknown keys are errors naming the allowed."""
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"prepare: unknown setting(s) {unknown}; allowed: {sorted(known)}")
    for key, value in values.items():
        default = known[key].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"prepare: {key} must be true/false, got {value!r}")
        if isinstance(default, int | float) and not isinstance(default, bool):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"prepare: {key} must be a number, got {value!r}")
            if isinstance(default, float):
                values[key] = float(value)
            elif int(value) != value:
                raise ConfigError(f"prepare: {key} must be an integer, got {value!r}")
            else:
                values[key] = int(value)
        if isinstance(default, str) and not isinstance(value, str):
            values[key] = str(value)
    settings = cls(**values)
    check = getattr(settings, "check", None)
    if check is not None:
        check()
    return settings


def stratified_carve(labels: np.ndarray, fraction: float, seed: int | list[int],
                     key: str = "val_fraction") -> np.ndarray:
    """Boolean mask of the rows carved out (train -> val, or all -> test): per class, seeded.

    Each class gives round(fraction x its size) rows (at least 1 and at most all but one of
    classes with 2+ rows), chosen by one generator walking the classes in sorted order, so
    the split depends only on the labels, the fraction and the seed. `key` names the
    setting in errors.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"{key}: must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = round(fraction * len(idx))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        mask[rng.permutation(idx)[:k]] = True
    return mask


# --------------------------------------------------------------------------- preparation


def _split_items(prep: Preparer, items: list[Item]) -> dict[str, list[Item]]:
    by = {s: [it for it in items if it.split == s] for s in SPLITS}
    bad = [it.split for it in items if it.split not in SPLITS]
    if bad:
        raise DataError(f"{prep.name}: unknown split {bad[0]!r}")
    if not by["val"]:
        settings = prep.settings
        labels = np.array([it.label for it in by["train"]], np.int64)
        mask = stratified_carve(labels, settings.val_fraction, settings.split_seed)
        by["val"] = [it for it, m in zip(by["train"], mask) if m]
        by["train"] = [it for it, m in zip(by["train"], mask) if not m]
        for it in by["val"]:
            it.split = "val"
    for s in SPLITS:
        if not by[s]:
            raise DataError(f"{prep.root}: {prep.name} split '{s}' has no items")
    return by


def _plan(prep: Preparer) -> tuple[dict, dict[str, list[Item]]]:
    items, class_names = prep.items()
    by = _split_items(prep, items)
    for s, its in by.items():
        ids = [it.id for it in its]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DataError(f"{prep.root}: item {dup!r} appears twice in split '{s}'")
    plan = {  # the order is the order in which a mismatch is reported
        "format": FORMAT,
        "dataset": prep.name,
        "settings": asdict(prep.settings),
        "modalities": list(prep.modalities),
        "class_names": list(class_names),
        "arrays": {m: {"shape": list(sh), "dtype": dt} for m, (sh, dt) in prep.arrays().items()},
        **({"sources": prep.sources()} if prep.sources() else {}),
        "splits": {s: {"ids": [it.id for it in by[s]], "labels": [it.label for it in by[s]]}
                   for s in SPLITS},
    }
    return plan, by


def _first_difference(old: Any, new: Any, where: str = "") -> str | None:
    """The first place where two plans differ, in the plan's own key order (settings first)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*new, *(k for k in old if k not in new)]:
            d = _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
            if d:
                return d
        return None
    if isinstance(old, list) and isinstance(new, list) and old != new:
        if len(old) != len(new):
            return f"{where}: {len(old)} entries before, {len(new)} now"
        i = next(i for i, (a, b) in enumerate(zip(old, new)) if a != b)
        return f"{where}[{i}]: {old[i]!r} before, {new[i]!r} now"
    if old != new:
        return f"{where}: {old!r} before, {new!r} now"
    return None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_manifest(path: Path) -> set[tuple[str, int]]:
    done: set[tuple[str, int]] = set()
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            done.update((rec["split"], int(r)) for r in rec["rows"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a crash: its rows are simply redone
    return done


def _open_arrays(out: Path, plan: dict) -> dict[str, dict[str, np.memmap]]:
    arrays: dict[str, dict[str, np.memmap]] = {}
    for s in SPLITS:
        n = len(plan["splits"][s]["ids"])
        (out / s).mkdir(parents=True, exist_ok=True)
        np.save(out / s / "labels.npy", np.asarray(plan["splits"][s]["labels"], np.int64))
        arrays[s] = {}
        for m, spec in plan["arrays"].items():
            path = out / s / f"{m}.npy"
            shape, dtype = (n, *spec["shape"]), np.dtype(spec["dtype"])
            if path.exists():
                try:
                    arr = np.lib.format.open_memmap(path, mode="r+")
                except (OSError, ValueError) as exc:
                    raise DataError(f"{path}: unreadable partial array ({exc}); delete {out} "
                                    "and prepare again") from exc
                if arr.shape != shape or arr.dtype != dtype:
                    raise DataError(f"{path}: holds {arr.shape} {arr.dtype}, the plan needs "
                                    f"{shape} {dtype}; delete {out} and prepare again")
            else:
                arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
            arrays[s][m] = arr
    return arrays


def _worker_init() -> None:
    """One thread per worker process (read by torch/numpy when they are first imported)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def _results(prep: Preparer, items: list[Item], workers: int) -> tuple[Iterable, Any]:
    if workers <= 1:
        return map(prep.process, items), None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: a forked child of a process that already ran torch can deadlock
    ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init)
    return ex.map(prep.process, items, chunksize=4), ex


class PreparationInterrupted(KeyboardInterrupt):
    """Ctrl-C during preparation, after the finished rows were recorded: `done` of `total`."""

    def __init__(self, done: int, total: int):
        super().__init__(f"{done} of {total} done")
        self.done, self.total = done, total


def prepare(prep: Preparer, out: str | Path, progress: bool = True, workers: int = 0,
            flush_every: int = 64, report: Callable[[str], None] | None = None) -> dict:
    """Prepare `prep`'s raw data into `out` (resuming a matching earlier run); return meta.

    `report` receives the lines a person should read (notes, "resuming: ..."). Ctrl-C
    raises `PreparationInterrupted` once the finished rows are on disk.
    """
    from tqdm.auto import tqdm

    report = report or (lambda line: None)
    out = Path(out)
    if not prep.root.is_dir():
        raise DataError(f"{prep.root}: raw data folder not found")
    plan, by = _plan(prep)
    plan_path = out / "plan.json"
    if plan_path.exists():
        try:
            old = json.loads(plan_path.read_text())
        except ValueError as exc:
            raise DataError(f"{plan_path}: unreadable ({exc}); delete {out} and prepare "
                            "again") from exc
        diff = _first_difference(old, plan)
        if diff:
            raise DataError(f"{out}: holds a preparation of other data or settings ({diff}); "
                            "choose another --out or delete that folder")
    elif out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: folder is not empty and holds no preparation; choose an "
                        "empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    for rel, text in prep.written_files().items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / rel, text)
    if not plan_path.exists():
        _atomic_write(plan_path, json.dumps(plan))
    meta_path = out / "meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())

    arrays = _open_arrays(out, plan)
    manifest = out / "manifest.jsonl"
    done = _read_manifest(manifest)
    todo = [(s, r, it) for s in SPLITS for r, it in enumerate(by[s]) if (s, r) not in done]
    total = sum(len(by[s]) for s in SPLITS)
    for line in prep.notes():
        report(line)
    if len(todo) < total:
        report(f"resuming: {total - len(todo)} of {total} already prepared")
    bar = tqdm(total=total, initial=total - len(todo), desc=f"prepare {prep.name}",
               unit="item", disable=not progress)
    pending: list[tuple[str, int]] = []
    finished = total - len(todo)

    def commit() -> None:
        nonlocal finished
        if not pending:
            return
        for s in {s for s, _ in pending}:
            for arr in arrays[s].values():
                arr.flush()
        with manifest.open("a") as f:
            for s in SPLITS:
                rows = [r for sp, r in pending if sp == s]
                if rows:
                    f.write(json.dumps({"split": s, "rows": rows}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        finished += len(pending)
        pending.clear()

    results, executor = _results(prep, [it for _, _, it in todo], workers)
    try:
        for (s, r, it), sample in zip(todo, results):
            for m in prep.modalities:
                a, want = sample[m], plan["arrays"][m]
                if list(a.shape) != want["shape"] or a.dtype != np.dtype(want["dtype"]):
                    raise DataError(f"{prep.name}: item {it.id!r}, modality '{m}': got "
                                    f"{a.shape} {a.dtype}, expected {tuple(want['shape'])} "
                                    f"{want['dtype']}")
                arrays[s][m][r] = a
            pending.append((s, r))
            bar.update(1)
            if len(pending) >= flush_every:
                commit()
    except KeyboardInterrupt:
        commit()
        raise PreparationInterrupted(finished, total) from None
    finally:
        commit()
        bar.close()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return _finish(prep, out, plan, by)


def _finish(prep: Preparer, out: Path, plan: dict, by: dict[str, list[Item]]) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = plan["class_names"]
    cols: dict[str, list] = {"split": [], "row": [], "id": [], "label": [], "class": []}
    texts = any(it.text is not None for s in SPLITS for it in by[s])
    if texts:
        cols["text"] = []
    for s in SPLITS:
        for r, it in enumerate(by[s]):
            cols["split"].append(s)
            cols["row"].append(r)
            cols["id"].append(it.id)
            cols["label"].append(it.label)
            cols["class"].append(names[it.label])
            if texts:
                cols["text"].append(it.text)
    pq.write_table(pa.table(cols), out / "index.parquet")
    meta = {
        "format": FORMAT,
        "dataset": prep.name,
        "modalities": plan["modalities"],
        "num_classes": len(names),
        "class_names": names,
        "arrays": plan["arrays"],
        "counts": {s: len(by[s]) for s in SPLITS},
        "encoders": prep.encoders(),
        "settings": plan["settings"],
        "skipped": prep.skipped,
        "raw_root": str(prep.root.resolve()),
        **prep.describe(),
    }
    _atomic_write(out / "meta.json", json.dumps(meta, indent=1))
    return meta


# -------------------------------------------------------------------------------- loading


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
    path = Path(path)
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
    modalities = list(meta["modalities"])
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
        elif choice in ("mlp", "cnn"):
            enc[m] = {"name": choice}
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
