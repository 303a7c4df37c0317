"""Accuracy benchmark: the `compare` grid on synthetic and digits data over several seeds.

Three settings: the default synthetic data, the same data with 8000 training samples and a
lower learning rate (an under-training rather than an over-fitting regime), and digits.
Besides the table it measures *why* a sampler did or did not help: for DUS-H runs the mean
quota per modality before the best-validation epoch, and the training scores ŝ at the end.
Writes `results/accuracy_<name>.md`; raw runs stay under `results/raw/` (not committed).
Usage: python benchmarks/accuracy.py [--seeds 5] [--data synthetic digits ...]
"""

from __future__ import annotations

import argparse

import pandas as pd
from _common import RESULTS, header, invocation, run_compare, write_result

from mmbalance.runs import read_json

SETTINGS = {  # name: (data selector, extra compare options)
    "synthetic": ("synthetic", []),
    "synthetic_8k": ("synthetic:n_train=8000", ["--lr", "0.003"]),
    "digits": ("digits", []),
}


def dus_diagnostics(raw) -> str:
    """Where DUS-H put its samples, and what the training scores said at the end."""
    rows = []
    for run in sorted((raw / "runs").glob("mla__dus-h__s*")):
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
    return ("DUS-H diagnostics (mla/dus-h runs): mean quota per modality from the start to the "
            "best-validation epoch (uniform = the batch size), and the cumulative training "
            "scores ŝ at the end.\n\n" + "\n".join(lines) + "\n")


def run(name: str, seeds: int, passthrough: list[str]) -> None:
    spec, extra = SETTINGS[name]
    raw = RESULTS / "raw" / f"accuracy-{name}"
    args = ["compare", "--data", spec, "--seeds", str(seeds), *extra]
    shown, minutes, summary = run_compare(args, raw, passthrough)
    text = (
        f"{header(invocation())} The grid ran as `{shown}` in {minutes:.1f} min. "
        f"Test metrics (%) of each run's best-validation epoch, mean ± std over seeds; final D "
        f"is the training discrepancy max ŝ - min ŝ at the end.\n\n{summary}\n\n"
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
