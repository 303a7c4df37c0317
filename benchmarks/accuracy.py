"""Accuracy benchmark: the `compare` grid on synthetic, competition and digits data.

Three settings: the default synthetic data (an over-fitting regime), the competition preset
(`synthetic:preset=competition`, with lr 0.003 and 15 epochs: an under-training budget in
which the weak modality is still learning at the end) and digits. Every grid has the
unimodal reference (`--unimodal-reference`: each encoder trained alone). Besides the table:
- the bar of the "sampling that moves accuracy" issue: each DUS and BSS row against its base
  method with the uniform sampler, the change of multimodal accuracy and of the weak
  modality's probe accuracy (met: probe +2 points or more, multimodal accuracy not lower);
- *why* a DUS sampler did or did not help: the mean quota per modality before the
  best-validation epoch, and the training scores ŝ at the end.
Writes `results/accuracy_<name>.md`; raw runs stay under `results/raw/` (not committed).
Usage: python benchmarks/accuracy.py [--seeds 5] [--data synthetic competition digits]
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
}


def bar(raw) -> str:
    """Each DUS/BSS row against its base method with uniform sampling: the change of
    multimodal accuracy and of the weak modality's probe accuracy, mean over seeds."""
    res = pd.read_parquet(raw / "results.parquet")
    res = res[~res["diverged"].astype(bool)] if "diverged" in res else res
    mods = read_json(raw / "compare.json")["modalities"]
    alone = res[res["method"].str.startswith("alone:")]
    if len(alone):
        probes = {m: alone[alone["method"] == f"alone:{m}"][f"test_probe_acc_{m}"].mean()
                  for m in mods}
    else:
        probes = {m: res[f"test_probe_acc_{m}"].mean() for m in mods}
    weak = min(probes, key=probes.get)
    intro = (f"The bar (weak modality: {weak}, the lower probe accuracy when trained alone): "
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


def run(name: str, seeds: int, passthrough: list[str]) -> None:
    spec, extra = SETTINGS[name]
    raw = RESULTS / "raw" / f"accuracy-{name}"
    args = ["compare", "--data", spec, "--seeds", str(seeds), "--unimodal-reference", *extra]
    shown, minutes, summary = run_compare(args, raw, passthrough)
    text = (
        f"{header(invocation())} The grid ran as `{shown}` in {minutes:.1f} min. "
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
    args, passthrough = p.parse_known_args()
    for name in args.data:
        run(name, args.seeds, passthrough)
