"""Env throughput: K separate QuotaEnvs stepped in a loop versus one VectorQuotaEnv of K runs.

For K = 1, 4, 16 (one run of this script): K `QuotaEnv`s reset with seeds 0..K-1 and one
`VectorQuotaEnv` of K runs reset with seed 0 (so run i has seed i too) take the same random
actions (discrete quotas from the default grid). Measured: env steps per second (K per
vector step) over `--rounds` steps after one warm-up step, the two set-ups interleaved
step by step (their order alternating) so that load from other processes on a shared
machine hits both alike; the ratio of wall times and, as a check on noise, of process CPU
times. Validation at epoch ends counts (the default config ends an epoch every ~4.7 env
steps); resets do not. The last column is the largest difference between the two set-ups'
observations over the measured steps: the same runs, so it is float noise only.

Defaults: the default synthetic data and training config (method mla, batch 64, MLP
encoders with 128 hidden units and 64-d features, SGD), `steps_per_action` 10, measured with
1 torch thread and with 2 (torch's default on a 2-core machine; the batched matmuls of the
vector env use both cores, the separate envs' small ops hardly do). Writes
`results/vector_env.md`.
Usage: python benchmarks/vector_env.py [--rounds 20] [--ks 1 4 16] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _common import RESULTS, header, invocation

from mmbalance.envs import QuotaEnv, VectorQuotaEnv

TARGET = 3.0  # at K = 16


def measure(k: int, rounds: int, config: dict, seed: int) -> dict:
    vec = VectorQuotaEnv({**config, "num_runs": k})
    envs = [QuotaEnv(config) for _ in range(k)]
    vec.action_space.seed(seed)
    actions = [vec.action_space.sample() for _ in range(rounds + 1)]
    vec.reset(seed=0)
    for i, env in enumerate(envs):
        env.reset(seed=i)
    wall = {"separate": 0.0, "vector": 0.0}
    cpu = {"separate": 0.0, "vector": 0.0}
    max_diff = 0.0

    def step_separate(a) -> np.ndarray:
        obs = []
        for i, env in enumerate(envs):
            o, _, term, trunc, _ = env.step(a[i])
            if term or trunc:
                o, _ = env.reset()
            obs.append(o)
        return np.stack(obs)

    def step_vector(a) -> np.ndarray:
        return vec.step(a)[0]

    step_separate(actions[0])  # warm-up (first-call costs)
    step_vector(actions[0])
    for r, a in enumerate(actions[1:]):
        order = ("separate", "vector") if r % 2 == 0 else ("vector", "separate")
        obs = {}
        for name in order:
            fn = step_separate if name == "separate" else step_vector
            w, c = time.perf_counter(), time.process_time()
            obs[name] = fn(a)
            wall[name] += time.perf_counter() - w
            cpu[name] += time.process_time() - c
        max_diff = max(max_diff, float(np.abs(obs["separate"] - obs["vector"]).max()))
    n = k * rounds
    return {
        "k": k,
        "sep": n / wall["separate"],
        "vec": n / wall["vector"],
        "ratio": wall["separate"] / wall["vector"],
        "cpu_ratio": cpu["separate"] / cpu["vector"],
        "diff": max_diff,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=20, help="measured env steps per set-up")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch intra-op thread counts to measure (2 is torch's default here)")
    p.add_argument("--steps-per-action", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="seed of the random actions")
    args = p.parse_args()
    config = {"steps_per_action": args.steps_per_action}
    load0 = os.getloadavg()[0]
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows += [{"threads": threads, **measure(k, args.rounds, config, args.seed)}
                 for k in args.ks]
    load1 = os.getloadavg()[0]
    lines = [
        header(invocation()),
        (f"Default synthetic data and training config (mla, batch 64, MLP encoders), "
         f"steps_per_action {args.steps_per_action}, random discrete quota actions (each run "
         f"its own), {args.rounds} interleaved env steps per set-up after one warm-up step. "
         f"Load average (1 min) of the machine, which is shared: {load0:.1f} at the start, "
         f"{load1:.1f} at the end."),
        "",
        ("| torch threads | K | K separate QuotaEnvs (env steps/s) | one VectorQuotaEnv of K runs "
         "(env steps/s) | ratio (wall) | ratio (CPU time) | max abs obs difference |"),
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['threads']} | {r['k']} | {r['sep']:.1f} | {r['vec']:.1f} | "
                     f"{r['ratio']:.2f}x | {r['cpu_ratio']:.2f}x | {r['diff']:.1e} |")
    verdicts = [f"{r['ratio']:.2f}x with {r['threads']} thread(s): "
                f"{'met' if r['ratio'] >= TARGET else 'NOT met'}"
                for r in rows if r["k"] == 16]
    if verdicts:
        lines += ["", f"Target: at least {TARGET:.0f}x at K = 16 on CPU (wall clock): "
                  + "; ".join(verdicts) + "."]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "vector_env.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
