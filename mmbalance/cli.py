"""`mmbalance train | compare | learn | evaluate | sweep | report | prepare`: the command line.

Each command is a subparser built in `build_parser` and a `cmd_<name>` function that imports
what it needs when it runs (so `--help` and a mistyped option stay fast). User mistakes (bad
options, configs, data files, an existing output folder) exit with status 2 and one line on
stderr; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmbalance.errors import DivergedError, UserError, one_line
from mmbalance.limits import MAX_SEED, check_path, check_train_sizes
from mmbalance.spec import parse_scalar

TRAIN_KEYS = ("epochs", "batch_size", "lr", "device")
DATA_HELP = ("synthetic | digits | parquet:PATH | cremad:DIR | ks:DIR | twitter2015:DIR | "
             "sarcasm:DIR | nvgesture:DIR (a folder made by `mmbalance prepare`), with options "
             "as name:key=value,... (default synthetic). For the five paper datasets, "
             "tune_configs/datasets/<name>.yaml replaces the generic defaults shown below; "
             "the values used are printed when the run starts")

ADDRESS_HELP = ("Ray cluster: HOST:PORT of the head (run on one of its nodes), ray://HOST:10001 "
                "(Ray Client), auto (the `ray start` cluster here) or local (default: "
                "RAY_ADDRESS, else a new local cluster)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


def _int_from(low: int, words: str, high: int | None = None):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}") from None
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"expected {words}, got {v}")
        return v

    return parse


_positive_int = _int_from(1, "a positive integer")
_seed = _int_from(0, f"a seed in 0..{MAX_SEED} (2**32 - 1)", MAX_SEED)


def _seeds(args: argparse.Namespace) -> list[int]:
    """--seeds N from --first-seed S: the last seed, S + N - 1, a seed too."""
    from mmbalance.compare import seeds_list

    last = args.first_seed + args.seeds - 1
    if last > MAX_SEED:
        raise UserError(f"--first-seed {args.first_seed} --seeds {args.seeds}: the last seed "
                        f"{last} is above {MAX_SEED} (2**32 - 1)")
    return seeds_list(args.seeds, args.first_seed)


def _finite_float(text: str) -> float:
    """A float option: NaN and infinities are refused where they are read."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _add_train_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    p.add_argument("--epochs", type=_positive_int, help="training epochs (default 30)")
    p.add_argument("--batch-size", type=_positive_int, help="batch size B (default 64)")
    p.add_argument("--lr", type=_finite_float, help="learning rate (default 0.01)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field, e.g. --set optimizer=adam (repeatable)")


def _add_tracking_options(p: argparse.ArgumentParser, yaml: bool = False) -> None:
    where = " (or the YAML's tracking:)" if yaml else ""
    p.add_argument("--tracking", choices=["mlflow"],
                   help="also log to MLflow" + where + ": params, metrics per epoch or "
                   "iteration, the folder's files (needs pip install 'mmbalance[tracking]')")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI (a server, or a folder: a file store); default: "
                   "OUT/mlruns" + (" (or the YAML's tracking_uri:)" if yaml else ""))


def _tracking(args: argparse.Namespace, configured: str | None = None) -> str | None:
    """The tracker a command logs to (the flag, else its YAML's), checked (MLflow
    installed) before any folder is made."""
    from mmbalance.tracking import check_tracking

    kind = args.tracking or configured
    if args.tracking_uri and not kind:
        raise UserError("--tracking-uri: goes with --tracking mlflow")
    check_tracking(kind, "--tracking" if args.tracking else "tracking")
    return kind


def _add_dataset_defaults_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-dataset-defaults", action="store_true",
                   help="for cremad:/ks:/twitter2015:/sarcasm:/nvgesture: data, do not start "
                   "from the papers' settings in tune_configs/datasets/<name>.yaml")


# keys of --set that have their own flag, per command: a --set of one was ignored (seed,
# method) or raced the flag, so it is refused with the flag to use
_FLAG_KEYS = {
    "train": {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
              "device": "--device", "seed": "--seed", "method": "--method"},
    "compare": {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
                "device": "--device", "seed": "--seeds/--first-seed", "method": "--grid"},
    "evaluate": {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
                 "device": "--device", "seed": "--seeds/--first-seed",
                 "method": "the policy's own (it is evaluated with the method it learned on)"},
    "learn": {"iterations": "--iterations", "address": "--address"},
    "sweep": {"num_samples": "--num-samples", "max_concurrent": "--max-concurrent"},
    "prepare": {"tokenizer": "--tokenizer"},
}


def _refuse_flag_keys(command: str, sets: list[str]) -> None:
    """One line for `--set KEY=...` where KEY has a flag of its own on `command`."""
    flags = _FLAG_KEYS.get(command, {})
    for item in sets:
        key = item.partition("=")[0].strip()
        if key in flags:
            flag = flags[key]
            use = flag if flag.startswith("the ") else f"use {flag}"
            raise UserError(f"--set {item!r}: {key!r} has its own option, not --set: {use}")


def _train_overrides(args: argparse.Namespace) -> dict:
    """Flags and --set values, each parsed as its TrainConfig field's type and checked now,
    so unknown keys and bad values exit before anything runs."""
    from mmbalance.trainers.config import TrainConfig

    out = {k: getattr(args, k) for k in TRAIN_KEYS if getattr(args, k, None) is not None}
    _refuse_flag_keys(args.command, args.set)
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    typed = TrainConfig.parse(out)
    # sizes bounded before the ranges (and long before a model is built): --set
    # hidden=2000000000 would try to allocate 128 GB
    check_train_sizes(typed)
    TrainConfig.from_dict({**out})  # checked together (e.g. ranges), not only one by one
    return typed


def _dataset_defaults(data: str, args: argparse.Namespace) -> dict:
    """The papers' training set-up for their datasets: where `--data` names one (cremad:,
    ks:, ...), the `train` section of tune_configs/datasets/<name>.yaml is the base that
    flags and --set override, so `train --data cremad:DIR` runs as the papers did."""
    from mmbalance.data.real import REAL_DATASETS

    name = data.partition(":")[0].strip().lower()
    if name not in REAL_DATASETS or args.no_dataset_defaults:
        return {}
    from mmbalance.data.real.defaults import dataset_defaults, defaults_path
    from mmbalance.errors import ConfigError
    from mmbalance.trainers.config import TrainConfig

    train = dict(dataset_defaults(name)["train"])
    try:
        TrainConfig.from_dict(train)
    except ConfigError as exc:
        raise ConfigError(f"{defaults_path(name)}: train: {exc}") from None
    return train


def _train_settings(args: argparse.Namespace) -> dict:
    """Flags and --set over the paper dataset's set-up; prints the values actually used."""
    defaults = _dataset_defaults(args.data, args)
    flags = _train_overrides(args)
    if defaults:
        name = args.data.partition(":")[0].strip().lower()
        shown = ", ".join(f"{k}={flags[k]} (flag)" if k in flags and flags[k] != v else f"{k}={v}"
                          for k, v in defaults.items())
        print(f"{name} set-up (tune_configs/datasets/{name}.yaml), as used: {shown}; flags and "
              "--set override it, --no-dataset-defaults drops it", file=sys.stderr)
    return {**defaults, **flags}


def _cpu_estimate(data: str, trainer) -> None:
    """On CPU, a paper dataset's epoch can take hours: say so, measured, before starting."""
    from mmbalance.compare import fmt_seconds
    from mmbalance.data.real import REAL_DATASETS
    from mmbalance.models.cost import seconds_per_sample

    if data.partition(":")[0].strip().lower() not in REAL_DATASETS or \
            trainer.device.type != "cpu":
        return
    k = min(2, trainer.n_train)
    per = seconds_per_sample(trainer.model, {m: a[0:k] for m, a in trainer.train_x.items()})
    total = per * trainer.n_train
    shown = f"{total / 3600:.1f} h" if total >= 5400 else fmt_seconds(total)
    print(f"CPU: about {shown} of training per epoch "
          f"({trainer.n_train} samples at {per:.2g} s each, measured on {k}); --device cuda "
          "runs it on a GPU, `mmbalance compare --address ADDR` on a Ray cluster",
          file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mmbalance", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="one training run")
    t.add_argument("--data", default="synthetic", help=DATA_HELP)
    t.add_argument("--method", default="joint",
                   help="joint | joint-uni | ogm-ge | mla (default joint)")
    t.add_argument("--sampler", default="uniform",
                   help="uniform | dus-h | fixed:quotas=A/B | bss-h | bss-l | dus-rl | "
                   "learned:PATH, with options as name:key=value,...")
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--out", help="output folder (default runs/train-<time>)")
    t.add_argument("--no-progress", action="store_true")
    _add_tracking_options(t)
    _add_train_options(t, defaults=True)
    _add_dataset_defaults_flag(t)

    c = sub.add_parser("compare", help="methods × samplers × seeds on one dataset (main job)")
    c.add_argument("--data", default="synthetic", help=DATA_HELP)
    c.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds (default 3)")
    c.add_argument("--first-seed", type=_seed, default=0)
    c.add_argument("--grid", nargs="+", metavar="METHOD/SAMPLER[@KEY=VALUE,...]",
                   help="runs to compare, e.g. joint/uniform mla/dus-h:strength=2 "
                   "mla/dus-h@quota_mode=extra-steps (training options of that row after @; "
                   "default: every method with each sampler it accepts)")
    c.add_argument("--parallel", choices=["auto", "ray", "none"], default="auto",
                   help="auto: Ray tasks when Ray is installed (default)")
    c.add_argument("--address", help=ADDRESS_HELP)
    c.add_argument("--gpus-per-run", type=_finite_float, default=0.0,
                   help="GPU (fraction) each Ray task asks for, e.g. 0.25 (default 0)")
    c.add_argument("--unimodal-reference", action="store_true",
                   help="also train each modality alone (rows alone:<modality>): its probe "
                   "accuracy is what that encoder learns with no competition; adds the "
                   "unimodal ensemble (their logits averaged) and each modality's headroom")
    c.add_argument("--tune-lr", action="store_true",
                   help="choose every row's learning rate on validation from 0.3x, 1x and 3x "
                   "the base (through Ray Tune): no row wins by an under-trained competitor")
    _add_search_baselines(c)
    c.add_argument("--out", help="output folder (default runs/compare-<time>)")
    c.add_argument("--no-progress", action="store_true")
    _add_tracking_options(c)
    _add_train_options(c, defaults=False)
    _add_dataset_defaults_flag(c)

    le = sub.add_parser("learn", help="learn a sampling policy with RLlib from a YAML config")
    le.add_argument("config", nargs="?", help="YAML, e.g. tune_configs/dus_ppo.yaml")
    le.add_argument("--resume", metavar="DIR", help="continue the learn run in DIR from its "
                    "newest checkpoint (--iterations raises its budget)")
    le.add_argument("--iterations", type=_positive_int, help="override the training budget")
    le.add_argument("--out", help="output folder (default runs/learn-<name>-<time>)")
    le.add_argument("--address", help=ADDRESS_HELP + "; the YAML's address: comes before "
                    "RAY_ADDRESS; with --resume, the cluster to continue on")
    le.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a YAML key, dotted, e.g. --set env_config.train.epochs=5")
    le.add_argument("--trust-unsigned", action="store_true",
                    help="with --resume: load a checkpoint without a valid signed manifest "
                    "(only one you trust: RLlib checkpoints are pickles)")
    le.add_argument("--no-progress", action="store_true")
    _add_tracking_options(le, yaml=True)

    ev = sub.add_parser("evaluate", help="a learned policy against the heuristics, held-out seeds")
    ev.add_argument("policy", help="an exported policy folder (OUT/policy of `learn`)")
    ev.add_argument("--data", help="default: the data the policy was trained on")
    ev.add_argument("--seeds", type=_positive_int, default=5)
    ev.add_argument("--first-seed", type=_seed, default=1000,
                    help="first evaluation seed (default 1000: seeds no env episode used)")
    ev.add_argument("--parallel", choices=["auto", "ray", "none"], default="auto")
    ev.add_argument("--address", help=ADDRESS_HELP)
    _add_search_baselines(ev)
    ev.add_argument("--out")
    ev.add_argument("--no-progress", action="store_true")
    _add_tracking_options(ev)
    _add_train_options(ev, defaults=False)

    sw = sub.add_parser("sweep", help="a Ray Tune sweep from a YAML config (or --resume DIR)")
    sw.add_argument("config", nargs="?", help="YAML, e.g. tune_configs/sweep_dus_h.yaml")
    sw.add_argument("--resume", metavar="DIR", help="continue the interrupted sweep in DIR")
    sw.add_argument("--num-samples", type=_positive_int, help="override num_samples")
    sw.add_argument("--max-concurrent", type=_positive_int, help="override max_concurrent")
    sw.add_argument("--out", help="output folder (default runs/sweep-<name>-<time>)")
    sw.add_argument("--address", help=ADDRESS_HELP)
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a YAML key, dotted, e.g. --set base.train.epochs=5")
    sw.add_argument("--trust-unsigned", action="store_true",
                    help="with --resume: restore Tune's state and plain-trial checkpoints "
                    "without a valid signed manifest")
    sw.add_argument("--no-progress", action="store_true")
    _add_tracking_options(sw, yaml=True)

    r = sub.add_parser("report", help="PNG plots of a run or a comparison folder")
    r.add_argument("dir")

    from mmbalance.data.real import REAL_DATASETS

    pr = sub.add_parser("prepare", help="turn a real dataset's raw files into training-ready "
                        "arrays (resumable: rerun the same command)")
    pr.add_argument("dataset", help=" | ".join(REAL_DATASETS))
    pr.add_argument("--root", required=True,
                    help="the raw data folder (layout: docs/datasets.md)")
    pr.add_argument("--out", required=True, help="the prepared folder (new, or one to resume)")
    pr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a preparation setting, e.g. --set image_size=112 (repeatable; "
                    "defaults: tune_configs/datasets/DATASET.yaml)")
    pr.add_argument("--tokenizer", help="text datasets: a local BERT vocab.txt or model folder "
                    "(default: the hashing tokenizer)")
    pr.add_argument("--skip-missing", action="store_true",
                    help="leave out items whose files are missing (as the authors' loaders "
                    "do), truncated (WAV) or without the streams needed (video), listing them "
                    "in meta.json, instead of stopping at the first")
    pr.add_argument("--workers", type=int, default=0,
                    help="worker processes decoding files (default 0: in this process)")
    pr.add_argument("--no-progress", action="store_true")
    return p


def _default_out(kind: str) -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args: argparse.Namespace) -> int:
    from mmbalance.compare import train_record
    from mmbalance.data.registry import load_dataset
    from mmbalance.policies.registry import make_sampler
    from mmbalance.runs import check_new_run_dir, data_record, new_run_dir, write_json, write_run
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    tracking = _tracking(args)
    out_path = check_new_run_dir(args.out or _default_out("train"))
    overrides = _train_settings(args)
    config = TrainConfig.from_dict({**overrides, "method": args.method, "seed": args.seed})
    sampler = make_sampler(args.sampler)
    dataset = load_dataset(args.data)
    dataset.check_batch_size(config.batch_size)
    trainer = Trainer(dataset, config, sampler)
    created = not out_path.exists()
    out = new_run_dir(out_path)
    loaded = trainer.model.pretrained_from()
    for m, info in loaded.items():
        print(f"pretrained {m}: loaded {info['tensors']} tensors from {info['file']}",
              file=sys.stderr)
    resolved = {"data": args.data, "sampler": args.sampler, "sampler_config": sampler.config(),
                **train_record(config, overrides), "best_accuracy": dataset.best_accuracy,
                "modalities": dataset.modalities, **data_record(dataset),
                "pretrained_loaded": loaded}
    write_json(out / "config.json", resolved)
    final = None
    try:
        _cpu_estimate(args.data, trainer)
        final = trainer.fit(progress=not args.no_progress)
    except BaseException as exc:
        _failed_run(out, created, trainer, exc)
        if trainer.global_step or isinstance(exc, DivergedError):
            write_run(out, trainer, None, resolved)  # the logs up to the failure
            if tracking:
                from mmbalance.tracking import log_train

                log_train(out, args.tracking_uri, quiet=True)  # the error is raised below
        raise
    write_run(out, trainer, final, resolved)
    if tracking:
        from mmbalance.tracking import log_train

        log_train(out, args.tracking_uri)
    test = final["test"]
    parts = [f"acc {test['acc']:.3f}", f"macro-F1 {test['f1']:.3f}", f"mAP {test['map']:.3f}"]
    parts += [f"acc_{m} {test[f'acc_{m}']:.3f}" for m in dataset.modalities]
    parts += [f"probe_{m} {test[f'probe_acc_{m}']:.3f}" for m in dataset.modalities
              if f"probe_acc_{m}" in test]
    print(f"test (best val epoch {final['best_epoch']}): " + ", ".join(parts))
    ledger = final["ledger"]
    print(f"compute ({config.quota_mode}): {ledger['optimizer_steps']} optimizer steps; "
          + "; ".join(f"{m} {ledger[f'updates_{m}']} updates, {ledger[f'grad_samples_{m}']} "
                      f"gradient samples" for m in dataset.modalities)
          + f"; {ledger['wall_seconds']:.1f} s")
    print(f"wrote {out}")
    return 0


def _failed_run(out: Path, created: bool, trainer, exc: BaseException) -> None:
    """A run that failed before its first step leaves nothing behind (the same --out works
    for the corrected rerun); one that failed later keeps its logs, and says so. A
    divergence is a result, not a set-up mistake: its folder stays, with its steps."""
    from mmbalance.compare import remove_new_folder

    steps = trainer.global_step  # steps taken (the step log is read at each epoch's end)
    if not steps and not isinstance(exc, DivergedError):
        remove_new_folder(out, created)
        return
    hint = (f"{out} keeps the run's logs up to step {steps}; training cannot be resumed: "
            f"remove it (rm -r {out}) or choose another --out to run again")
    if isinstance(exc, UserError):  # still one line: the hint joins the error
        exc.args = (f"{exc}; {hint}",)
    else:
        print(hint, file=sys.stderr)


def _add_search_baselines(p: argparse.ArgumentParser) -> None:
    """The policies that need no RL, found by a search (Ray Tune), as rows of compare
    and evaluate: the ones an adaptive or learned quota policy must beat."""
    p.add_argument("--best-fixed", action="store_true",
                   help="add, per method with a quota sampler, the best fixed quota share "
                   "chosen on validation (row fixed:best): the constant to beat")
    p.add_argument("--best-schedule", action="store_true",
                   help="add, per method with a quota sampler, the best two-phase schedule "
                   "(shares that switch at an epoch) chosen on validation (row schedule:best)")
    p.add_argument("--pbt", action="store_true",
                   help="add, per method with a quota sampler, Population Based Training over "
                   "the share (Ray Tune; row pbt:share, 4 runs per seed)")


def cmd_compare(args: argparse.Namespace) -> int:
    from mmbalance.compare import DEFAULT_GRID, parse_row, run_comparison

    tracking = _tracking(args)
    overrides = _train_settings(args)
    grid = [parse_row(item) for item in args.grid] if args.grid else DEFAULT_GRID
    seeds = _seeds(args)
    out = run_comparison(args.data, grid, seeds, overrides,
                         Path(args.out or _default_out("compare")), parallel=args.parallel,
                         address=args.address, gpus_per_run=args.gpus_per_run,
                         unimodal_reference=args.unimodal_reference,
                         progress=not args.no_progress, tune_lr=args.tune_lr,
                         best_fixed=args.best_fixed, best_schedule=args.best_schedule,
                         pbt=args.pbt)
    if tracking:
        from mmbalance.tracking import log_comparison

        log_comparison(out, args.tracking_uri)
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    from mmbalance.ray_session import ray_session_if
    from mmbalance.runs import check_new_run_dir
    from mmbalance.tune.learn import check_learn, plan_resume, run_learn
    from mmbalance.tune.learn_config import LearnConfig, apply_overrides

    if args.resume:
        if args.config or args.set or args.out or args.tracking or args.tracking_uri:
            raise UserError("--resume DIR takes its config from DIR; only --iterations, "
                            "--address, --trust-unsigned and --no-progress go with it")
        cfg, start, rows = plan_resume(args.resume, args.iterations, args.trust_unsigned)
        cfg = check_learn(cfg, args.resume, args.address)  # before Ray starts
        _tracking(args, cfg.tracking)
        # where it continues: --address, not the run's past
        with ray_session_if(True, args.address):
            res = run_learn(cfg, args.resume, progress=not args.no_progress, start=start,
                            rows=rows)
    else:
        if not args.config:
            raise UserError("learn: give a CONFIG.yaml, or --resume DIR")
        if args.trust_unsigned:
            raise UserError("--trust-unsigned: only goes with --resume DIR")
        out = check_new_run_dir(args.out or _default_out(f"learn-{Path(args.config).stem}"))
        _refuse_flag_keys("learn", args.set)
        base = LearnConfig.from_yaml(args.config).to_dict()
        sets = list(args.set)
        if args.iterations is not None:
            sets.append(f"iterations={args.iterations}")
        data = apply_overrides(base, sets)
        if _tracking(args, data.get("tracking")):
            data["tracking"] = args.tracking or data["tracking"]
            data["tracking_uri"] = args.tracking_uri or data.get("tracking_uri")
        cfg = LearnConfig.from_dict(data)
        address, origin = (args.address, "--address") if args.address else (cfg.address,
                                                                            "address:")
        cfg = check_learn(cfg, out, address)  # before Ray starts: data, device, GPUs, RLlib
        with ray_session_if(True, address, origin):
            res = run_learn(cfg, out, progress=not args.no_progress)
    rows = res["rows"]
    last = rows[-1] if rows else {}
    print(f"{cfg.algorithm}: {len(rows)} iterations, {int(last.get('env_steps', 0))} env steps, "
          f"last episode return {last.get('episode_return_mean', float('nan')):.3f}")
    print(f"policy: {res['out'] / 'policy'}  (use --sampler learned:{res['out'] / 'policy'})")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import yaml

    from mmbalance.manifest import read_run_id
    from mmbalance.ray_session import known_resources, ray_session_if
    from mmbalance.runs import check_new_run_dir, new_run_dir
    from mmbalance.tune.learn_config import apply_overrides
    from mmbalance.tune.sweep import (
        SWEEP_ID,
        SweepConfig,
        check_storage,
        require_shared_storage,
        run_sweep,
        shared_dataset,
    )
    from mmbalance.tune.sweep.guard import signed_state
    from mmbalance.tune.sweep.run import check_sweep_resources, fault_inside_sweep

    if args.resume:
        ignored = [flag for flag, given in (
            ("CONFIG.yaml", args.config), ("--num-samples", args.num_samples),
            ("--max-concurrent", args.max_concurrent), ("--set", args.set),
            ("--out", args.out), ("--tracking", args.tracking),
            ("--tracking-uri", args.tracking_uri)) if given]
        if ignored:
            raise UserError(f"--resume DIR continues the sweep as it was started; it cannot "
                            f"take {', '.join(ignored)} (start a new sweep to change them)")
        out = Path(args.resume)
        saved = out / "sweep.yaml"
        if not saved.is_file():
            raise UserError(f"--resume {out}: no sweep.yaml there; not a sweep folder")
        if not args.trust_unsigned:  # sweep.yaml and Tune's state as the sweep signed them
            signed_state(out, read_run_id(out, SWEEP_ID))
        cfg = SweepConfig.from_yaml(saved)
        _tracking(args, cfg.tracking)
        dataset = None
    else:
        if not args.config:
            raise UserError("sweep: give a CONFIG.yaml, or --resume DIR")
        if args.trust_unsigned:
            raise UserError("--trust-unsigned: only goes with --resume DIR")
        _refuse_flag_keys("sweep", args.set)
        data = SweepConfig.from_yaml(args.config).to_dict()
        sets = list(args.set)
        if args.num_samples:
            sets.append(f"num_samples={args.num_samples}")
        if args.max_concurrent:
            sets.append(f"max_concurrent={args.max_concurrent}")
        data = apply_overrides(data, sets)
        if _tracking(args, data.get("tracking")):
            data["tracking"] = args.tracking or data["tracking"]
            data["tracking_uri"] = args.tracking_uri or data.get("tracking_uri")
        cfg = SweepConfig.from_dict(data)
        out = check_new_run_dir(args.out or _default_out(f"sweep-{cfg.name}"))
        cfg = fault_inside_sweep(cfg, out)
        check_storage(cfg, out, resume=False)  # before the folder exists
        dataset = shared_dataset(cfg)  # a bad data file, too
    have = known_resources(args.address)  # a trial no node can hold would wait forever
    if have is not None:
        check_sweep_resources(cfg, have)
    with ray_session_if(True, args.address):  # connect, check the storage, then make the folder
        require_shared_storage(cfg, out)
        if not args.resume:
            out = new_run_dir(out)
            (out / "sweep.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        res = run_sweep(cfg, out, progress=not args.no_progress, address=args.address,
                        resume=bool(args.resume), trust_unsigned=args.trust_unsigned,
                        dataset=dataset)
    print(res["summary"])
    if res.get("policy"):
        print(f"best trial's policy: {res['policy']}  (mmbalance evaluate {res['policy']}; "
              f"--sampler learned:{res['policy']})")
    print(f"wrote {out}")
    if res.get("unfinished"):
        print(f"sweep interrupted: partial results ({res['unfinished']} trial(s) unfinished); "
              f"continue it with: mmbalance sweep --resume {out}", file=sys.stderr)
        return 130
    return 0


def learned_cost(spec: dict, sampler: str) -> dict[str, dict]:
    """What learning the exported policy cost, as `run_comparison`'s search-cost table
    takes it: its episodes (each a training run) and their training iterations (env steps
    times the iterations one decision covers; a sequence env decides once per epoch)."""
    learned = spec.get("learned_with")
    if not learned:  # exported before the cost was recorded
        return {}
    return {sampler: {"episodes": int(learned.get("episodes", 0)),
                      "iterations": float(learned.get("iterations", 0))}}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mmbalance.compare import evaluation_setup, run_comparison

    tracking = _tracking(args)
    data, method, samplers, overrides, spec = evaluation_setup(
        args.policy, args.data, _train_overrides(args))
    seeds = _seeds(args)
    out = run_comparison(data, [(method, s) for s in samplers], seeds, overrides,
                         Path(args.out or _default_out("evaluate")), parallel=args.parallel,
                         address=args.address, progress=not args.no_progress,
                         best_fixed=args.best_fixed, best_schedule=args.best_schedule,
                         pbt=args.pbt, learned_costs=learned_cost(spec, samplers[0]))
    if tracking:
        from mmbalance.tracking import log_comparison

        log_comparison(out, args.tracking_uri, experiment="mmbalance-evaluate")
    from mmbalance.report import make_report

    for path in make_report(out):
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mmbalance.report import make_report

    for path in make_report(args.dir):
        print(path)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Raw layout -> training-ready arrays (`mmbalance/data/real/writer.py` describes the
    prepared folder; each dataset module its raw layout), used then as `--data NAME:OUT`. A
    re-run with the same settings resumes an interrupted preparation; one with other
    settings refuses to touch the folder."""
    from mmbalance.data.real import REAL_DATASETS, prepare_dataset, preparer_class
    from mmbalance.data.real.writer import PreparationInterrupted

    name = args.dataset.strip().lower()
    if name not in REAL_DATASETS:
        raise UserError(f"prepare: unknown dataset {args.dataset!r}; allowed: "
                        f"{list(REAL_DATASETS)}")
    settings: dict = {}
    _refuse_flag_keys("prepare", args.set)
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
    check_path(args.root, "--root")
    check_path(args.out, "--out")
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
        reasons = meta.get("skipped_counts") or {}
        counts = "; ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
        print(f"left out {len(meta['skipped'])} item(s) ({counts}), e.g. {meta['skipped'][0]} "
              f"(each listed with its reason in {args.out}/meta.json)")
    if meta.get("hidden_files_ignored"):
        print(f"ignored {meta['hidden_files_ignored']} hidden file(s) (._*, .DS_Store, ...)")
    print(f"use it as --data {name}:{args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        commands = {"train": cmd_train, "compare": cmd_compare, "report": cmd_report,
                    "learn": cmd_learn, "evaluate": cmd_evaluate, "sweep": cmd_sweep,
                    "prepare": cmd_prepare}
        return commands[args.command](args)
    except UserError as exc:
        # one line, but for the one listing of several problems (errors.ProblemList)
        text = str(exc) if getattr(exc, "multiline", False) else one_line(exc)
        print(f"error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # a message says what was kept (compare's partial table)
        print(f"interrupted: {one_line(stop)}" if str(stop) else "interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
