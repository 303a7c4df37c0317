"""Env throughput: K separate QuotaEnvs stepped in a loop versus one VectorQuotaEnv of K runs.

For K = 1, 4, 16 (one run of this script): K `QuotaEnv`s reset with seeds 0..K-1 and one
`VectorQuotaEnv` of K runs reset with seed 0 (so run i has seed i too) take the same random
actions (discrete quotas from the default grid). Measured: env steps per second (K per
vector step) over `--rounds` steps after one warm-up step, the two set-ups interleaved
step by step (their order alternating) so that load from other processes on a shared
machine hits both alike; the ratio of total wall times and, as a check on noise, of total
process CPU times. Validation at epoch ends counts (the default config ends an epoch every
~4.7 env steps, on the same steps for both set-ups); resets do not. The share of time spent
in `Trainer.evaluate` (the same per-run work in both set-ups, not batched) is reported: it
bounds what batching the training can gain. The last column is the largest difference between the two set-ups'
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
from _common import header, invocation, write_result

from mmbalance.envs import QuotaEnv, VectorQuotaEnv
from mmbalance.trainers.trainer import Trainer

TARGET = 5.0  # at K = 16, one torch thread (issue 19)
EVAL_SECONDS = [0.0]  # time inside Trainer.evaluate (validation at epoch ends, final metrics)


def _timed_evaluate(evaluate):
    def wrapper(self, split):
        t = time.perf_counter()
        try:
            return evaluate(self, split)
        finally:
            EVAL_SECONDS[0] += time.perf_counter() - t

    return wrapper


def measure(k: int, rounds: int, config: dict, seed: int) -> dict:
    vec = VectorQuotaEnv({**config, "num_runs": k})
    envs = [QuotaEnv(config) for _ in range(k)]
    vec.action_space.seed(seed)
    actions = [vec.action_space.sample() for _ in range(rounds + 1)]
    vec.reset(seed=0)
    for i, env in enumerate(envs):
        env.reset(seed=i)
    wall: dict[str, list[float]] = {"separate": [], "vector": []}
    cpu: dict[str, list[float]] = {"separate": [], "vector": []}
    evals: dict[str, float] = {"separate": 0.0, "vector": 0.0}
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
            w, c, e = time.perf_counter(), time.process_time(), EVAL_SECONDS[0]
            obs[name] = fn(a)
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
            evals[name] += EVAL_SECONDS[0] - e
        max_diff = max(max_diff, float(np.abs(obs["separate"] - obs["vector"]).max()))
    return {
        "k": k,
        "sep": k * rounds / sum(wall["separate"]),
        "vec": k * rounds / sum(wall["vector"]),
        "ratio": sum(wall["separate"]) / sum(wall["vector"]),
        "cpu_ratio": sum(cpu["separate"]) / sum(cpu["vector"]),
        "eval_sep": evals["separate"] / sum(wall["separate"]),
        "eval_vec": evals["vector"] / sum(wall["vector"]),
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
    # the default training config, so the default quota meaning (`share`) for both
    config = {"steps_per_action": args.steps_per_action}
    Trainer.evaluate = _timed_evaluate(Trainer.evaluate)
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
         "(env steps/s) | ratio (wall) | ratio (CPU time) | time in validation, separate / "
         "vector | max abs obs difference |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['threads']} | {r['k']} | {r['sep']:.1f} | {r['vec']:.1f} | "
                     f"{r['ratio']:.2f}x | {r['cpu_ratio']:.2f}x | {100 * r['eval_sep']:.0f}% / "
                     f"{100 * r['eval_vec']:.0f}% | {r['diff']:.1e} |")
    verdicts = [f"{r['ratio']:.2f}x with {r['threads']} thread(s): "
                f"{'met' if r['ratio'] >= TARGET else 'NOT met'}"
                for r in rows if r["k"] == 16]
    if verdicts:
        lines += ["", f"Target: at least {TARGET:.0f}x at K = 16 on CPU (wall clock): "
                  + "; ".join(verdicts) + "."]
    text = "\n".join(lines) + "\n"
    write_result("vector_env", text)


if __name__ == "__main__":
    main()
