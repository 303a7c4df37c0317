"""Shared bits of the benchmark scripts: where results go and what machine made them."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(command: str) -> str:
    return (f"Produced by `{command}` on {time.strftime('%Y-%m-%d')}, commit {commit()}; "
            f"machine: {machine()}.")


def invocation() -> str:
    return "python " + " ".join([str(Path(sys.argv[0]).as_posix())] + sys.argv[1:])


def stopwatch(obj, names, clock=time.perf_counter) -> list[float]:
    """Wrap the methods `names` of `obj` with a stopwatch (`clock`); returns the accumulator,
    `[seconds spent inside them]`."""
    spent = [0.0]
    for name in names:
        inner = getattr(obj, name)

        def wrapped(*args, _inner=inner, **kwargs):
            t0 = clock()
            try:
                return _inner(*args, **kwargs)
            finally:
                spent[0] += clock() - t0

        setattr(obj, name, wrapped)
    return spent


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(median, low, high): the median and a distribution-free `level` confidence interval
    for it, from the order statistics the binomial law gives (no assumption on the noise,
    which on a shared machine is anything but normal)."""
    from scipy.stats import binom

    ranked = sorted(values)
    n = len(ranked)
    k = int(binom.ppf((1 - level) / 2, n, 0.5))  # rank of the lower bound (1-based)
    return statistics.median(ranked), ranked[max(k - 1, 0)], ranked[min(n - k, n - 1)]


def timed_turns(runs: dict[str, Iterator], epochs: int, first: list[str],
                alternate: bool) -> Iterator[tuple[str, object]]:
    """Runs (one item per epoch each) taking turns of two epochs in the order `first` (with
    `alternate`, reversed every other turn): (run, item) of the second epoch of each turn.
    That epoch starts warm from its own run's epoch before, as in a run alone, and meets
    the same load as the other runs' timed epochs a tenth of a second away."""
    for turn in range(epochs // 2):
        for name in first[::-1] if alternate and turn % 2 else first:
            next(runs[name])  # the turn's first epoch: the run's own work warms the caches
            yield name, next(runs[name])


def timing_setup(reps: int, epochs: int, turns: bool = False):
    """(--reps/--epochs arguments, the default synthetic data) of a CPU timing benchmark, with
    torch on one thread (as the envs' runners run); `turns`: the epochs must be even
    (`timed_turns`)."""
    import argparse

    import torch

    from mmbalance.data.registry import load_dataset

    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=reps)
    p.add_argument("--epochs", type=int, default=epochs)
    args = p.parse_args()
    if turns and (args.epochs < 2 or args.epochs % 2):
        p.error("--epochs: an even number >= 2 (the runs take turns of two epochs)")
    torch.set_num_threads(1)
    return args, load_dataset("synthetic")


def write_result(name: str, text: str) -> Path:
    """Write and show one result block, `results/<name>.md` (update_readme.py copies it into
    the README)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    print(text)
    return path


def run_compare(args: list[str], raw: Path, passthrough: list[str]) -> tuple[str, float, str]:
    """`mmbalance compare ARGS --out RAW`, into a fresh RAW; exits with its status if it
    fails. Returns the command as the README shows it, its minutes, and its summary.md."""
    from mmbalance.cli import main as cli

    if raw.exists():
        shutil.rmtree(raw)
    t0 = time.perf_counter()
    rc = cli([*args, "--out", str(raw), *passthrough])
    if rc != 0:
        sys.exit(rc)
    minutes = (time.perf_counter() - t0) / 60
    return "mmbalance " + " ".join(args), minutes, (raw / "summary.md").read_text().strip()
