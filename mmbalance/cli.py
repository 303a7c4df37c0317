"""`mmbalance train | compare | report`: the command line.

User mistakes (bad options, configs, data files, an existing output folder) exit with status 2
and one line on stderr; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmbalance.errors import UserError

TRAIN_KEYS = ("epochs", "batch_size", "lr", "device")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _add_train_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    p.add_argument("--epochs", type=_positive_int, help="training epochs (default 30)")
    p.add_argument("--batch-size", type=_positive_int, help="batch size B (default 64)")
    p.add_argument("--lr", type=float, help="learning rate (default 0.01)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field, e.g. --set optimizer=adam (repeatable)")


def _train_overrides(args: argparse.Namespace) -> dict:
    from mmbalance.spec import parse_value
    from mmbalance.trainers.config import TrainConfig

    out = {k: getattr(args, k) for k in TRAIN_KEYS if getattr(args, k, None) is not None}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(value.strip())
    TrainConfig.from_dict({**out})  # validate now: unknown keys and bad values exit early
    return out


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mmbalance", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="one training run")
    t.add_argument("--data", default="synthetic", help="synthetic | digits | parquet:PATH, "
                   "with options as name:key=value,... (default synthetic)")
    t.add_argument("--method", default="joint", help="joint | ogm-ge | mla (default joint)")
    t.add_argument("--sampler", default="uniform",
                   help="uniform | dus-h | bss-h | bss-l, with options as name:key=value,...")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="output folder (default runs/train-<time>)")
    t.add_argument("--no-progress", action="store_true")
    _add_train_options(t, defaults=True)

    c = sub.add_parser("compare", help="methods × samplers × seeds on one dataset (main job)")
    c.add_argument("--data", default="synthetic")
    c.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds (default 3)")
    c.add_argument("--first-seed", type=int, default=0)
    c.add_argument("--grid", nargs="+", metavar="METHOD/SAMPLER",
                   help="runs to compare, e.g. joint/uniform mla/dus-h:strength=2 "
                   "(default: every method with each sampler it accepts)")
    c.add_argument("--parallel", choices=["auto", "ray", "none"], default="auto",
                   help="auto: Ray tasks when Ray is installed (default)")
    c.add_argument("--address", help="Ray cluster address (default: start a local one)")
    c.add_argument("--out", help="output folder (default runs/compare-<time>)")
    c.add_argument("--no-progress", action="store_true")
    _add_train_options(c, defaults=False)

    r = sub.add_parser("report", help="PNG plots of a run or a comparison folder")
    r.add_argument("dir")
    return p


def _default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args: argparse.Namespace) -> int:
    from mmbalance.data.registry import load_dataset
    from mmbalance.policies.registry import make_sampler
    from mmbalance.runs import new_run_dir, write_json, write_run
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    overrides = _train_overrides(args)
    config = TrainConfig.from_dict({**overrides, "method": args.method, "seed": args.seed})
    sampler = make_sampler(args.sampler)
    dataset = load_dataset(args.data)
    trainer = Trainer(dataset, config, sampler)
    out = new_run_dir(args.out or _default_out("train"))
    resolved = {"data": args.data, "sampler": args.sampler, "sampler_config": sampler.config(),
                "train": config.to_dict(), "best_accuracy": dataset.best_accuracy,
                "modalities": dataset.modalities}
    write_json(out / "config.json", resolved)
    final = None
    try:
        final = trainer.fit(progress=not args.no_progress)
    finally:  # an interrupted run still leaves its logs
        write_run(out, trainer, final, resolved)
    test = final["test"]
    parts = [f"acc {test['acc']:.3f}", f"macro-F1 {test['f1']:.3f}", f"mAP {test['map']:.3f}"]
    parts += [f"acc_{m} {test[f'acc_{m}']:.3f}" for m in dataset.modalities]
    print(f"test (best val epoch {final['best_epoch']}): " + ", ".join(parts))
    print(f"wrote {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mmbalance.compare import (
        DEFAULT_GRID,
        RunSpec,
        check_grid,
        fmt_seconds,
        markdown_table,
        reference_line,
        run_grid,
        seeds_list,
        summarize,
    )
    from mmbalance.data.registry import load_dataset
    from mmbalance.runs import new_run_dir, write_json, write_table

    overrides = _train_overrides(args)
    grid = DEFAULT_GRID
    if args.grid:
        grid = []
        for item in args.grid:
            method, slash, sampler = item.partition("/")
            if not slash:
                raise UserError(f"--grid {item!r}: expected METHOD/SAMPLER, e.g. mla/dus-h")
            grid.append((method, sampler))
    check_grid(grid)
    seeds = seeds_list(args.seeds, args.first_seed)
    dataset = load_dataset(args.data)
    out = new_run_dir(args.out or _default_out("compare"))
    write_json(out / "compare.json", {
        "data": args.data, "seeds": seeds, "grid": [list(g) for g in grid], "train": overrides,
        "modalities": dataset.modalities, "best_accuracy": dataset.best_accuracy,
    })
    specs = [RunSpec(m, s, seed, overrides) for m, s in grid for seed in seeds]
    t0 = time.perf_counter()
    rows = run_grid(dataset, specs, out, parallel=args.parallel, progress=not args.no_progress,
                    address=args.address)
    write_table(out / "results.parquet", rows)
    summary = summarize(rows, dataset.modalities)
    write_table(out / "summary.parquet", summary)
    table = markdown_table(summary, dataset.modalities)
    ref = reference_line(dataset)
    (out / "summary.md").write_text(
        f"Data `{args.data}`, seeds {seeds}, test metrics of the best-validation epoch.\n\n"
        f"{table}\n\n{ref}\n"
    )
    print(table)
    if ref:
        print(ref)
    print(f"{len(rows)} runs in {fmt_seconds(time.perf_counter() - t0)}; wrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mmbalance.report import make_report

    for path in make_report(args.dir):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return {"train": cmd_train, "compare": cmd_compare, "report": cmd_report}[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
