"""Sampler overhead: wall time per training step with each sampler versus `uniform`.

All configurations run in the same process, interleaved over repetitions (so machine noise
hits them alike), one torch thread, timed in CPU time of the training thread (other load on a
shared machine then hardly moves it). A step's time covers the sampler (epoch planning, any
scoring pass, quotas, observing scores) and the training iteration; validation is not
counted. The figure is the ratio of the fastest repetition of each (the minimum is the
estimate least disturbed by other work on a shared machine); the median of the per-repetition
ratios is shown beside it. Writes `results/overhead.md`.
Usage: python benchmarks/overhead.py [--reps 15]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _common import RESULTS, header, invocation

from mmbalance.data.registry import load_dataset
from mmbalance.policies.registry import make_sampler
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.trainer import Trainer

PAIRS = [  # (method, sampler, what it shows)
    ("mla", "dus-h:strength=0", ("DUS-H machinery: status, quota rule, per-modality streams "
     "(target <= 1.05)")),
    ("mla", "dus-h", ("DUS-H, default strength: includes the compute of the samples it moves "
     "to the weak (larger) encoder")),
    ("joint", "bss-l", "BSS-L, scores from the training forward pass (target <= 1.05)"),
    ("joint", "bss-l:score=pass", "BSS-L, an extra scoring pass each epoch"),
    ("joint", "bss-h:t_grow=2", "BSS-H, ranked once (scoring pass at epoch 0)"),
    ("joint", "bss-h:t_grow=2,rerank=1", "BSS-H, re-ranked every epoch"),
]


def seconds_per_step(data, method: str, sampler: str, epochs: int) -> float:
    tr = Trainer(data, TrainConfig(method=method, epochs=epochs, seed=0), make_sampler(sampler))
    tr.fit()
    return tr.train_cpu_seconds / tr.global_step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("synthetic")
    configs = sorted({(m, "uniform") for m, _, _ in PAIRS} | {(m, s) for m, s, _ in PAIRS})
    times: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    seconds_per_step(data, "joint", "uniform", 1)  # warm-up
    for rep in range(args.reps):
        order = configs if rep % 2 == 0 else configs[::-1]
        for c in order:
            times[c].append(seconds_per_step(data, *c, args.epochs))
    lines = [
        header(invocation()),
        (f"Default synthetic data (N_train = {len(data.splits['train'])}, batch 64), "
        f"{args.epochs} epochs per measurement, {args.reps} interleaved repetitions, 1 torch "
        "thread."),
        "",
        ("| method | sampler | what | CPU ms / step (min) | uniform CPU ms / step (min) "
         "| ratio of minima | median of ratios |"),
        "|---|---|---|---|---|---|---|",
    ]
    for method, sampler, what in PAIRS:
        base, mine = times[(method, "uniform")], times[(method, sampler)]
        ratio = statistics.median(m / b for m, b in zip(mine, base))
        lines.append(
            f"| {method} | {sampler} | {what} | {1000 * min(mine):.3f} | "
            f"{1000 * min(base):.3f} | {min(mine) / min(base):.3f} | {ratio:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "overhead.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
