"""The main job: methods × samplers × seeds on one dataset, summarised as tables
(`mmbalance compare`, and `mmbalance evaluate`, which compares a learned policy with the
baselines `evaluation_grid` names).

`run_comparison` checks everything a run would refuse before the output folder exists, then
trains the grid (`grid.py`; through Ray Tune where a row's setting is chosen on validation:
`select.py`) and writes the folder: `compare.json`, `results.parquet` (one row per run, with
its compute ledger), `summary.parquet`, `summary.md` (the table with each row's compute
against its base method with uniform sampling, the unimodal ensemble and the headroom
diagnosis: `summary.py`) and every run's folder under `runs/`. The table is rebuilt from
whatever finished, so an interrupted comparison keeps its completed runs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from mmbalance.compare.grid import (
    ALONE,
    DEFAULT_GRID,
    GridRow,
    RunSpec,
    check_grid,
    check_runs,
    grid_rows,
    parse_row,
    resolve_method,
    run_grid,
    run_one,
    train_record,
    uses_ray,
)
from mmbalance.compare.summary import (
    ENSEMBLE,
    ensemble_rows,
    headroom,
    headroom_text,
    markdown_table,
    reference_line,
    search_cost_text,
    summarize,
)
from mmbalance.errors import ConfigError
from mmbalance.runs import (
    check_new_run_dir,
    data_record,
    new_run_dir,
    write_json,
    write_table,
    write_text,
)

__all__ = ["ALONE", "DEFAULT_GRID", "ENSEMBLE", "GridRow", "RunSpec", "check_grid",
           "check_runs", "evaluation_grid", "evaluation_setup", "fmt_seconds", "grid_rows",
           "markdown_table", "parse_row", "reference_line", "remove_new_folder",
           "resolve_method", "run_comparison", "run_grid", "run_one", "seeds_list",
           "summarize", "train_record", "uses_ray"]


def seeds_list(n: int, first: int = 0) -> list[int]:
    if n < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {n}")
    return list(range(first, first + n))


def fmt_seconds(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{math.ceil(s)} s"


def run_comparison(data: str, grid, seeds: list[int], overrides: dict,
                   out_path: Path, parallel: str = "auto", address: str | None = None,
                   gpus_per_run: float = 0.0, unimodal_reference: bool = False,
                   progress: bool = True, tune_lr: bool = False,
                   best_fixed: bool = False, best_schedule: bool = False, pbt: bool = False,
                   learned_costs: dict[str, dict] | None = None) -> Path:
    """Run a grid into the new folder `out_path` (results, summary, table) and print the
    table; everything a run would refuse is refused before the folder exists.

    `unimodal_reference` adds each modality trained alone (`alone:<m>`), the unimodal
    ensemble and the headroom diagnosis; `tune_lr` chooses every row's learning rate on
    validation, `best_fixed` adds the best fixed quota share per quota method,
    `best_schedule` the best two-phase schedule (all through Ray Tune: `select.py`), `pbt`
    a Population Based Training search over the share per quota method and seed (`pbt.py`).
    `learned_costs` (learned sampler -> its learning's episodes and training iterations)
    goes into the search-cost table."""
    from mmbalance.compare import select
    from mmbalance.data.registry import load_dataset
    from mmbalance.ray_session import ray_session_if
    from mmbalance.trainers.config import TrainConfig

    out_path = check_new_run_dir(out_path)
    rows = grid_rows(grid)
    check_grid(rows)
    dataset = load_dataset(data)
    base = TrainConfig.from_dict(dict(overrides))
    dataset.check_batch_size(base.batch_size)
    if unimodal_reference:
        rows += [GridRow(f"{ALONE}{m}", "uniform") for m in dataset.modalities]
    check_grid(rows, dataset.modalities)
    check_runs(dataset, rows, overrides, seeds, address, gpus_per_run)
    selecting = tune_lr or best_fixed or best_schedule
    on_ray = uses_ray(parallel, address)
    if (selecting or pbt) and not on_ray:
        raise ConfigError("--tune-lr / --best-fixed / --best-schedule / --pbt run their "
                          "candidates through Ray Tune; use --parallel auto or ray (Ray must "
                          "be installed)")
    rows, specs = select.expand(rows, seeds, overrides, base.lr, tune_lr, best_fixed,
                                list(dataset.modalities), base.batch_size, best_schedule,
                                base.epochs)
    pbt_specs = []
    if pbt:
        from mmbalance.compare.pbt import PBT_SHARE, pbt_interval, pbt_spec

        pbt_interval(base.epochs)
        methods = dict.fromkeys(r.method for r in rows if select.is_quota_sampler(r.sampler))
        rows += [GridRow(m, PBT_SHARE) for m in methods]
        pbt_specs = [pbt_spec(m, s, overrides) for m in methods for s in seeds]
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
            "data": data, "seeds": seeds, "grid": [[r.method, r.sampler] for r in rows],
            "rows": [r.text for r in rows], "train": overrides,
            "tune_lr": tune_lr, "best_fixed": best_fixed, "best_schedule": best_schedule,
            "pbt": pbt, "modalities": dataset.modalities,
            "best_accuracy": dataset.best_accuracy, **data_record(dataset),
        }, out)
        t0 = time.perf_counter()
        finished: dict[int, dict] = {}
        interrupted = False
        try:
            if selecting:
                results = select.run_with_tune(dataset, specs, out, gpus_per_run, progress)
            else:
                results = run_grid(dataset, specs, out, parallel="ray" if on_ray else "none",
                                   progress=progress, address=address,
                                   gpus_per_run=gpus_per_run, finished=finished)
            finished.update(dict(enumerate(results)))
            results = list(results) + _run_pbt(dataset, pbt_specs, out, progress, finished)
        except BaseException as exc:
            if not finished:
                # no run finished: nothing worth keeping, and the same --out must work again
                remove_new_folder(out, created)
                raise
            if not isinstance(exc, KeyboardInterrupt):
                raise
            # Ctrl-C: keep what finished (README), then stop with 130
            results, interrupted = [finished[i] for i in sorted(finished)], True
    results = select.choose(results)
    chosen = [r for r in results if r.get("chosen", True)]
    if unimodal_reference:
        chosen += ensemble_rows(chosen, _alone_arrays(out, chosen), dataset)
    write_table(out / "results.parquet", [*results, *(r for r in chosen
                                                      if r["method"] == ENSEMBLE)], out)
    summary = summarize(chosen, dataset.modalities)
    write_table(out / "summary.parquet", summary, out)
    table = markdown_table(summary, dataset.modalities) if chosen else "(no run finished)"
    room = headroom_text(headroom(chosen, dataset.modalities)) if unimodal_reference else ""
    cost = search_cost_text(summary, learned_costs)
    ref = reference_line(dataset)
    partial = (f"PARTIAL: interrupted after {len(results)} of {len(specs)} runs; the table "
               "holds the finished runs only.\n\n" if interrupted else "")
    selection = _selection_note(tune_lr, best_fixed, best_schedule, pbt)
    write_text(out / "summary.md",
               f"{partial}Data `{data}`, seeds {seeds}, test metrics of the best-validation "
               f"epoch.{selection}\n\n{table}\n\n{room}\n\n{cost}\n\n{ref}\n", out)
    print(table)
    if cost:
        print(cost)
    if room:
        print(room)
    if interrupted:  # the CLI prints the message and exits 130
        raise KeyboardInterrupt(f"partial results: {len(results)} of {len(specs)} runs "
                                f"finished, written to {out} (results, summary)")
    if ref:
        print(ref)
    diverged = [r for r in chosen if r.get("diverged")]
    if diverged:
        print(f"{len(diverged)} of {len(chosen)} runs diverged and are not averaged in; "
              f"first: {diverged[0]['diverged_at']}")
    flagged = [f"{r['method']}/{r['sampler']}" + (f"@{r['options']}" if r["options"] else "")
               for r in summary if r.get("compute_flags")]
    if flagged:
        print(f"not at equal compute with their base (uniform sampling): {', '.join(flagged)}")
    print(f"{len(results)} runs in {fmt_seconds(time.perf_counter() - t0)}; wrote {out}")
    return out


def _run_pbt(dataset, specs: list[RunSpec], out: Path, progress: bool,
             finished: dict[int, dict]) -> list[dict]:
    """The PBT rows, one population per spec, each best member's run written to
    `out/runs/<key>` as it finishes."""
    if not specs:
        return []
    from mmbalance.compare.pbt import run_pbt
    from mmbalance.runs import write_record

    rows = []
    for spec in specs:
        row, record = run_pbt(dataset, spec, out / "tune", progress=progress)
        write_record(new_run_dir(out / "runs" / spec.key), record)
        rows.append(row)
        finished[len(finished)] = row
    return rows


def _selection_note(tune_lr: bool, best_fixed: bool, best_schedule: bool = False,
                    pbt: bool = False) -> str:
    from mmbalance.compare import select

    parts = []
    if tune_lr:
        parts.append("every row's learning rate chosen on validation from "
                     + "/".join(f"{f:g}x" for f in select.LR_FACTORS) + " the base")
    if best_fixed:
        parts.append("`fixed:best` = the fixed quota share with the best validation accuracy")
    if best_schedule:
        parts.append("`schedule:best` = the two-phase schedule (shares switching at an epoch) "
                     "with the best validation accuracy")
    if pbt:
        from mmbalance.compare.pbt import POPULATION

        parts.append(f"`pbt:share` = Population Based Training over the share ({POPULATION} "
                     "runs per seed), its best member on validation")
    return (" " + "; ".join(parts).capitalize() + ".") if parts else ""


def _alone_arrays(out: Path, rows: list[dict]) -> dict[str, dict]:
    """The validation and test logits each finished `alone:` run left in its folder."""
    arrays = {}
    for r in rows:
        path = out / "runs" / r.get("key", "") / "arrays.npz"
        if r["method"].startswith(ALONE) and path.is_file():
            with np.load(path) as f:
                arrays[r["key"]] = {k: f[k] for k in f.files}
    return arrays


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


def evaluation_setup(policy_path: str, data: str | None,
                     train: dict) -> tuple[str, str, list[str], dict, dict]:
    """What `mmbalance evaluate` trains for the exported policy at `policy_path`: (the data,
    the method it learned with, the samplers it is compared with, the training options:
    the policy's own with `train` over them, and its quota meaning), and its policy.json."""
    from mmbalance.data.family import DataFamily
    from mmbalance.limits import check_train_sizes
    from mmbalance.policies.policy_file import load_policy, policy_quota_mode
    from mmbalance.trainers.config import TrainConfig

    policy = load_policy(policy_path)
    env_cfg = policy.spec["env_config"]
    method, samplers = evaluation_grid(policy.spec, policy_path)
    overrides = {**env_cfg.get("train", {}), **train}
    if policy.spec["env"] == "quota":  # its actions mean what they meant while it learned
        overrides.setdefault("quota_mode", policy_quota_mode(policy.spec))
    # the policy file's own train settings, bounded as flags are (it may come from anyone)
    check_train_sizes(TrainConfig.parse(overrides), f"{policy_path}: env_config.train")
    data = data or env_cfg.get("data", "synthetic")
    if not DataFamily(data).fixed:
        raise ConfigError(f"evaluate: the policy learned on a family of data ({data!r}); name "
                          "the data to evaluate on with --data")
    return data, method, samplers, overrides, policy.spec


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
