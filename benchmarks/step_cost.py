"""The trainer's step against a hand-written PyTorch loop on the same model and data.

Every RL episode is a training run, so what the trainer adds to a plain loop is the env's
throughput lost. Both sides train the same `MultimodalModel` (same initial weights, same
optimizer) on the default synthetic data, batch 64, a fresh random order each epoch, one
torch thread, with a validation pass (accuracy) after every epoch:

- `trainer`: `Trainer(..., UniformSampler())` stepped to its epoch budget, everything it
  does included (learning status, per-step log, epoch rows with the full validation metrics,
  best-model tracking); the final test evaluation and the linear probe are not (`probe` off,
  and `final_metrics` is not called: the hand loop has neither).
- `hand`: the loop a person writes: index the batch, forward, cross-entropy, backward, step
  (`joint`); for `mla`, per modality the encoder and the shared head, with MLA's projector on
  the head's gradient, as the paper's loop does. It keeps no record of the loss and no copy
  of the best weights, and validates accuracy only: the trainer's per-step log, learning
  status, full validation metrics and best-model copy all count against it.

Timed in CPU time of the training thread (other load on a shared machine hardly moves it),
set-up excluded. The two runs of a repetition take turns of two epochs (which goes first
alternates), and the second epoch of each turn is timed: it finds the caches warm from its
own run's epoch before, as in a run alone, and it is paired with the other run's timed
epoch a tenth of a second away, under the same load (whole runs back to back drifted apart
by several percent). The figure the target is judged on is the median of the paired
per-step ratios, with its 95% confidence interval (order statistics); the ratio of the
medians and the minima are shown beside it. Writes `results/step_cost.md`.
Usage: python benchmarks/step_cost.py [--reps 21] [--epochs 6]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import numpy as np
import torch
from _common import (
    header,
    invocation,
    median_interval,
    timed_turns,
    timing_setup,
    write_result,
)
from torch.nn import functional as F

from mmbalance.models.multimodal import MultimodalModel
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.sampler import UniformSampler
from mmbalance.trainers.trainer import Trainer

METHODS = ("joint", "mla")
TARGET = 1.10  # issue 22: on the median of paired ratios


def config(method: str, epochs: int) -> TrainConfig:
    return TrainConfig.from_dict({"method": method, "epochs": epochs, "batch_size": 64,
                                  "seed": 0, "probe": False, "device": "cpu"})


def trainer_epochs(data, method: str, epochs: int) -> Iterator[float]:
    """CPU seconds per training step of the trainer, one epoch (and its validation) per item."""
    tr = Trainer(data, config(method, epochs), UniformSampler())
    for _ in range(epochs):
        c0, steps0 = time.thread_time(), tr.global_step
        while tr.step(stop_at_epoch_end=True) is not None:
            pass
        yield (time.thread_time() - c0) / (tr.global_step - steps0)


def hand_epochs(data, method: str, epochs: int) -> Iterator[float]:
    """CPU seconds per training step of a plain loop on the same model and data, one epoch
    (and its validation) per item."""
    cfg = config(method, epochs)
    torch.manual_seed(cfg.seed)
    model = MultimodalModel(data.input_shapes, data.num_classes,
                            head="shared" if method == "mla" else "fusion",
                            feature_dim=cfg.feature_dim, hidden=cfg.hidden)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    mods = list(data.modalities)
    train, val = data.splits["train"], data.splits["val"]
    x = {m: torch.as_tensor(train.x[m]) for m in mods}
    y = torch.as_tensor(train.y)
    xv = {m: torch.as_tensor(val.x[m]) for m in mods}
    yv = torch.as_tensor(val.y)
    rng = np.random.default_rng(cfg.seed)
    n, b = len(y), cfg.batch_size
    proj = torch.eye(cfg.feature_dim)
    for _ in range(epochs):
        c0, steps = time.thread_time(), 0
        model.train()
        order = torch.as_tensor(rng.permutation(n))
        for a in range(0, n, b):
            idx = order[a : a + b]
            if method == "joint":
                mm, _ = model({m: x[m][idx] for m in mods})
                loss = F.cross_entropy(mm, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            else:
                prev = None
                for m in mods:
                    if prev is not None:  # OWM projector: damp the previous modality's span
                        r = prev.mean(0, keepdim=True).T
                        k = proj @ r
                        proj = proj - (k @ k.T) / (cfg.options.mla_proj_alpha + r.T @ k)
                    feat = model.encoders[m](x[m][idx])
                    loss = F.cross_entropy(model.head.unimodal(feat), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if prev is not None:
                        g = model.head.fc.weight.grad
                        g.copy_(g @ proj)
                    opt.step()
                    prev = feat.detach()
            steps += 1
        model.eval()
        with torch.no_grad():
            mm, _ = model(xv)
            _ = float((mm.argmax(1) == yv).float().mean())
        yield (time.thread_time() - c0) / steps


def main() -> None:
    args, data = timing_setup(reps=21, epochs=6, turns=True)
    sides = {"trainer": trainer_epochs, "hand": hand_epochs}
    times = {(m, s): [] for m in METHODS for s in sides}
    for m in METHODS:  # warm-up: first calls pay one-off costs (allocator, kernels)
        for fn in sides.values():
            list(fn(data, m, 1))
    for rep in range(args.reps):
        for m in METHODS:
            runs = {s: fn(data, m, args.epochs) for s, fn in sides.items()}
            first = list(sides)[:: 1 if rep % 2 == 0 else -1]
            for s, seconds in timed_turns(runs, args.epochs, first, alternate=True):
                times[(m, s)].append(seconds)
    n = len(data.splits["train"])
    lines = [
        header(invocation()),
        (f"Default synthetic data (N_train = {n}, batch 64, {-(-n // 64)} steps per epoch), "
         f"uniform sampling, {args.epochs} epochs with a validation pass after each, 1 torch "
         f"thread; {args.reps} repetitions, the trainer and the hand loop taking turns of two "
         f"epochs, the second timed ({args.reps * args.epochs // 2} pairs); CPU ms per step "
         "of the training thread (an epoch's steps and its validation). "
         f"Target: median of paired ratios <= {TARGET:.2f}; the interval is its 95% "
         "confidence interval."),
        "",
        ("| method | trainer ms / step (median) | hand-written loop ms / step (median) | ratio "
         "of medians | median of paired ratios [95% CI] | target | trainer min | hand min |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        tr, hd = times[(m, "trainer")], times[(m, "hand")]
        paired, low, high = median_interval([a / b for a, b in zip(tr, hd)])
        verdict = "met" if high <= TARGET else "not met" if low > TARGET else (
            "met" if paired <= TARGET else "not met") + " (the interval spans it)"
        lines.append(f"| {m} | {1000 * statistics.median(tr):.3f} | "
                     f"{1000 * statistics.median(hd):.3f} | "
                     f"{statistics.median(tr) / statistics.median(hd):.3f} | "
                     f"{paired:.3f} [{low:.3f}, {high:.3f}] | {verdict} | "
                     f"{1000 * min(tr):.3f} | {1000 * min(hd):.3f} |")
    write_result("step_cost", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
