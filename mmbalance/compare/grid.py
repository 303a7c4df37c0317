"""The runs of a comparison: grid rows, one run (`run_one`), every run of a grid
(`run_grid`), and the checks a grid passes before its folder exists.

A grid row is METHOD/SAMPLER, optionally with training options of its own
(`mla/dus-h@quota_mode=extra-steps`): `GridRow`. Runs go to Ray tasks when Ray is installed
(one CPU each, so the grid fills the machine or the cluster), otherwise one after another. A
run never writes where it trains: it returns its record (tables as Arrow, metrics with the
compute ledger, the model's tensors, config) and the driver writes it to `OUT/runs/<key>`
as it finishes, so on a cluster every run folder lands under the driver's `--out`. A run
whose loss became non-finite is a row flagged `diverged` (its folder keeps the logs up to
that step): it is never averaged into the table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmbalance.data.dataset import MultimodalDataset
from mmbalance.errors import ConfigError, DivergedError, UserError
from mmbalance.runs import RunRecord, new_run_dir, write_record

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


@dataclass(frozen=True)
class GridRow:
    """One row of a comparison: a method, a sampler and the training options of this row
    alone (`options`, e.g. (("quota_mode", "extra-steps"),)), over the comparison's."""

    method: str
    sampler: str
    options: tuple[tuple[str, object], ...] = ()

    @property
    def options_label(self) -> str:
        return ",".join(f"{k}={_fmt(v)}" for k, v in self.options)

    @property
    def text(self) -> str:
        """As written on the command line."""
        return f"{self.method}/{self.sampler}" + (f"@{self.options_label}" if self.options else "")


def _fmt(value) -> str:
    return "/".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def parse_row(text: str) -> GridRow:
    """`METHOD/SAMPLER[@KEY=VALUE,...]` (a sampler selector may hold slashes: quotas=16/128)."""
    from mmbalance.spec import parse_spec

    body, at, opts = text.partition("@")
    method, slash, sampler = body.partition("/")
    if not slash or not method.strip() or not sampler.strip():
        raise ConfigError(f"--grid {text!r}: expected METHOD/SAMPLER[@KEY=VALUE,...], e.g. "
                          "mla/dus-h or mla/dus-h@quota_mode=scaled")
    options: tuple = ()
    if at:
        _, given = parse_spec("row:" + opts, "--grid")
        if not given:
            raise ConfigError(f"--grid {text!r}: nothing after '@'")
        options = tuple(sorted(given.items()))
    return GridRow(method.strip(), sampler.strip(), options)


def grid_rows(grid) -> list[GridRow]:
    """Rows from GridRows, (method, sampler) pairs or METHOD/SAMPLER[@...] texts."""
    out = []
    for g in grid:
        if isinstance(g, GridRow):
            out.append(g)
        elif isinstance(g, str):
            out.append(parse_row(g))
        else:
            method, sampler, *rest = g
            out.append(GridRow(method, sampler, tuple(sorted((rest[0] if rest else {}).items()))))
    return out


@dataclass
class RunSpec:
    method: str
    sampler: str
    seed: int
    train: dict = field(default_factory=dict)
    # the table row this run belongs to, where it differs from (method, sampler, ""): a
    # candidate of a row chosen on validation (a learning rate, a fixed share)
    row: tuple[str, str, str] | None = None
    variant: str = ""  # what this candidate varies, e.g. "lr=0.003"

    @property
    def group(self) -> tuple[str, str, str]:
        return self.row or (self.method, self.sampler, "")

    @property
    def key(self) -> str:
        def safe(text: str) -> str:
            return (text.replace(":", "_").replace(",", "_").replace("=", "-")
                    .replace("/", "-").replace(" ", ""))

        method, sampler, options = self.group
        parts = [safe(method), safe(self.sampler if self.row is None else sampler)]
        if options:
            parts.append(safe(options))
        if self.variant:
            parts.append(safe(self.variant))
        return "__".join(parts) + f"__s{self.seed}"


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
    """Train one run; return its summary row (with its compute ledger as `ledger_<key>`
    columns) and its record (written by the caller). An `alone:<m>` run's record also
    carries modality m's validation and test logits (`arrays`), which the unimodal
    ensemble averages."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    method, alone = resolve_method(spec.method, dataset.modalities)
    config = TrainConfig.from_dict({**spec.train, **alone, "method": method, "seed": spec.seed})
    trainer = Trainer(dataset, config, make_sampler(spec.sampler))
    try:
        final, diverged = trainer.fit(), ""
    except DivergedError as exc:
        final, diverged = None, str(exc)
    return finished_run(dataset, spec, trainer, final, diverged)


def finished_run(dataset: MultimodalDataset, spec: RunSpec, trainer, final: dict | None,
                 diverged: str = "") -> tuple[dict, RunRecord]:
    """The summary row and record of a trained run (`final`: its `final_metrics`, None
    where it diverged), wherever it trained: `run_one`, or a PBT trial's last checkpoint."""
    from mmbalance.runs import collect_run

    config, sampler = trainer.config, trainer.sampler
    alone = resolve_method(spec.method, dataset.modalities)[1]
    record = collect_run(trainer, final, {
        "data": dataset.name, "sampler": spec.sampler, "sampler_config": sampler.config(),
        **train_record(config, {**spec.train, **alone}), "best_accuracy": dataset.best_accuracy,
        "num_classes": dataset.num_classes,
    })
    group_method, group_sampler, options = spec.group
    row = {"method": group_method, "sampler": group_sampler, "options": options,
           "variant": spec.variant, "run_sampler": spec.sampler, "seed": spec.seed,
           "lr": config.lr, "quota_mode": config.quota_mode, "key": spec.key}
    if final is None:
        ledger = trainer.ledger.snapshot(trainer.train_seconds)
        row.update({"diverged": True, "diverged_at": diverged})
        row.update({f"ledger_{k}": v for k, v in ledger.items()})
        return row, record
    row.update({"best_epoch": final["best_epoch"], "train_seconds": final["train_seconds"],
                "steps": final["steps"], "final_discrepancy": trainer.status.discrepancy,
                "diverged": False})
    row.update({f"test_{k}": v for k, v in final["test"].items()})
    row.update({f"val_{k}": v for k, v in final["val"].items()})
    row.update({f"ledger_{k}": v for k, v in final["ledger"].items()})
    if spec.method.startswith(ALONE):
        m = spec.method[len(ALONE):]
        record.arrays = {f"{split}_logits": trainer.best_logits(split)[m]
                         for split in ("val", "test")}
    return row, record


def search_cost(rows: list[dict]) -> tuple[int, float]:
    """(training runs, training iterations) that finished rows cost: each row is one run
    and its steps, unless it carries a search of its own (`search_runs`, `search_steps`:
    a PBT row's population)."""
    runs = sum(int(r.get("search_runs", 1)) for r in rows)
    steps = sum(float(r.get("search_steps", r.get("steps", 0)) or 0) for r in rows)
    return runs, steps


def _run_on_ray(dataset: MultimodalDataset, spec: RunSpec) -> tuple[dict, RunRecord]:
    """`run_one` as a Ray task: one thread, and the row says which node trained it."""
    import ray

    row, record = run_one(dataset, spec, threads=1)
    row["ray_node"] = ray.get_runtime_context().get_node_id()
    return row, record


def check_grid(grid, modalities: list[str] | None = None) -> None:
    """Refuse unknown methods, bad sampler selectors, pairs that cannot train together,
    bad row options and duplicate rows (with `modalities`, also `alone:<m>` naming a
    modality the data lacks)."""
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.methods import METHODS, check_method_sampler

    rows = grid_rows(grid)
    # two rows that name the same runs (the same text, or texts that give one run folder
    # name) would train twice and then collide on OUT/runs/<key>
    seen: dict[str, GridRow] = {}
    for row in rows:
        key = RunSpec(row.method, row.sampler, 0, row=(row.method, row.sampler,
                                                       row.options_label)).key
        if key in seen:
            same = "twice" if seen[key] == row else f"beside {seen[key].text!r}"
            raise ConfigError(f"--grid: {row.text} is given {same}; each row may appear once "
                              "(its runs go to one folder)")
        seen[key] = row
    for row in rows:
        method = row.method
        if method.startswith(ALONE):
            if modalities is not None:
                resolve_method(method, modalities)
            method = "joint-uni"
        if method not in METHODS:
            raise ConfigError(f"method: unknown {method!r}; allowed: "
                              f"{[*METHODS, ALONE + 'MODALITY']}")
        if row.options:
            given = dict(row.options)
            if {"method", "seed"} & set(given):
                raise ConfigError(f"--grid {row.text}: 'method' and 'seed' are not row options")
            TrainConfig.parse(given)
        check_method_sampler(method, make_sampler(row.sampler), label=row.sampler)


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


def check_runs(dataset: MultimodalDataset, grid, overrides: dict,
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
    for row in grid_rows(grid):
        method, alone = resolve_method(row.method, list(dataset.modalities))
        config = TrainConfig.from_dict({**overrides, **dict(row.options), **alone,
                                        "method": method, "seed": seeds[0]})
        spec = row.sampler
        if address is None and not gpus_per_run:  # runs here: this machine's devices
            resolve_device(config.device)
        make_sampler(spec).bind(SamplerContext(
            n_train=len(dataset.splits["train"]), modalities=list(dataset.modalities),
            batch_size=config.batch_size, epochs=config.epochs,
            rng=np.random.default_rng(0), num_classes=dataset.num_classes,
            quota_plan=QuotaPlan(config.quota_mode, config.batch_size,
                                 len(dataset.modalities))))


