"""The compute ledger of one run: what a comparison must hold equal before it credits a gain.

Counted as the run trains, by the encoders themselves (`CountingForward`) and a hook on the
optimizer, so no method has to remember to report anything:

- `optimizer_steps`;
- per encoder m: `updates_<m>` (optimizer steps in which m's parameters had a gradient, i.e.
  changed), `grad_samples_<m>` (samples m encoded with autograd on before an optimizer step
  that found a gradient on m: a forward whose output no loss uses is not one) and
  `nograd_samples_<m>` (every other sample m encoded: scoring passes, validation, features
  of a modality that sits out a `share` iteration);
- per head part (`head` for the fusion or shared layer, `head_<m>` for a unimodal head):
  `updates_<part>`;
- `train_seconds` and `wall_seconds`.

What happens after training (the final evaluation and the linear probes, the same for every
run) is not counted: `snapshot()` is read before it.
"""

from __future__ import annotations

import time

import torch
from torch import nn

# the keys of a ledger, for M modalities and the head parts of the model
PER_ENCODER = ("updates", "grad_samples", "nograd_samples")


class ComputeLedger:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 modalities: list[str]) -> None:
        self.modalities = list(modalities)
        self.counts: dict[str, float] = {"optimizer_steps": 0}
        # parameter groups whose updates are counted: each encoder and each head part
        self._groups: dict[str, list[nn.Parameter]] = {
            m: [p for p in model.encoders[m].parameters() if p.requires_grad]
            for m in self.modalities}
        for name, param in model.head.named_parameters():
            part = name.rsplit(".", 1)[0]  # fc.weight -> fc; heads.audio.weight -> heads.audio
            key = "head_" + part.split(".", 1)[1] if part.startswith("heads.") else "head"
            self._groups.setdefault(key, []).append(param)
        for key in self._groups:
            self.counts[f"updates_{key}"] = 0
        # samples encoded with autograd on since the last optimizer step: they count as
        # gradient samples if the step finds a gradient on that encoder, else as no-grad
        self._pending = {m: 0 for m in self.modalities}
        for m in self.modalities:
            self.counts[f"grad_samples_{m}"] = 0
            self.counts[f"nograd_samples_{m}"] = 0
            encoder = model.encoders[m]
            encoder.forward = CountingForward(self, encoder, m)
        optimizer.register_step_pre_hook(self._before_step)
        # one representative parameter per group (a group's parameters get gradients
        # together), with the keys it counts under: the hook runs at every optimizer step,
        # so the key strings are built once here
        self._probe = {k: v[0] for k, v in self._groups.items() if v}
        self._update_probes = [(f"updates_{k}", p) for k, p in self._probe.items()]
        self._sample_probes = [(m, self._probe.get(m), f"grad_samples_{m}",
                                f"nograd_samples_{m}") for m in self.modalities]
        self.wall_start: float | None = None
        self.wall_before = 0.0  # wall seconds of the run before a checkpoint it resumed from

    def count_encoded(self, m: str, output) -> None:
        """Count what encoder m just encoded: pending gradient samples with autograd on,
        no-grad samples otherwise."""
        if not isinstance(output, torch.Tensor):
            return
        if output.requires_grad:
            self._pending[m] += output.shape[0]
        else:
            self.counts[f"nograd_samples_{m}"] += output.shape[0]

    def _before_step(self, optimizer, args, kwargs) -> None:
        counts, pending = self.counts, self._pending
        counts["optimizer_steps"] += 1
        for key, param in self._update_probes:
            if param.grad is not None:
                counts[key] += 1
        for m, param, grad_key, nograd_key in self._sample_probes:
            n = pending[m]
            if n:
                counts[grad_key if param is not None and param.grad is not None
                       else nograd_key] += n
                pending[m] = 0

    def add_step(self, samples: dict[str, int], parts: tuple[str, ...] = ("head",)) -> None:
        """Count one optimizer step this run took outside its own optimizer (the vectorised
        env's stacked update, `trainers/methods/mla_batched.py`): the encoders in `samples`
        changed, each on that many gradient samples, and so did the head `parts`."""
        self.counts["optimizer_steps"] += 1
        for m, n in samples.items():
            self.counts[f"updates_{m}"] += 1
            self.counts[f"grad_samples_{m}"] += n
        for part in parts:
            self.counts[f"updates_{part}"] += 1

    def start(self) -> None:
        """Called when training starts: the wall clock runs from here."""
        if self.wall_start is None:
            self.wall_start = time.perf_counter()

    @property
    def wall_seconds(self) -> float:
        now = time.perf_counter() - self.wall_start if self.wall_start is not None else 0.0
        return self.wall_before + now

    def _settled(self) -> dict[str, float]:
        """The counts, with samples no optimizer step has used yet counted as no-grad."""
        counts = dict(self.counts)
        for m, n in self._pending.items():
            counts[f"nograd_samples_{m}"] += n
        return counts

    def snapshot(self, train_seconds: float) -> dict[str, float]:
        """The counts so far, with the run's training and wall seconds."""
        return {**self._settled(), "train_seconds": train_seconds,
                "wall_seconds": self.wall_seconds}

    def state_dict(self) -> dict:
        return {**self._settled(), "wall_seconds": self.wall_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.counts.update({k: v for k, v in state.items() if k in self.counts})
        self.wall_before = float(state.get("wall_seconds", 0.0))
        self.wall_start = time.perf_counter()


class CountingForward:
    """An encoder's own `forward`, reporting each output to the ledger. It is the encoder's
    `forward` attribute rather than a forward hook because a module with hooks takes
    PyTorch's slow call path, which costs a small model's training step about 2%. A deep
    copy of the model counts into a copy of the ledger, never into the run's."""

    def __init__(self, ledger: ComputeLedger, encoder: nn.Module, m: str) -> None:
        self.ledger, self.encoder, self.m = ledger, encoder, m

    def __call__(self, *args, **kwargs):
        output = type(self.encoder).forward(self.encoder, *args, **kwargs)
        self.ledger.count_encoded(self.m, output)
        return output


def stop_counting(model: nn.Module) -> None:
    """Take the ledger's counting off a model (a structural copy that runs other tensors)."""
    for module in model.modules():
        if isinstance(module.__dict__.get("forward"), CountingForward):
            del module.forward


def encoder_totals(ledger: dict, modalities: list[str]) -> dict[str, float]:
    """The three totals a comparison holds equal: encoder updates, gradient samples and
    no-grad forward samples, summed over the modalities."""
    return {kind: float(sum(ledger.get(f"{kind}_{m}", 0) for m in modalities))
            for kind in PER_ENCODER}
