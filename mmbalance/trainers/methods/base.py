"""What every MML method shares: its narrow context, its step output, its hyperparameters.

A method trains the model on a batch and nothing else: it sees the model, the optimizer,
the training arrays and labels, the run's random stream, the current epoch, the sampler's
quota mode and the batch size (`MethodContext`), never the trainer. Each method declares
its own hyperparameter dataclass (`Method.Options`), whose field names are the flat keys a
user writes (`--set ogm_alpha=0.5`, `train: {mla_fusion: equal}` in YAML).

Methods that take per-modality batches read a modality's rows by the run's quota meaning
(`TrainConfig.quota_mode`, `mmbalance/trainers/quota.py`: `quota_chunks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from mmbalance.balance import true_class_score
from mmbalance.errors import ConfigError
from mmbalance.models.multimodal import MultimodalModel
from mmbalance.trainers.arrays import FeatureArray
from mmbalance.trainers.methods.output import Pending, StepOutput
from mmbalance.trainers.quota import quota_chunks
from mmbalance.trainers.state import from_saveable, object_state

__all__ = ["Method", "MethodContext", "NoOptions", "StepOutput", "batch_output", "quota_chunks"]


@dataclass
class MethodContext:
    """What a method may use. `epoch` is kept current by the trainer (OGM-GE's window)."""

    model: MultimodalModel
    optimizer: torch.optim.Optimizer
    x: dict[str, FeatureArray]  # the training split's features, per modality
    y: torch.Tensor  # the training split's labels, on the device
    generator: torch.Generator  # the run's own stream for training-time noise
    batch_size: int
    quota_mode: str  # what per-modality batch sizes mean (TrainConfig.quota_mode)
    epoch: int = 0
    quota_plan: object = None  # the run's QuotaPlan (`unit`: one update's samples under share)

    @property
    def modalities(self) -> list[str]:
        return self.model.modalities


@dataclass
class NoOptions:
    """A method without hyperparameters of its own."""

    def check(self) -> None:
        pass


class Method:
    name = "base"
    head = "fusion"  # the MultimodalModel head it trains
    accepts_unimodal_batches = False
    # with per-modality batches, also wants a paired batch of B under the key PAIRED
    wants_paired_with_quotas = False
    Options: type = NoOptions

    def __init__(self, ctx: MethodContext, options) -> None:
        self.ctx = ctx
        self.options = options

    @classmethod
    def model_options(cls, options) -> dict:
        """Keyword arguments of `MultimodalModel` that this method's options set."""
        return {}

    def loss_weights(self) -> tuple[float, ...] | None:
        """The training loss's weights (per modality, then the fusion loss) where the method
        has them: BSS's measurer weighs its per-sample loss the same way unless told
        otherwise, as the authors' code does."""
        return None

    def step(self, batch: dict[str, torch.Tensor], want_logits: bool) -> StepOutput:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Plain attributes (MLA's projector, ...): what a checkpoint must carry."""
        return object_state(self)

    def load_state_dict(self, state: dict) -> None:
        device = next(self.ctx.model.parameters()).device
        for key, value in state.items():
            value = from_saveable(value)
            setattr(self, key, value.to(device) if isinstance(value, torch.Tensor) else value)

    # ---------------------------------------------------------------- helpers
    @property
    def unit(self) -> int:
        """The samples of one optimizer step on a modality's rows: B, or under `share` the
        iteration's unit (the epoch's last iteration takes the rest of the training set)."""
        plan = self.ctx.quota_plan
        return plan.unit if plan is not None and self.ctx.quota_mode == "share" \
            else self.ctx.batch_size

    def train_mode(self) -> None:
        """The model in training mode (evaluation leaves it in eval mode; switching a whole
        module tree costs more than a small model's step, so only when needed)."""
        if not self.ctx.model.training:
            self.ctx.model.train()

    def paired_index(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The one index array of a paired batch."""
        names = self.ctx.modalities
        first = batch[names[0]]
        for m in names:  # a loop, not any(<generator>): it runs at every step
            if batch[m] is not first and not torch.equal(batch[m], first):
                raise ConfigError(f"method '{self.name}' needs paired batches (one index array "
                                  "for every modality), but the sampler gave each modality "
                                  "its own")
        return first

    def paired_output(
        self, uni: dict[str, torch.Tensor], mm: torch.Tensor, y: torch.Tensor,
        loss: torch.Tensor | None, want_logits: bool, total: str | None = None,
    ) -> StepOutput:
        """The output of a step on a paired batch: its scores and unimodal CE come later, in
        bulk, from one log-softmax over the stacked logits (see `output.py`); for samplers
        that observe, the detached logits (M + 1, n, C) and the labels now."""
        names = self.ctx.modalities
        # kept as they are, not detached (a detach per tensor costs as much as the rest of
        # this call): backward has freed what their graph saved, and they are read under
        # no_grad (`read_outputs`)
        logits = [uni[m] for m in names]
        extra = [loss] if loss is not None else []
        observed = None
        if want_logits:  # the sampler keeps these: no graph may hang on them
            observed = torch.stack([*(z.detach() for z in logits), mm.detach()])
        sizes = dict.fromkeys(names, y.shape[0])
        return StepOutput(None, names, sizes, observed, y if want_logits else None, total,
                          Pending("log", logits, y, extra))


def batch_output(uni: dict[str, torch.Tensor], ys: dict[str, torch.Tensor],
                 ce: dict[str, torch.Tensor | None], sizes: dict[str, int],
                 same_rows: bool, total, modalities: list[str] | None = None) -> StepOutput:
    """The output of a step on per-modality batches: per-modality batch score, then unimodal
    CE (over every sample a modality was trained on this iteration).

    `ce[m]`, where given, is modality m's training loss on exactly these samples (one
    chunk): the same number `F.cross_entropy` would compute again. With `same_rows` (a
    paired batch: every modality trained on the same samples) and every CE given, the
    scores come later in bulk (see `output.py`); otherwise they are computed now. A
    modality of `modalities` that is missing from `uni` trained nothing this iteration
    (a `share` quota can skip one): its numbers are NaN and its size 0, and the learning
    status leaves it as it was."""
    names = modalities if modalities is not None else list(uni)
    if same_rows and len(uni) == len(names) and all(ce.get(m) is not None for m in names):
        pending = Pending("prob", [uni[m] for m in names], ys[names[0]],
                          [ce[m] for m in names])
        return StepOutput(None, names, sizes, total=total, pending=pending)
    with torch.no_grad():
        # every trained modality's rows in one softmax (a row's value does not depend on
        # the rows beside it), then each modality's mean over its own slice: the numbers of
        # one softmax and one mean per modality, in a third fewer kernels (this runs at every
        # step of a quota sampler)
        trained = [m for m in names if m in uni]
        true = true_class_score(torch.cat([uni[m] for m in trained]),
                                torch.cat([ys[m] for m in trained]))
        means, a = {}, 0
        for m in trained:
            n = uni[m].shape[0]
            means[m] = true[a : a + n].mean()
            a += n
        nan = None
        if len(trained) < len(names):
            nan = torch.full((), float("nan"), device=true.device, dtype=true.dtype)
        s = [means.get(m, nan) for m in names]
        losses = [nan if m not in uni else ce[m] if ce.get(m) is not None
                  else F.cross_entropy(uni[m], ys[m]) for m in names]
        return StepOutput(torch.stack([*s, *losses]), names,
                          {m: sizes.get(m, 0) for m in names}, total=total)


def check_nonnegative(options, keys: tuple[str, ...]) -> None:
    for key in keys:
        if getattr(options, key) < 0:
            raise ConfigError(f"{key}: must be >= 0, got {getattr(options, key)}")


def check_choice(options, key: str, allowed: tuple[str, ...]) -> None:
    if getattr(options, key) not in allowed:
        raise ConfigError(f"{key}: got {getattr(options, key)!r}, allowed {list(allowed)}")

