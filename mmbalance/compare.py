"""The main job: methods × samplers × seeds on one dataset, summarised as a table
(`mmbalance compare`, and `mmbalance evaluate`, which compares a learned policy with the
baselines `evaluation_grid` names).

`run_comparison` checks everything a run would refuse before the output folder exists
(`check_runs`), then trains the grid and writes the folder.

Runs go to Ray tasks when Ray is installed (one CPU each, so the grid fills the machine or
the cluster), otherwise one after another. A run never writes where it trains: it returns its
record (tables as Arrow, metrics, the model's tensors, config) and the driver writes it to
`OUT/runs/<method>__<sampler>__s<seed>` as it finishes, so on a cluster every run folder
lands under the driver's `--out`, whatever node trained it. The table is rebuilt from
whatever finished, so an interrupted comparison keeps its completed runs. A run whose loss
became non-finite is a row flagged `diverged` (its folder keeps the logs up to that step):
it is never averaged into the table, which says how many runs of each cell diverged.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmbalance.data.dataset import MultimodalDataset
from mmbalance.errors import ConfigError, DivergedError, UserError
from mmbalance.runs import (
    RunRecord,
    check_new_run_dir,
    data_record,
    new_run_dir,
    write_json,
    write_record,
    write_table,
    write_text,
)

# Every method with each sampler it takes (DUS needs per-modality batches: mla, joint-uni).
DEFAULT_GRID: list[tuple[str, str]] = [
    ("joint", "uniform"),
    ("joint", "bss-h"),
    ("joint", "bss-l"),
    ("ogm-ge", "uniform"),
    ("joint-uni", "uniform"),
    ("joint-uni", "bss-h"),
    ("joint-uni", "bss-l"),
    ("joint-uni", "dus-h"),
    ("mla", "uniform"),
    ("mla", "dus-h"),
]
ALONE = "alone:"  # `alone:<modality>`: that modality's encoder and head trained by themselves


def resolve_method(method: str, modalities: list[str]) -> tuple[str, dict]:
    """(TrainConfig method, train overrides) of a grid method. `alone:<m>` is the unimodal
    reference: `joint-uni` with only modality m's loss (the other encoders stay at their
    initialisation), so its `probe_acc_<m>` says what m's encoder learns with no competition."""
    if not method.startswith(ALONE):
        return method, {}
    m = method[len(ALONE):]
    if m not in modalities:
        raise ConfigError(f"method {method!r}: unknown modality {m!r}; the data has {modalities}")
    weights = [1.0 if x == m else 0.0 for x in modalities]
    return "joint-uni", {"mm_loss_weight": 0.0, "uni_loss_weights": weights,
                         "inference": "unimodal"}


@dataclass
class RunSpec:
    method: str
    sampler: str
    seed: int
    train: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        def safe(text: str) -> str:
            return text.replace(":", "_").replace(",", "_").replace("=", "-").replace("/", "-")

        return f"{safe(self.method)}__{safe(self.sampler)}__s{self.seed}"


def train_record(config, given: dict) -> dict:
    """What config.json records of a run's training set-up, enough to rebuild it alone:
    `train`, every `TrainConfig` field (read with `dataclasses.fields`, so a field added to
    TrainConfig is recorded with no change here) and the chosen method's options; and
    `unused_method_options`, every option of the other methods, as given (else its default):
    the chosen method ignores them, but a run's set-up said them, e.g. a dataset's
    defaults file. `TrainConfig.from_dict({**train, **unused_method_options})` is the run's
    config again."""
    from dataclasses import MISSING, fields

    from mmbalance.trainers.methods import METHOD_CLASSES

    used = {f.name for f in fields(type(config.options))}
    unused: dict = {}
    for cls in METHOD_CLASSES.values():
        for f in fields(cls.Options):
            if f.name in used or f.name in unused:
                continue
            default = f.default if f.default is not MISSING else (
                f.default_factory() if f.default_factory is not MISSING else None)
            unused[f.name] = given.get(f.name, default)
    return {"train": config.to_dict(), "unused_method_options": dict(sorted(unused.items()))}


def run_one(dataset: MultimodalDataset, spec: RunSpec,
            threads: int = 0) -> tuple[dict, RunRecord]:
    """Train one run; return its summary row and its record (written by the caller)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from mmbalance.policies.registry import make_sampler
    from mmbalance.runs import collect_run
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    method, alone = resolve_method(spec.method, dataset.modalities)
    config = TrainConfig.from_dict({**spec.train, **alone, "method": method, "seed": spec.seed})
    sampler = make_sampler(spec.sampler)
    trainer = Trainer(dataset, config, sampler)
    try:
        final = trainer.fit()
    except DivergedError as exc:
        final, diverged = None, str(exc)
    record = collect_run(trainer, final, {
        "data": dataset.name, "sampler": spec.sampler, "sampler_config": sampler.config(),
        **train_record(config, {**spec.train, **alone}), "best_accuracy": dataset.best_accuracy,
        "num_classes": dataset.num_classes,
    })
    if final is None:
        return {"method": spec.method, "sampler": spec.sampler, "seed": spec.seed,
                "diverged": True, "diverged_at": diverged}, record
    row = {"method": spec.method, "sampler": spec.sampler, "seed": spec.seed,
           "best_epoch": final["best_epoch"], "train_seconds": final["train_seconds"],
           "final_discrepancy": trainer.status.discrepancy, "diverged": False}
    row.update({f"test_{k}": v for k, v in final["test"].items()})
    row.update({f"val_{k}": v for k, v in final["val"].items()})
    return row, record


def _run_on_ray(dataset: MultimodalDataset, spec: RunSpec) -> tuple[dict, RunRecord]:
    """`run_one` as a Ray task: one thread, and the row says which node trained it."""
    import ray

    row, record = run_one(dataset, spec, threads=1)
    row["ray_node"] = ray.get_runtime_context().get_node_id()
    return row, record


def check_grid(grid: list[tuple[str, str]], modalities: list[str] | None = None) -> None:
    """Refuse unknown methods, bad sampler selectors and pairs that cannot train together
    (with `modalities`, also `alone:<m>` naming a modality the data lacks)."""
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.methods import METHOD_CLASSES, METHODS

    # two rows that name the same runs (the same text, or texts that give one run folder
    # name) would train twice and then collide on OUT/runs/<key>
    seen: dict[str, tuple[str, str]] = {}
    for method, sampler in grid:
        key = RunSpec(method, sampler, 0).key
        if key in seen:
            first = "/".join(seen[key])
            same = "twice" if seen[key] == (method, sampler) else f"beside {first!r}"
            raise ConfigError(f"--grid: {method}/{sampler} is given {same}; each "
                              "METHOD/SAMPLER may appear once (its runs go to one folder)")
        seen[key] = (method, sampler)
    for method, sampler in grid:
        if method.startswith(ALONE):
            if modalities is not None:
                resolve_method(method, modalities)
            method = "joint-uni"
        if method not in METHODS:
            raise ConfigError(f"method: unknown {method!r}; allowed: "
                              f"{[*METHODS, ALONE + 'MODALITY']}")
        s = make_sampler(sampler)
        if s.unimodal_batches and not METHOD_CLASSES[method].accepts_unimodal_batches:
            allowed = [n for n, c in METHOD_CLASSES.items() if c.accepts_unimodal_batches]
            raise ConfigError(
                f"sampler '{sampler}' needs unimodal batches; method '{method}' takes paired "
                f"batches only (use one of {allowed})"
            )


def uses_ray(parallel: str, address: str | None = None) -> bool:
    """Whether a grid runs on Ray tasks: `--parallel ray`, or `auto` where Ray is installed
    and the machine has more than one core (or a cluster address is given)."""
    if parallel == "none":
        if address:
            raise ConfigError("--address: runs go to a Ray cluster only with --parallel "
                              "auto or ray, not none")
        return False
    try:
        import ray  # noqa: F401
    except ImportError:
        if parallel == "ray" or address:
            raise ConfigError("--parallel ray / --address: Ray is not installed "
                              "(pip install 'ray[tune]')") from None
        return False
    return parallel == "ray" or bool(address) or (os.cpu_count() or 1) > 1


def run_grid(
    dataset: MultimodalDataset,
    specs: list[RunSpec],
    out: Path | None,
    parallel: str = "auto",
    progress: bool = True,
    address: str | None = None,
    gpus_per_run: float = 0.0,
    finished: dict[int, dict] | None = None,
) -> list[dict]:
    """Run every spec and write each finished run to `out/runs/<key>` (here, on the
    driver); rows come back in spec order. `finished` (spec index -> row) fills as runs
    finish, so a caller stopped by Ctrl-C still has the rows of what completed."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(specs), desc="runs", unit="run", disable=not progress)
    rows: list[dict | None] = [None] * len(specs)

    def finish(i: int, row: dict, record: RunRecord) -> None:
        if out is not None:
            write_record(new_run_dir(out / "runs" / specs[i].key), record)
        rows[i] = row
        if finished is not None:
            finished[i] = row
        bar.update(1)

    if uses_ray(parallel, address):
        import ray

        from mmbalance.ray_session import ray_session

        with ray_session(address):
            # a GPU fraction per run lets several small runs share one GPU
            remote = ray.remote(num_cpus=1, num_gpus=gpus_per_run)(_run_on_ray)
            data_ref = ray.put(dataset)
            pending = {remote.remote(data_ref, s): i for i, s in enumerate(specs)}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(done[0])
                finish(i, *ray.get(done[0]))
    else:
        for i, s in enumerate(specs):
            bar.set_postfix_str(s.key)
            finish(i, *run_one(dataset, s))
    bar.close()
    return [r for r in rows if r is not None]


def summarize(rows: list[dict], modalities: list[str]) -> list[dict]:
    """Mean and std over seeds per (method, sampler), in first-seen order; diverged runs
    are counted (`diverged`), never averaged in (a cell where all diverged has NaN)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["sampler"]), []).append(r)
    metrics = ["test_acc", "test_f1", "test_map"] + [f"test_acc_{m}" for m in modalities]
    metrics += [f"test_probe_acc_{m}" for m in modalities]
    metrics.append("final_discrepancy")
    out = []
    for (method, sampler), every in groups.items():
        rs = [r for r in every if not r.get("diverged")]
        row = {"method": method, "sampler": sampler, "seeds": len(rs),
               "diverged": len(every) - len(rs)}
        for k in metrics:
            v = np.array([r.get(k, np.nan) for r in rs], dtype=np.float64)
            row[f"{k}_mean"] = float(v.mean()) if len(v) else math.nan
            row[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out.append(row)
    return out


def markdown_table(summary: list[dict], modalities: list[str]) -> str:
    """Mean ± std (in %) of accuracy, macro-F1, mAP, each modality's accuracy and each
    encoder's linear-probe accuracy. An `alone:<m>` row shows modality m's columns only
    (its other encoders were never trained, its multimodal prediction means nothing)."""
    cols = [("acc", "test_acc"), ("macro-F1", "test_f1"), ("mAP", "test_map")]
    cols += [(f"acc {m}", f"test_acc_{m}") for m in modalities]
    cols += [(f"probe {m}", f"test_probe_acc_{m}") for m in modalities]
    diverged = any(r.get("diverged") for r in summary)
    head = "| method | sampler | " + " | ".join(c for c, _ in cols) + " | final D |"
    head += " diverged |" if diverged else ""
    lines = [head, "|" + "---|" * (len(cols) + 3 + diverged)]
    for r in summary:
        alone = r["method"][len(ALONE):] if r["method"].startswith(ALONE) else None
        cells = []
        for _, k in cols:
            mean = r.get(k + "_mean", np.nan)
            shown = alone is None or k in (f"test_acc_{alone}", f"test_probe_acc_{alone}")
            cells.append(f"{100 * mean:.1f} ± {100 * r[k + '_std']:.1f}"
                         if r["seeds"] and shown and np.isfinite(mean) else "-")
        d = f"{r['final_discrepancy_mean']:.3f}" if r["seeds"] and alone is None else "-"
        line = f"| {r['method']} | {r['sampler']} | " + " | ".join(cells) + f" | {d} |"
        if diverged:
            n = r["seeds"] + r.get("diverged", 0)
            line += f" {r.get('diverged', 0)} of {n} runs diverged |"
        lines.append(line)
    return "\n".join(lines)


def reference_line(dataset: MultimodalDataset) -> str:
    if not dataset.best_accuracy:
        return ""
    parts = [f"{k} {100 * v:.1f}%" for k, v in dataset.best_accuracy.items()]
    return "Bayes-optimal accuracy (known for this data): " + ", ".join(parts)


def seeds_list(n: int, first: int = 0) -> list[int]:
    if n < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {n}")
    return list(range(first, first + n))


def fmt_seconds(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{math.ceil(s)} s"


def run_comparison(data: str, grid: list[tuple[str, str]], seeds: list[int], overrides: dict,
                   out_path: Path, parallel: str = "auto", address: str | None = None,
                   gpus_per_run: float = 0.0, unimodal_reference: bool = False,
                   progress: bool = True) -> Path:
    """Run a grid into the new folder `out_path` (results, summary, table) and print the
    table; everything a run would refuse is refused before the folder exists."""
    from mmbalance.data.registry import load_dataset
    from mmbalance.ray_session import ray_session_if
    from mmbalance.trainers.config import TrainConfig

    out_path = check_new_run_dir(out_path)
    check_grid(grid)
    dataset = load_dataset(data)
    dataset.check_batch_size(TrainConfig.from_dict(dict(overrides)).batch_size)
    if unimodal_reference:
        grid = [*grid, *((f"{ALONE}{m}", "uniform") for m in dataset.modalities)]
    check_grid(grid, dataset.modalities)
    check_runs(dataset, grid, overrides, seeds, address, gpus_per_run)
    on_ray = uses_ray(parallel, address)
    if on_ray:  # a task the cluster can never run waits forever: refused, here or connected
        from mmbalance.ray_session import known_resources, require_resources

        need = {"CPU": 1, "GPU": gpus_per_run}
        have = known_resources(address)
        if have is not None:
            require_resources("--gpus-per-run", need, have)
    created = not out_path.exists()
    with ray_session_if(on_ray, address):  # connected (or failed) before the folder exists
        if on_ray:
            require_resources("--gpus-per-run", need)
        out = new_run_dir(out_path)
        write_json(out / "compare.json", {
            "data": data, "seeds": seeds, "grid": [list(g) for g in grid], "train": overrides,
            "modalities": dataset.modalities, "best_accuracy": dataset.best_accuracy,
            **data_record(dataset),
        })
        specs = [RunSpec(m, s, seed, overrides) for m, s in grid for seed in seeds]
        t0 = time.perf_counter()
        finished: dict[int, dict] = {}
        interrupted = False
        try:
            rows = run_grid(dataset, specs, out, parallel="ray" if on_ray else "none",
                            progress=progress, address=address, gpus_per_run=gpus_per_run,
                            finished=finished)
        except BaseException as exc:
            if not finished:
                # no run finished: nothing worth keeping, and the same --out must work again
                remove_new_folder(out, created)
                raise
            if not isinstance(exc, KeyboardInterrupt):
                raise
            # Ctrl-C: keep what finished (README), then stop with 130
            rows, interrupted = [finished[i] for i in sorted(finished)], True
    write_table(out / "results.parquet", rows, out)
    summary = summarize(rows, dataset.modalities)
    write_table(out / "summary.parquet", summary, out)
    table = markdown_table(summary, dataset.modalities) if rows else "(no run finished)"
    ref = reference_line(dataset)
    partial = (f"PARTIAL: interrupted after {len(rows)} of {len(specs)} runs; the table holds "
               "the finished runs only.\n\n" if interrupted else "")
    write_text(out / "summary.md",
               f"{partial}Data `{data}`, seeds {seeds}, test metrics of the best-validation "
               f"epoch.\n\n{table}\n\n{ref}\n", out)
    print(table)
    if interrupted:  # the CLI prints the message and exits 130
        raise KeyboardInterrupt(f"partial results: {len(rows)} of {len(specs)} runs finished, "
                                f"written to {out} (results, summary)")
    if ref:
        print(ref)
    diverged = [r for r in rows if r.get("diverged")]
    if diverged:
        print(f"{len(diverged)} of {len(rows)} runs diverged and are not averaged in; first: "
              f"{diverged[0]['diverged_at']}")
    print(f"{len(rows)} runs in {fmt_seconds(time.perf_counter() - t0)}; wrote {out}")
    return out


def remove_new_folder(out: Path, created: bool) -> None:
    """Undo `new_run_dir`: remove the folder it made, or empty the empty one it was given."""
    import shutil

    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def check_runs(dataset: MultimodalDataset, grid: list[tuple[str, str]], overrides: dict,
               seeds: list[int], address: str | None = None, gpus_per_run: float = 0.0) -> None:
    """What a grid's runs would refuse once started (a device this machine lacks, sampler
    options that do not fit the data or batch size), checked before the output folder is
    made, so a failed validation never leaves a folder that blocks the corrected rerun."""
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.quota import QuotaPlan
    from mmbalance.trainers.sampler import SamplerContext
    from mmbalance.trainers.trainer import resolve_device

    if gpus_per_run < 0:
        raise UserError(f"--gpus-per-run: must be >= 0, got {gpus_per_run}")
    for grid_method, spec in grid:
        method, alone = resolve_method(grid_method, list(dataset.modalities))
        config = TrainConfig.from_dict({**overrides, **alone, "method": method,
                                        "seed": seeds[0]})
        if address is None and not gpus_per_run:  # runs here: this machine's devices
            resolve_device(config.device)
        make_sampler(spec).bind(SamplerContext(
            n_train=len(dataset.splits["train"]), modalities=list(dataset.modalities),
            batch_size=config.batch_size, epochs=config.epochs,
            rng=np.random.default_rng(0), num_classes=dataset.num_classes,
            quota_plan=QuotaPlan(config.quota_mode, config.batch_size,
                                 len(dataset.modalities))))


def evaluation_grid(spec: dict, policy: str) -> tuple[str, list[str]]:
    """What `mmbalance evaluate` compares the exported policy at `policy` (whose policy.json
    is `spec`) with, on held-out seeds: (the method it was learned with, the samplers). A
    quota policy: replayed greedily, trained further online from it (`dus-rl:init=`), DUS-RL
    from scratch, uniform and DUS-H; a sequence policy: replayed, uniform, BSS-H and BSS-L."""
    env_cfg, kind = spec["env_config"], spec["env"]
    method = env_cfg.get("method", "mla" if kind == "quota" else "joint")
    if kind == "quota":
        return method, [f"learned:{policy}", f"dus-rl:init={policy}", "dus-rl", "uniform",
                        "dus-h"]
    return method, [f"learned:{policy}", "uniform", "bss-h", "bss-l"]
