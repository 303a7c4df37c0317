"""Rows whose setting is chosen on validation, through Ray Tune: the baselines a reviewer
asks for before a sampler's gain counts.

- `--tune-lr`: every row (uniform included) trains at 0.3x, 1x and 3x the learning rate and
  keeps the one with the best mean validation accuracy over the seeds, so no row wins
  because its competitor's learning rate under-trains it.
- `--best-fixed`: for each method with a quota sampler in the grid, a row `fixed:best`: the
  fixed quota share with the best mean validation accuracy, from a grid of shares. An
  adaptive or learned sampler is worth its machinery only where it beats this constant.
- `--best-schedule`: likewise a row `schedule:best`: the best two-phase schedule (shares
  that switch at an epoch, the `schedule` sampler) on validation, from a grid of share
  pairs and switch epochs: the simplest time-varying policy a learned one must beat.
- `--pbt` (`pbt.py`): Population Based Training over the share, Tune's own adaptive
  schedule search, one population per seed.

Every row records what finding it cost (`search_runs`, `search_steps`: the training runs
and training iterations of all its candidates over all seeds), so a policy found by a
larger search is seen to be one.

Each candidate run is one Tune trial (`compare_trial`): it trains `run_one`, reports its
validation accuracy and its row, and leaves its run record as the trial's checkpoint, which
the driver copies to `OUT/runs/<key>`. Every candidate's run is kept; the table holds the
chosen ones (`results.parquet`: `chosen`).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mmbalance.compare.grid import ALONE, GridRow, RunSpec, run_one, search_cost
from mmbalance.data.dataset import MultimodalDataset
from mmbalance.errors import ConfigError, UserError

LR_FACTORS = (0.3, 1.0, 3.0)
BEST_FIXED = "fixed:best"
BEST_SCHEDULE = "schedule:best"
CHOSEN_ROWS = (BEST_FIXED, BEST_SCHEDULE)


def share_candidates(num_modalities: int, batch_size: int) -> list[str]:
    """Fixed quota selectors spanning the shares a constant policy could take: for two
    modalities, the first one's share in sixths (1/6 .. 5/6); for more, uniform and each
    modality fed 3x or starved to 1/3 of the others."""
    b = batch_size
    if num_modalities == 2:
        return [f"fixed:quotas={max(1, k * b // 3)}/{max(1, (6 - k) * b // 3)}"
                for k in range(1, 6)]
    out = ["/".join([str(b)] * num_modalities)]
    for j in range(num_modalities):
        for w in (3, 1 / 3):
            q = [b] * num_modalities
            q[j] = max(1, round(b * w))
            out.append("/".join(map(str, q)))
    return [f"fixed:quotas={q}" for q in out]


def schedule_candidates(num_modalities: int, batch_size: int, epochs: int) -> list[str]:
    """Two-phase schedules (`schedule` selectors) spanning what a time-varying policy with
    one switch could do: every ordered pair of distinct shares (two modalities: the first
    one's share 1/6, 1/2 or 5/6; more: uniform or one modality fed 3x) switching after a
    third or two thirds of the epochs. A pair of equal shares is a constant: `fixed:best`."""
    if epochs < 2:
        raise ConfigError(f"--best-schedule: a schedule switches at an epoch, so the run "
                          f"needs at least 2 epochs, got {epochs}")
    b = batch_size
    if num_modalities == 2:
        shares = [f"{max(1, k * b // 3)}/{max(1, (6 - k) * b // 3)}" for k in (1, 3, 5)]
    else:
        shares = ["/".join([str(b)] * num_modalities)]
        for j in range(num_modalities):
            q = [b] * num_modalities
            q[j] = 3 * b
            shares.append("/".join(map(str, q)))
    switches = sorted({min(epochs - 1, max(1, round(epochs * f))) for f in (1 / 3, 2 / 3)})
    return [f"schedule:quotas={a},then={c},at={e}"
            for e in switches for a in shares for c in shares if a != c]


def is_quota_sampler(selector: str) -> bool:
    """Whether a selector's sampler feeds per-modality quotas (what its class says)."""
    from mmbalance.policies.registry import make_sampler

    return selector not in CHOSEN_ROWS and make_sampler(selector).unimodal_batches


def expand(rows: list[GridRow], seeds: list[int], overrides: dict, base_lr: float,
           tune_lr: bool, best_fixed: bool, modalities: list[str],
           batch_size: int, best_schedule: bool = False,
           epochs: int = 0) -> tuple[list[GridRow], list[RunSpec]]:
    """The rows (with the `fixed:best` and `schedule:best` rows added) and every
    candidate run."""
    rows = list(rows)
    methods = list(dict.fromkeys(r.method for r in rows if is_quota_sampler(r.sampler)))
    for wanted, name in ((best_fixed, BEST_FIXED), (best_schedule, BEST_SCHEDULE)):
        if wanted:
            rows += [GridRow(method, name) for method in methods]
    specs = []
    for row in rows:
        samplers = (share_candidates(len(modalities), batch_size) if row.sampler == BEST_FIXED
                    else schedule_candidates(len(modalities), batch_size, epochs)
                    if row.sampler == BEST_SCHEDULE else [row.sampler])
        train = {**overrides, **dict(row.options)}
        lr0 = float(train.get("lr", base_lr))
        lrs = [lr0 * f for f in LR_FACTORS] if tune_lr else [None]
        group = (row.method, row.sampler, row.options_label)
        for sampler in samplers:
            for lr in lrs:
                variant = []
                if sampler != row.sampler:
                    variant.append(sampler.split(":", 1)[1])
                if lr is not None:
                    variant.append(f"lr={lr:.3g}")
                for seed in seeds:
                    specs.append(RunSpec(row.method, sampler, seed,
                                         {**train, **({"lr": lr} if lr is not None else {})},
                                         row=group, variant=",".join(variant)))
    return rows, specs


def _selection_score(row: dict) -> float:
    """What a candidate is chosen by: validation accuracy (an `alone:<m>` row: modality
    m's, since its other heads never train)."""
    if row.get("diverged"):
        return math.nan
    if row["method"].startswith(ALONE):
        return float(row.get(f"val_acc_{row['method'][len(ALONE):]}", math.nan))
    return float(row.get("val_acc", math.nan))


def choose(rows: list[dict]) -> list[dict]:
    """Mark (`chosen`) per table row the candidate with the best mean validation score over
    its seeds (a candidate with a diverged seed scores that seed as 0); rows without
    candidates are chosen as they are."""
    by_row: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        key = (r["method"], r["sampler"], r.get("options", ""))
        by_row.setdefault(key, {}).setdefault(r.get("variant", ""), []).append(r)
    for variants in by_row.values():
        def score(rs: list[dict]) -> float:
            vals = [_selection_score(r) for r in rs]
            return float(np.mean([v if math.isfinite(v) else 0.0 for v in vals]))

        best = max(variants, key=lambda v: score(variants[v]))  # ties: the first listed
        runs, steps = search_cost([r for rs in variants.values() for r in rs])
        for variant, rs in variants.items():
            for r in rs:
                r["chosen"] = variant == best
                r["search_runs_total"], r["search_steps_total"] = runs, steps
    return rows


def compare_trial(config: dict, dataset: MultimodalDataset | None = None,
                  specs: list[RunSpec] | None = None) -> None:
    """One candidate run as a Tune trial (module-level: Ray workers import it by name)."""
    from ray import tune

    from mmbalance.runs import write_record

    spec = specs[int(config["index"])]
    row, record = run_one(dataset, spec, threads=1)
    with tempfile.TemporaryDirectory() as d:
        write_record(Path(d), record)
        tune.report({"score": _selection_score(row), "row_json": json.dumps(row, default=float)},
                    checkpoint=tune.Checkpoint.from_directory(d))


def run_with_tune(dataset: MultimodalDataset, specs: list[RunSpec], out: Path,
                  gpus_per_run: float = 0.0, progress: bool = True) -> list[dict]:
    """Every candidate as a Tune trial; each run's folder is copied to `out/runs/<key>`.
    Returns the rows in spec order."""
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(compare_trial, dataset=dataset, specs=specs),
        {"cpu": 1, "gpu": gpus_per_run})
    storage = (out / "tune").absolute()
    tuner = tune.Tuner(
        trainable,
        param_space={"index": tune.grid_search(list(range(len(specs))))},
        # a trial is one short run: starting a fresh worker for each would cost more
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(name="candidates", storage_path=str(storage),
                                  verbose=1 if progress else 0),
    )
    results = tuner.fit()
    rows: list[dict | None] = [None] * len(specs)
    for result in results:
        i = int(result.config["index"])
        if result.error is not None or result.checkpoint is None:
            raise UserError(f"compare: the run {specs[i].key} failed in its Tune trial "
                            f"({str(result.error).splitlines()[0] if result.error else 'no record'})")
        rows[i] = json.loads(result.metrics["row_json"])
        with result.checkpoint.as_directory() as d:
            shutil.copytree(d, out / "runs" / specs[i].key)
    shutil.rmtree(storage, ignore_errors=True)  # every record is in runs/ now
    return [r for r in rows if r is not None]
