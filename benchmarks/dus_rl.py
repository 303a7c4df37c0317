"""DUS-RL benchmark: the online REINFORCE policy against DUS-H and uniform, and its cost.

Accuracy: `mmbalance compare` with MLA and the samplers below on synthetic and digits over
several seeds (plus `learned:PATH` and `dus-rl:init=PATH` with `--policy PATH`, an exported
RLlib quota policy), and where each sampler put its samples. Overhead: wall time per training
step, interleaved repetitions in one process, one torch thread (as `overhead.py`). The whole
step's ratio to dus-h also counts the compute of the different quotas the policy picks, so
the time spent inside the sampler is measured too and the online update's own overhead is
`1 + (sampler time - dus-h's sampler time) / dus-h's step time` (target <= 1.05).
Writes `results/dus_rl.md` and fills `docs/dus_rl.md` between its markers.
Usage: python benchmarks/dus_rl.py [--seeds 5] [--data synthetic digits] [--policy PATH]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
import torch
from _common import RESULTS, header, invocation, run_compare, stopwatch, write_result
from update_readme import update

from mmbalance.data.registry import load_dataset
from mmbalance.policies.registry import make_sampler
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.trainer import Trainer

DOC = Path(__file__).resolve().parents[1] / "docs" / "dus_rl.md"
SAMPLERS = ["uniform", "dus-h", "dus-rl", "dus-rl:mode=continuous"]
OVERHEAD = [  # (sampler, what it shows)
    ("dus-h", "the reference"),
    ("dus-rl", "discrete policy, one REINFORCE step every 10 iterations (default)"),
    ("dus-rl:mode=continuous", "Gaussian policy, every 10 iterations"),
    ("dus-rl:k=1", "worst case: a REINFORCE step after every iteration"),
]
TIMED = ("start_epoch", "next_batch", "feedback", "log_metrics")


def _table(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines)


def where_samples_went(raw: Path, samplers: list[str]) -> str:
    """Per sampler, over seeds: mean quota per modality over the run, and the policy's
    expected quota at the end (dus-rl)."""
    rows = []
    for sampler in samplers:
        key = sampler.replace(":", "_").replace(",", "_").replace("=", "-").replace("/", "-")
        runs = sorted((raw / "runs").glob(f"mla__{key}__s*"))
        if not runs:
            continue
        steps = [pd.read_parquet(r / "steps.parquet") for r in runs]
        mods = [c[len("s_hat_"):] for c in steps[0].columns if c.startswith("s_hat_")]
        row = {"sampler": sampler}
        for m in mods:
            row[f"mean quota {m}"] = f"{statistics.mean(s[f'quota_{m}'].mean() for s in steps):.1f}"
        for m in mods:
            col = f"rl_mean_{m}"
            end = [s[col].iloc[-1] for s in steps if col in s]
            row[f"policy's quota {m} at the end"] = f"{statistics.mean(end):.1f}" if end else "-"
        rewards = [s["rl_reward"].dropna().mean() for s in steps if "rl_reward" in s]
        row["mean reward / decision"] = f"{statistics.mean(rewards):+.3f}" if rewards else "-"
        rows.append(row)
    return _table(pd.DataFrame(rows)) if rows else ""


def accuracy(data: str, seeds: int, samplers: list[str], passthrough: list[str]) -> str:
    raw = RESULTS / "raw" / f"dus_rl-{data.split(':')[0]}"
    grid = [f"mla/{s}" for s in samplers]
    args = ["compare", "--data", data, "--seeds", str(seeds), "--grid", *grid]
    shown, minutes, summary = run_compare(args, raw, passthrough)
    return (f"#### `{data}`\n\nThe grid ran as `{shown}` in {minutes:.1f} min.\n\n"
            f"{summary}\n\nWhere the samples went (mean over seeds; uniform = the batch size "
            f"64):\n\n{where_samples_went(raw, samplers)}\n")


def one_measure(data, sampler_spec: str, epochs: int) -> tuple[float, float]:
    """(step seconds, sampler seconds) per training step of one MLA run."""
    sampler = make_sampler(sampler_spec)
    spent = stopwatch(sampler, TIMED)
    tr = Trainer(data, TrainConfig(method="mla", epochs=epochs, seed=0), sampler)
    tr.fit()
    return tr.train_seconds / tr.global_step, spent[0] / tr.global_step


def overhead(reps: int, epochs: int) -> str:
    torch.set_num_threads(1)
    data = load_dataset("synthetic")
    specs = [s for s, _ in OVERHEAD]
    step: dict[str, list[float]] = {s: [] for s in specs}
    inside: dict[str, list[float]] = {s: [] for s in specs}
    one_measure(data, "dus-rl", 1)  # warm-up
    for rep in range(reps):
        for s in specs if rep % 2 == 0 else specs[::-1]:
            a, b = one_measure(data, s, epochs)
            step[s].append(a)
            inside[s].append(b)
    lines = [
        (f"Overhead per training step: default synthetic data (N_train = "
         f"{len(data.splits['train'])}, batch 64), MLA, {epochs} epochs per measurement, "
         f"{reps} interleaved repetitions, 1 torch thread. *sampler* is the time inside the "
         "sampler's per-step hooks (quotas, streams, observation, the policy's forward, "
         "REINFORCE step, logs). *Update overhead* = 1 + (sampler − dus-h's sampler) / "
         "dus-h's step: what the online learning adds (target <= 1.05). *Whole step* also "
         "counts training on the quotas the policy chose (a fresh discrete policy draws "
         "67 samples per modality on average, dus-h 64)."),
        "",
        ("| sampler | what | ms / step | sampler ms / step | update overhead vs dus-h | "
         "whole step vs dus-h |"),
        "|---|---|---|---|---|---|",
    ]
    ref_step, ref_inside = step["dus-h"], inside["dus-h"]
    for s, what in OVERHEAD:
        own = statistics.median(1 + (i - ri) / rs
                                for i, ri, rs in zip(inside[s], ref_inside, ref_step))
        whole = statistics.median(a / b for a, b in zip(step[s], ref_step))
        lines.append(f"| {s} | {what} | {1000 * statistics.median(step[s]):.3f} | "
                     f"{1000 * statistics.median(inside[s]):.3f} | {own:.3f} | {whole:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--data", nargs="*", default=["synthetic", "digits"],
                   help="datasets of the accuracy part (none: overhead only)")
    p.add_argument("--policy", help="an exported RLlib quota policy (OUT/policy of `learn`)")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--epochs", type=int, default=3, help="epochs per overhead measurement")
    args, passthrough = p.parse_known_args()
    samplers = list(SAMPLERS)
    if args.policy:
        samplers += [f"learned:{args.policy}", f"dus-rl:init={args.policy}"]
    parts = [header(invocation()) + (" Test metrics (%) of each run's best-validation epoch, "
             "mean ± std over seeds; method MLA (DUS needs per-modality batches).")]
    if not args.policy:
        parts.append("No RLlib-learned policy was given (`--policy PATH`), so `learned:` and "
                     "`dus-rl:init=` rows are absent.")
    for data in args.data:
        parts.append(accuracy(data, args.seeds, samplers, passthrough))
    parts.append(overhead(args.reps, args.epochs))
    text = "\n\n".join(parts).rstrip() + "\n"
    write_result("dus_rl", text)
    if DOC.is_file():
        print("filled:", ", ".join(update(DOC)) or "nothing", "in", DOC)


if __name__ == "__main__":
    main()
