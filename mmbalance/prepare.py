"""`mmbalance prepare DATASET --root RAW_DIR --out OUT_DIR`: raw layout -> training-ready arrays.

The raw layouts are those the authors' code reads (each `mmbalance/data/real/<dataset>.py`
documents its own); the prepared folder is described in `mmbalance/data/real/store.py` and
is then used as `--data DATASET:OUT_DIR`. A re-run with the same settings resumes an
interrupted preparation; one with other settings refuses to touch the folder.
"""

from __future__ import annotations

import argparse
import time

from mmbalance.errors import UserError
from mmbalance.spec import parse_scalar


def add_prepare_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from mmbalance.data.real import REAL_DATASETS

    p = subparsers.add_parser(
        "prepare", help="turn a real dataset's raw files into training-ready arrays",
        description=__doc__.splitlines()[0])
    p.add_argument("dataset", help=" | ".join(REAL_DATASETS))
    p.add_argument("--root", required=True, help="the raw data folder (layout: docs/datasets.md)")
    p.add_argument("--out", required=True, help="the prepared folder (new, or one to resume)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a preparation setting, e.g. --set image_size=112 (repeatable; "
                   "defaults: tune_configs/datasets/DATASET.yaml)")
    p.add_argument("--tokenizer", help="text datasets: a local BERT vocab.txt or model folder "
                   "(default: the hashing tokenizer)")
    p.add_argument("--skip-missing", action="store_true",
                   help="leave out items whose files are missing (as the authors' loaders do), "
                   "truncated (WAV) or without the streams needed (video), listing them in "
                   "meta.json, instead of stopping at the first")
    p.add_argument("--workers", type=int, default=0,
                   help="worker processes decoding files (default 0: in this process)")
    p.add_argument("--no-progress", action="store_true")
    return p


def cmd_prepare(args: argparse.Namespace) -> int:
    import sys

    from mmbalance.data.real import REAL_DATASETS, prepare_dataset, preparer_class
    from mmbalance.data.real.store import PreparationInterrupted

    name = args.dataset.strip().lower()
    if name not in REAL_DATASETS:
        raise UserError(f"prepare: unknown dataset {args.dataset!r}; allowed: "
                        f"{list(REAL_DATASETS)}")
    settings: dict = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        settings[key.strip()] = parse_scalar(value.strip())
    if args.tokenizer is not None:
        if "tokenizer" not in preparer_class(name).settings_cls.__dataclass_fields__:
            raise UserError(f"--tokenizer: dataset {name!r} has no text modality")
        settings["tokenizer"] = args.tokenizer
    if args.workers < 0:
        raise UserError(f"--workers: must be >= 0, got {args.workers}")
    t0 = time.perf_counter()
    try:
        meta = prepare_dataset(name, args.root, args.out, settings,
                               skip_missing=args.skip_missing, progress=not args.no_progress,
                               workers=args.workers,
                               report=lambda line: print(line, file=sys.stderr, flush=True))
    except PreparationInterrupted as stop:
        print(f"interrupted: rerun the same command to resume ({stop.done} of {stop.total} "
              "done)", file=sys.stderr)
        return 130
    counts = ", ".join(f"{s} {n}" for s, n in meta["counts"].items())
    shapes = ", ".join(f"{m} {tuple(a['shape'])} {a['dtype']}" for m, a in meta["arrays"].items())
    print(f"prepared {name} ({counts}; {shapes}) in {time.perf_counter() - t0:.1f} s")
    if meta["skipped"]:
        print(f"left out {len(meta['skipped'])} item(s) with missing or cut files, e.g. "
              f"{meta['skipped'][0]} (all listed in {args.out}/meta.json)")
    print(f"use it as --data {name}:{args.out}")
    return 0
