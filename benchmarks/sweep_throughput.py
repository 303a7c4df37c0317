"""Sweep throughput: trials per minute with 1 versus 2 concurrent trials on this machine.

The same grid sweep (plain trainer, default synthetic data, 8 trials of a few epochs each) runs
twice in one process and one Ray session, with `max_concurrent` 1 and then 2; the figure is
the ratio of trials per minute. Writes results/sweep_throughput.md.
Usage: python benchmarks/sweep_throughput.py [--epochs 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from _common import RESULTS, header, invocation, write_result

from mmbalance.ray_session import ray_session
from mmbalance.tune.sweep import SweepConfig, run_sweep


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--trials", type=int, default=8)
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    lrs = [0.002 * (i + 1) for i in range(args.trials)]
    rows = []
    with ray_session("local", num_cpus=os.cpu_count()):  # one session for both sweeps
        for concurrent in (1, 2):
            cfg = SweepConfig.from_dict({
                "name": f"throughput_{concurrent}", "trainable": "train",
                "base": {"data": "synthetic", "method": "mla", "sampler": "dus-h",
                         "train": {"epochs": args.epochs}},
                "search_space": {"train.lr": {"grid": lrs}},
                "metric": "val_acc", "mode": "max", "max_concurrent": concurrent,
                "resources": {"cpu": 1, "gpu": 0},
            })
            out = RESULTS / "raw" / f"sweep_throughput_{concurrent}"
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            t0 = time.perf_counter()
            res = run_sweep(cfg, out, progress=False)
            minutes = (time.perf_counter() - t0) / 60
            assert len(res["rows"]) == args.trials
            rows.append((concurrent, args.trials / minutes, minutes))
    base = rows[0][1]
    lines = [
        header(invocation()),
        (f"A grid of {args.trials} trials (MLA + DUS-H on the default synthetic data, "
         f"{args.epochs} epochs each, 1 CPU per trial), one Ray session on "
         f"{os.cpu_count()} CPUs; wall time includes Tune's own start-up and bookkeeping."),
        "",
        "| concurrent trials | minutes | trials / minute | ratio to 1 |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c} | {m:.2f} | {t:.1f} | {t / base:.2f}x |" for c, t, m in rows]
    text = "\n".join(lines) + "\n"
    write_result("sweep_throughput", text)


if __name__ == "__main__":
    main()
