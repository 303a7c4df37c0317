"""Sampler overhead: CPU time per training step with each sampler versus `uniform`.

One torch thread, timed in CPU time of the training thread (other load on a shared machine
then hardly moves it). A step's time covers the sampler (epoch planning, any scoring pass,
quotas, observing scores) and the training iteration; validation is not counted. Each
repetition runs every pair's two runs, the sampler's and uniform's, in turns of two epochs
(which goes first alternates), and times the second epoch of each turn: it starts warm from
its own run's epoch before, as in a run alone, and meets the same load as the other run's
timed epoch a tenth of a second away. A pair's figure, the one its target is judged on, is
the median over repetitions of that repetition's ratio, with its 95% confidence interval.
It is the steady state: work done once at epoch 0 (BSS-H's first ranking) is not timed.
The ratio of the fastest repetition of each (the minimum is the estimate least disturbed by
other work) is shown beside it. Whole-step ratios on a shared machine still move by a few
percent between runs, so the last column isolates what the sampler itself costs: CPU time
inside its hooks per step beyond uniform's, relative to a uniform step. Writes
`results/overhead.md`.
Usage: python benchmarks/overhead.py [--reps 20] [--epochs 10] (an even number)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

from _common import (
    header,
    invocation,
    median_interval,
    stopwatch,
    timed_turns,
    timing_setup,
    write_result,
)

from mmbalance.policies.registry import make_sampler
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.sampler import UniformSampler
from mmbalance.trainers.trainer import Trainer


class PassOnlySampler(UniformSampler):
    """Uniform, plus the scoring pass a fresh-pass sampler asks for at every epoch start, its
    output dropped: what the pass alone costs."""

    name = "uniform+pass"

    def epoch_order(self, epoch, scorer):
        scorer()
        return super().epoch_order(epoch, scorer)


PAIRS = [  # (method, sampler, what it shows)
    ("mla", "dus-h:strength=0", ("DUS-H machinery: status, quota rule, per-modality streams "
     "(target <= 1.05)")),
    ("mla", "dus-h", ("DUS-H, default strength (quota_mode share: the updates it moves "
     "cost what uniform's do)")),
    ("joint", "uniform+pass", ("uniform plus a scoring pass each epoch whose output is "
     "dropped: the floor of any fresh-pass sampler")),
    ("joint", "bss-l", "BSS-L, default: a fresh scoring pass each epoch (target <= 1.05)"),
    ("joint", "bss-l:score=forward", "BSS-L, scores from the training forward pass"),
    ("joint", "bss-h:t_grow=2", "BSS-H, ranked once (its scoring pass at epoch 0 is not timed)"),
    ("joint", "bss-h:t_grow=2,rerank=1", "BSS-H, re-ranked every epoch"),
]


# every hook: a scoring pass runs inside start_epoch, the terms of observed batches inside
# the next_batch call that ends the epoch
SAMPLER_HOOKS = ("start_epoch", "next_batch", "feedback")


def run_epochs(data, method: str, sampler: str,
               epochs: int) -> Iterator[tuple[float, float, int]]:
    """One training run, an epoch per item: (CPU s of the epoch's training, of which CPU s in
    the sampler's hooks, its steps). Scoring passes a sampler asks for run inside
    `start_epoch`."""
    s = PassOnlySampler() if sampler == PassOnlySampler.name else make_sampler(sampler)
    tr = Trainer(data, TrainConfig(method=method, epochs=epochs, seed=0), s)
    acc = stopwatch(s, SAMPLER_HOOKS, clock=time.thread_time)
    for _ in range(epochs):
        cpu0, hooks0, steps0 = tr.train_cpu_seconds, acc[0], tr.global_step
        while tr.step(stop_at_epoch_end=True) is not None:
            pass
        yield tr.train_cpu_seconds - cpu0, acc[0] - hooks0, tr.global_step - steps0


def paired_runs(data, method: str, sampler: str, epochs: int,
                uniform_first: bool) -> dict[str, tuple[float, float]]:
    """The sampler's run and uniform's, taking turns of two epochs: per side, (CPU s per step,
    CPU s per step in the sampler's hooks) over the second epoch of each turn."""
    sides = {"uniform": "uniform", "sampler": sampler}
    names = list(sides) if uniform_first else list(sides)[::-1]
    runs = {side: run_epochs(data, method, sides[side], epochs) for side in names}
    totals = {side: [0.0, 0.0, 0] for side in names}
    for side, epoch in timed_turns(runs, epochs, names, alternate=False):
        for i, value in enumerate(epoch):
            totals[side][i] += value
    return {side: (cpu / steps, hooks / steps) for side, (cpu, hooks, steps) in totals.items()}


def main() -> None:
    args, data = timing_setup(reps=20, epochs=10, turns=True)
    times: dict[tuple[str, str], dict[str, list[float]]] = {
        (m, s): {"uniform": [], "sampler": []} for m, s, _ in PAIRS}
    hooks: dict[tuple[str, str], dict[str, list[float]]] = {
        (m, s): {"uniform": [], "sampler": []} for m, s, _ in PAIRS}
    list(run_epochs(data, "joint", "uniform", 1))  # warm-up
    for rep in range(args.reps):
        for method, sampler, _ in PAIRS:
            pair = paired_runs(data, method, sampler, args.epochs, uniform_first=rep % 2 == 0)
            for side, (step, hook) in pair.items():
                times[(method, sampler)][side].append(step)
                hooks[(method, sampler)][side].append(hook)
    lines = [
        header(invocation()),
        (f"Default synthetic data (N_train = {len(data.splits['train'])}, batch 64), "
         f"{args.epochs} epochs per measurement, {args.reps} repetitions, each running a "
         "pair's two runs in turns of two epochs and timing the second of each turn (steady "
         "state: epoch 0's one-off work is not timed), 1 torch thread; CPU time of the "
         "training thread. A target is judged on the *median of ratios* (per repetition, the "
         "sampler's step over uniform's), shown with its 95% confidence interval."),
        "",
        ("| method | sampler | what | CPU ms / step (min) | uniform CPU ms / step (min) "
         "| ratio of minima | median of ratios [95% CI] | sampler µs / step "
         "| sampler overhead |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, sampler, what in PAIRS:
        base, mine = times[(method, sampler)]["uniform"], times[(method, sampler)]["sampler"]
        ratio, low, high = median_interval([m / b for m, b in zip(mine, base)])
        own = statistics.median(hooks[(method, sampler)]["sampler"])
        base_own = statistics.median(hooks[(method, sampler)]["uniform"])
        attributable = 1 + (own - base_own) / statistics.median(base)
        lines.append(
            f"| {method} | {sampler} | {what} | {1000 * min(mine):.3f} | "
            f"{1000 * min(base):.3f} | {min(mine) / min(base):.3f} | "
            f"{ratio:.3f} [{low:.3f}, {high:.3f}] | {1e6 * own:.0f} | {attributable:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    write_result("overhead", text)


if __name__ == "__main__":
    main()
