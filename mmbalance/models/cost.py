"""What a training step costs, measured before a long run starts.

A CPU run of the papers' set-ups can take hours per epoch (CREMA-D's ResNet18 pair: about
2 s per sample on two cores). `seconds_per_sample` times a forward and backward pass of a
copy of the model on a couple of real samples, so a person learns the cost before the run,
and the run itself (weights, BatchNorm statistics, random streams) is untouched.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn


def _total(out: object) -> torch.Tensor:
    """The sum of every float tensor in a model's output (tensors, tuples, dicts)."""
    if isinstance(out, torch.Tensor):
        return out.float().sum() if out.is_floating_point() else torch.zeros(())
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, list | tuple):
        return sum((_total(o) for o in out), torch.zeros(()))
    return torch.zeros(())


def seconds_per_sample(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Wall seconds of one training forward + backward pass per sample of `batch`, on a copy
    of `model` in train mode (the model itself is not touched). The second of two passes is
    timed: the first pays one-off costs (kernel set-up, allocation) that dwarf a small
    model's step."""
    n = len(next(iter(batch.values())))
    if n == 0:
        raise ValueError("an empty batch measures nothing")
    probe = copy.deepcopy(model).train()
    cpu_rng = torch.get_rng_state()  # dropout draws must not shift the run's own stream
    try:
        for _ in range(2):
            probe.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            _total(probe(batch)).backward()
            seconds = time.perf_counter() - t0
    finally:
        torch.set_rng_state(cpu_rng)
    return seconds / n

