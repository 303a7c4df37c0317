"""Leverage of the quota action space: do fixed extreme quota policies change learning?

For each built-in data set and each quota mode (`batch`, `scaled`, `steps`; see
`mmbalance.trainers.methods.quota_chunks`), three fixed policies train MLA and joint-uni:
uniform (B and B), "feed the weak" (the strong modality B/4, the weak one 2B) and the
reverse. The leverage of a mode on a metric is the spread between the policies' means
(max - min) divided by the seed std (the mean of the policies' stds over seeds): below 1,
no quota policy moves the metric beyond seed noise and an RL agent has nothing to learn.
Metrics: multimodal test accuracy and the weak modality's linear-probe accuracy. Which
modality is weak is read off the uniform runs (the lower probe accuracy).
Writes `results/leverage.md`; raw runs stay under `results/raw/` (not committed).
Usage: python benchmarks/leverage.py [--seeds 5] [--data synthetic competition digits]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from _common import RESULTS, header, invocation, run_compare, write_result

# name: (data selector, compare options): the settings of the accuracy benchmark
SETTINGS = {
    "synthetic": ("synthetic", []),
    "competition": ("synthetic:preset=competition", ["--lr", "0.003", "--epochs", "15"]),
    "digits": ("digits", []),
}
MODES = ("batch", "scaled", "steps")
METHODS = ("mla", "joint-uni")
B = 64


def policies(mode: str) -> dict[str, str]:
    """Fixed quota samplers; modality order as the data's (first = the strong one on every
    built-in data set; the table says which is weak, from the runs)."""
    lo, hi = B // 4, 2 * B
    return {"feed 2nd": f"fixed:quotas={lo}/{hi},quota_mode={mode}",
            "feed 1st": f"fixed:quotas={hi}/{lo},quota_mode={mode}"}


def grid() -> list[str]:
    rows = []
    for method in METHODS:
        rows.append(f"{method}/fixed:quotas={B}/{B}")
        for mode in MODES:
            rows += [f"{method}/{s}" for s in policies(mode).values()]
    return rows


def leverage(results: pd.DataFrame, modalities: list[str]) -> tuple[str, str]:
    uniform = results[results["sampler"] == f"fixed:quotas={B}/{B}"]
    probes = {m: uniform[f"test_probe_acc_{m}"].mean() for m in modalities}
    weak = min(probes, key=probes.get)
    metrics = {"acc": "test_acc", f"probe {weak}": f"test_probe_acc_{weak}"}
    head = ("| method | quota mode | metric | uniform | feed 2nd | feed 1st | spread | seed std "
            "| leverage |")
    lines = [head, "|" + "---|" * 9]
    for method in METHODS:
        mine = results[results["method"] == method]
        for mode in MODES:
            samplers = {"uniform": f"fixed:quotas={B}/{B}", **policies(mode)}
            for label, col in metrics.items():
                groups = {k: 100 * mine[mine["sampler"] == s][col].to_numpy()
                          for k, s in samplers.items()}
                means = {k: v.mean() for k, v in groups.items()}
                std = float(np.mean([v.std(ddof=1) for v in groups.values()]))
                spread = max(means.values()) - min(means.values())
                lev = spread / std if std > 0 else float("inf")
                lines.append(
                    f"| {method} | {mode} | {label} | {means['uniform']:.1f} | "
                    f"{means['feed 2nd']:.1f} | {means['feed 1st']:.1f} | {spread:.1f} | "
                    f"{std:.1f} | {lev:.1f} |")
    return weak, "\n".join(lines)


def run(name: str, seeds: int, passthrough: list[str]) -> str:
    from mmbalance.runs import read_json

    spec, extra = SETTINGS[name]
    raw = RESULTS / "raw" / f"leverage-{name}"
    args = ["compare", "--data", spec, "--seeds", str(seeds), *extra, "--grid", *grid()]
    shown, minutes, _ = run_compare(args, raw, passthrough)
    results = pd.read_parquet(raw / "results.parquet")
    modalities = read_json(raw / "compare.json")["modalities"]
    weak, table = leverage(results, modalities)
    return (f"#### `{spec}` (weak modality: {weak})\n\n`{shown.split(' --grid')[0]}` with the "
            f"{len(grid())} fixed policies, {minutes:.1f} min. Accuracies in %.\n\n{table}\n")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--data", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args, passthrough = p.parse_known_args()
    blocks = [run(name, args.seeds, passthrough) for name in args.data]
    write_result("leverage", (
        f"{header(invocation())} Fixed quota policies, B = {B}: uniform ({B}/{B}), feed the "
        f"second modality ({B // 4}/{2 * B}) and feed the first ({2 * B}/{B // 4}), each "
        f"over {args.seeds} seeds; leverage = spread of the policies' means / mean seed std "
        "(< 1: the action space cannot move that metric beyond noise).\n\n"
        + "\n".join(blocks)))
