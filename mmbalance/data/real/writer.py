"""Writing a prepared dataset: resumable preparation into the folder `reader.py` loads.

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
OUT/meta.json            written last: modalities, classes, shapes, encoders, settings,
                         the items left out with their reasons (--skip-missing) and the
                         number of hidden files ignored
```

Before anything is written, the preparer lists every item and checks its files (content
included: `Preparer.require`); every problem found is raised at once (`raise_problems`),
and a split of fewer than 2 classes is an error.

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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data.dataset import SPLITS
from mmbalance.data.real.preparer import Item, Preparer, stratified_carve
from mmbalance.errors import DataError

FORMAT = 1


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
    for s in SPLITS:  # one class makes any accuracy perfect: never a silent result
        present = sorted({it.label for it in by[s]})
        if len(present) < 2:
            raise DataError(f"{prep.root}: {prep.name} split '{s}' would hold {len(present)} "
                            f"class (label {present[0]}, {len(by[s])} items); a classification "
                            "task needs at least 2: check the class list and the annotations")
    return by


def class_counts(by: dict[str, list[Item]], num_classes: int) -> str:
    """`classes per split: train 6, val 6, test 6 (of 6)`: said before a preparation."""
    shown = ", ".join(f"{s} {len({it.label for it in by[s]})}" for s in SPLITS)
    return f"classes per split: {shown} (of {num_classes})"


def _plan(prep: Preparer) -> tuple[dict, dict[str, list[Item]]]:
    items, class_names = prep.items()
    prep.raise_problems()  # every broken file found while listing, named at once
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
    report(class_counts(by, len(plan["class_names"])))
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
    targets = any(it.target is not None for s in SPLITS for it in by[s])
    if texts:
        cols["text"] = []
    if targets:
        cols["target"] = []
    for s in SPLITS:
        for r, it in enumerate(by[s]):
            cols["split"].append(s)
            cols["row"].append(r)
            cols["id"].append(it.id)
            cols["label"].append(it.label)
            cols["class"].append(names[it.label])
            if texts:
                cols["text"].append(it.text)
            if targets:
                cols["target"].append(it.target)
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
        "skipped_counts": prep.skip_counts,
        "hidden_files_ignored": len(prep.hidden),
        "raw_root": str(prep.root.resolve()),
        **prep.describe(),
    }
    _atomic_write(out / "meta.json", json.dumps(meta, indent=1))
    return meta
