"""Leverage of the quota action space: do fixed extreme quota policies change learning?

For each built-in data set and each quota mode (`batch`, `scaled`, `steps`; see
`mmbalance.trainers.methods.quota_chunks`), three fixed policies train MLA and joint-uni:
uniform (B and B), "feed the weak" (the strong modality B/4, the weak one 2B) and the
reverse. The leverage of a mode on a metric is the spread between the policies' means
(max - min) divided by the seed std (the mean of the policies' stds over seeds): below 1,
no quota policy moves the metric beyond seed noise and an RL agent has nothing to learn.
Metrics: multimodal test accuracy and the weak modality's linear-probe accuracy. Which
modality is weak is read off the uniform runs (the lower probe accuracy).
The same for the BSS sequence env's actions (a pacing fraction and weights over 4
balance-degree buckets, rescored every epoch): uniform (pacing 1, equal weights), the most
balanced half each epoch and the least balanced half, fixed for the whole run, on joint and
joint-uni. At pacing 1 the draw is a permutation, so weights alone only change the order.
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
MODES = ("share", "batch", "scaled", "extra-steps")
METHODS = ("mla", "joint-uni")
B = 64


def policies(mode: str) -> dict[str, str]:
    """Fixed quota samplers; modality order as the data's (first = the strong one on every
    built-in data set; the table says which is weak, from the runs)."""
    lo, hi = B // 4, 2 * B
    return {"feed 2nd": f"fixed:quotas={lo}/{hi}@quota_mode={mode}",
            "feed 1st": f"fixed:quotas={hi}/{lo}@quota_mode={mode}"}


def grid() -> list[str]:
    rows = []
    for method in METHODS:
        rows.append(f"{method}/fixed:quotas={B}/{B}")
        for mode in MODES:
            rows += [f"{method}/{s}" for s in policies(mode).values()]
    return rows


def leverage(results: pd.DataFrame, modalities: list[str]) -> tuple[str, str]:
    results = results.copy()  # a row's selector as written in the grid: sampler@options
    options = results["options"].fillna("") if "options" in results else ""
    results["sampler"] = results["sampler"] + np.where(options != "", "@" + options, "")
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


SEQUENCE_POLICIES = {"uniform": (1.0, [1, 1, 1, 1]), "balanced half": (0.5, [1, 1, 0, 0]),
                     "imbalanced half": (0.5, [0, 0, 1, 1])}


def sequence_leverage(name: str, seeds: int) -> str:
    """Fixed actions in the sequence env: leverage of pacing x bucket weights."""
    from mmbalance.envs import SequenceEnv

    spec, extra = SETTINGS[name]
    train = {"lr": 0.01, "epochs": 30}  # compare's defaults, overridden as the grid is
    for flag, value in zip(extra[::2], extra[1::2]):
        train[flag.lstrip("-")] = float(value) if flag == "--lr" else int(value)
    lines = ["| method | metric | " + " | ".join(SEQUENCE_POLICIES) + " | spread | seed std | "
             "leverage |", "|" + "---|" * (len(SEQUENCE_POLICIES) + 5)]
    for method in ("joint", "joint-uni"):
        env = SequenceEnv({"data": spec, "method": method, "train": train, "buckets": 4,
                           "control": "both", "action_mode": "continuous"})
        results = {}
        for policy, (pacing, weights) in SEQUENCE_POLICIES.items():
            action = env.actions.from_unit(env.actions.unit_of(pacing, np.array(weights)))
            rows = []
            for seed in range(seeds):
                env.reset(seed=seed)
                done, info = False, {}
                while not done:
                    _, _, term, trunc, info = env.step(action)
                    done = term or trunc
                rows.append(info)
            results[policy] = pd.DataFrame(rows)
        mods = env.modalities
        weak = min(mods, key=lambda m: results["uniform"][f"final_test_probe_acc_{m}"].mean())
        for label, col in (("acc", "final_test_acc"), (f"probe {weak}",
                                                       f"final_test_probe_acc_{weak}")):
            means = {p: 100 * r[col].mean() for p, r in results.items()}
            std = float(np.mean([100 * r[col].std(ddof=1) for r in results.values()]))
            spread = max(means.values()) - min(means.values())
            lines.append(f"| {method} | {label} | " + " | ".join(f"{v:.1f}" for v in
                                                                means.values())
                         + f" | {spread:.1f} | {std:.1f} | {spread / std:.1f} |")
    return (f"#### BSS sequence actions on `{spec}` ({', '.join(f'{k} {v}' for k, v in train.items())}"
            f", {seeds} seeds; pacing and bucket weights fixed for the run)\n\n"
            + "\n".join(lines) + "\n")


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
    p.add_argument("--data", nargs="*", default=list(SETTINGS), choices=list(SETTINGS),
                   help="data for the quota part (none: skip it)")
    p.add_argument("--sequence", nargs="*", default=["competition"], choices=list(SETTINGS),
                   help="data for the sequence-env part, results/leverage_bss.md (none: skip)")
    args, passthrough = p.parse_known_args()
    if args.sequence:
        write_result("leverage_bss", header(invocation()) + "\n\n" + "\n".join(
            sequence_leverage(name, args.seeds) for name in args.sequence))
    if not args.data:
        raise SystemExit(0)
    blocks = [run(name, args.seeds, passthrough) for name in args.data]
    write_result("leverage", (
        f"{header(invocation())} Fixed quota policies, B = {B}: uniform ({B}/{B}), feed the "
        f"second modality ({B // 4}/{2 * B}) and feed the first ({2 * B}/{B // 4}), each "
        f"over {args.seeds} seeds; leverage = spread of the policies' means / mean seed std "
        "(< 1: the action space cannot move that metric beyond noise).\n\n"
        + "\n".join(blocks)))
