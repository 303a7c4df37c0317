"""Accuracy benchmark: the `compare` grid on synthetic, competition and digits data.

Four settings: the default synthetic data (an over-fitting regime), the competition preset
(`synthetic:preset=competition`, with lr 0.003 and 15 epochs: an under-training budget in
which the weak modality is still learning at the end), digits, and the three-modality
competition preset (`competition3`, same budget). Every grid has the
unimodal reference (`--unimodal-reference`: each encoder trained alone). Besides the table:
- the bar of the "sampling that moves accuracy" issue: each DUS and BSS row against its base
  method with the uniform sampler, the change of multimodal accuracy and of the weak
  modality's probe accuracy (met: probe +2 points or more, multimodal accuracy not lower);
- *why* a DUS sampler did or did not help: the mean quota per modality before the
  best-validation epoch, and the training scores ŝ at the end.
Writes `results/accuracy_<name>.md`; raw runs stay under `results/raw/` (not committed).
Usage: python benchmarks/accuracy.py [--seeds 5] [--data synthetic competition digits
competition3] [--tables-only]
"""

from __future__ import annotations

import argparse

import pandas as pd
from _common import RESULTS, header, invocation, run_compare, write_result

from mmbalance.compare import DEFAULT_GRID
from mmbalance.runs import read_json

# the quota modes and BSS variants beside the default grid, on the competition preset
EXTRA = ["mla/dus-h:quota_mode=batch", "mla/dus-h:quota_mode=scaled",
         "joint-uni/dus-h:quota_mode=batch", "joint-uni/dus-h:quota_mode=scaled",
         "joint/bss-h:rerank=1", "joint/bss-l:draw=replacement",
         "joint-uni/bss-l:draw=replacement"]
DEFAULT = [f"{m}/{s}" for m, s in DEFAULT_GRID]
SETTINGS = {  # name: (data selector, extra compare options)
    "synthetic": ("synthetic", []),
    "competition": ("synthetic:preset=competition",
                    ["--lr", "0.003", "--epochs", "15", "--grid", *DEFAULT, *EXTRA]),
    "digits": ("digits", []),
    "competition3": ("synthetic:preset=competition3", ["--lr", "0.003", "--epochs", "15"]),
}


def weak_modality(res: pd.DataFrame, mods: list[str]) -> str:
    """The modality joint training degrades most (alone probe - joint probe), else the
    lowest probe when trained alone, else the lowest probe overall."""
    def probe(method: str, m: str) -> float:
        rows = res[(res["method"] == method) & (res["sampler"] == "uniform")]
        return float(rows[f"test_probe_acc_{m}"].mean()) if len(rows) else float("nan")

    gaps = {m: probe(f"alone:{m}", m) - probe("joint", m) for m in mods}
    if all(pd.notna(v) for v in gaps.values()):
        return max(gaps, key=gaps.get)
    alone = {m: probe(f"alone:{m}", m) for m in mods}
    if all(pd.notna(v) for v in alone.values()):
        return min(alone, key=alone.get)
    return min(mods, key=lambda m: res[f"test_probe_acc_{m}"].mean())


def bar(raw) -> str:
    """Each DUS/BSS row against its base method with uniform sampling: the change of
    multimodal accuracy and of the weak modality's probe accuracy, mean over seeds."""
    res = pd.read_parquet(raw / "results.parquet")
    res = res[~res["diverged"].astype(bool)] if "diverged" in res else res
    mods = read_json(raw / "compare.json")["modalities"]
    weak = weak_modality(res, mods)
    intro = (f"The bar (weak modality: {weak}, the one joint training degrades most: its probe "
             "accuracy under `joint` lies furthest below its probe when trained alone): "
             "each sampler against its method with `uniform`, mean ± std over seeds of the "
             "differences in points; met = weak probe +2.0 or more and multimodal accuracy "
             "not lower.\n")
    lines = [intro,
             "| method | sampler | Δ acc | Δ probe " + weak + " | met |", "|---|---|---|---|---|"]
    for (method, sampler), rows in res.groupby(["method", "sampler"], sort=False):
        if sampler == "uniform" or method.startswith("alone:"):
            continue
        base = res[(res["method"] == method) & (res["sampler"] == "uniform")]
        if not len(base):
            continue
        pair = rows.merge(base, on="seed", suffixes=("", "_base"))
        d_acc = 100 * (pair["test_acc"] - pair["test_acc_base"])
        d_probe = 100 * (pair[f"test_probe_acc_{weak}"] - pair[f"test_probe_acc_{weak}_base"])
        met = d_probe.mean() >= 2.0 and d_acc.mean() >= 0.0
        lines.append(f"| {method} | {sampler} | {d_acc.mean():+.1f} ± {d_acc.std(ddof=1):.1f} "
                     f"| {d_probe.mean():+.1f} ± {d_probe.std(ddof=1):.1f} | "
                     f"{'yes' if met else 'no'} |")
    return "\n".join(lines) + "\n"


def dus_diagnostics(raw) -> str:
    """Where DUS-H put its samples, and what the training scores said at the end."""
    rows = []
    runs = [p for p in sorted((raw / "runs").iterdir()) if "__dus-h" in p.name]
    for run in runs:
        steps = pd.read_parquet(run / "steps.parquet")
        best = read_json(run / "metrics.json")["best_epoch"]
        mods = [c[len("quota_"):] for c in steps.columns if c.startswith("quota_")]
        early = steps[steps["epoch"] <= best]
        row = {"run": run.name, "best epoch": best}
        for m in mods:
            row[f"quota {m} (to best)"] = f"{early[f'quota_{m}'].mean():.1f}"
        for m in mods:
            row[f"ŝ {m} (end)"] = f"{steps[f's_hat_{m}'].iloc[-1]:.3f}"
        rows.append(row)
    if not rows:
        return ""
    df = pd.DataFrame(rows)
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return ("DUS-H diagnostics (every dus-h run): mean quota per modality from the start to the "
            "best-validation epoch (uniform = the batch size), and the cumulative training "
            "scores ŝ at the end.\n\n" + "\n".join(lines) + "\n")


def run(name: str, seeds: int, passthrough: list[str], tables_only: bool = False) -> None:
    spec, extra = SETTINGS[name]
    raw = RESULTS / "raw" / f"accuracy-{name}"
    args = ["compare", "--data", spec, "--seeds", str(seeds), "--unimodal-reference", *extra]
    head = header(invocation())
    if tables_only:  # the tables again from the runs already there (e.g. a new bar rule)
        old = (RESULTS / f"accuracy_{name}.md").read_text()
        shown = "mmbalance " + " ".join(args)
        minutes = float(old.split(f"`{shown}` in ")[1].split(" min")[0])
        summary = (raw / "summary.md").read_text().strip()
        head = (old.split(" The grid ran")[0] + f" Tables rebuilt from those runs by "
                f"`{invocation()}`.")
    else:
        shown, minutes, summary = run_compare(args, raw, passthrough)
    text = (
        f"{head} The grid ran as `{shown}` in {minutes:.1f} min. "
        f"Test metrics (%) of each run's best-validation epoch, mean ± std over seeds; probe m "
        f"is the linear-probe accuracy of modality m's frozen encoder; final D is the training "
        f"discrepancy max ŝ - min ŝ at the end.\n\n{summary}\n\n{bar(raw)}\n"
        f"{dus_diagnostics(raw)}"
    )
    write_result(f"accuracy_{name}", text)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--data", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--tables-only", action="store_true",
                   help="rebuild the result files from the raw runs already there")
    args, passthrough = p.parse_known_args()
    for name in args.data:
        run(name, args.seeds, passthrough, args.tables_only)
