"""The sampler interface: a sampler *is* the data source of the training loop.

The trainer consumes this interface and the samplers in `mmbalance/policies/` implement it,
so it lives here, on the trainer's side: policies import it, the trainer never imports a
policy. The trainer asks `next_batch()` for what to feed and never knows the policy behind
it. A batch maps each modality to an index array into the training set: the same array for
every modality is a paired batch; different arrays (of possibly different sizes) are
unimodal batches (DUS), which only methods that update each modality on its own batch
accept. After each step the trainer calls `update(status)`. A sampler that scores samples
(BSS) gets forward-pass outputs and nothing else: `observe(ForwardPass)` with the detached
logits of every trained batch (if it `observes`), and at each epoch start a `Scorer` that
runs a no-grad pass over the training set when called; what it computes from them (BSS's
balance terms, with its own loss weights) is its own business. `log_metrics()` exposes the
sampling distribution at any time; `state_dict()` / `load_state_dict()` carry a sampler
through a checkpoint.

`UniformSampler`, plain training's data order, is the trainer's default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mmbalance.trainers.quota import DEFAULT_QUOTA_MODE, QuotaPlan
from mmbalance.trainers.state import from_saveable, object_state, to_saveable

Batch = dict[str, np.ndarray]
# A quota sampler's batch may also carry a paired batch of B under this key, for methods
# that train a fusion loss beside the per-modality losses (joint-uni)
PAIRED = "__paired__"


@dataclass
class ForwardPass:
    """Detached outputs of a forward pass over some training samples: `logits` (M + 1, n, C)
    holds each modality's unimodal logits, then the fusion layer's (what BSS measures);
    `rows` the samples' indices into the training set (host); `y` their labels."""

    rows: np.ndarray
    logits: torch.Tensor
    y: torch.Tensor


# Runs a no-grad forward pass over the whole training set (eval mode) when called.
Scorer = Callable[[], ForwardPass]


@dataclass
class SamplerContext:
    n_train: int
    modalities: list[str]
    batch_size: int
    epochs: int
    rng: np.random.Generator
    num_classes: int | None = None  # the data's classes (observations normalise losses by it)
    paired_with_quotas: bool = False  # quota samplers add a paired batch under PAIRED
    # the training loss's weights (per modality, then fusion) where the method has them:
    # BSS's measurer uses them unless given its own
    loss_weights: tuple[float, ...] | None = None
    # the run's quota meaning (`TrainConfig.quota_mode`): how many rows a quota sampler
    # draws per modality for its quotas (`QuotaPlan.rows`); a sampler bound outside a
    # trainer (checks, tests) gets the default meaning
    quota_plan: QuotaPlan | None = None

    def __post_init__(self) -> None:
        if self.quota_plan is None:
            self.quota_plan = QuotaPlan(DEFAULT_QUOTA_MODE, self.batch_size,
                                        len(self.modalities))

    @property
    def steps_per_epoch(self) -> int:
        """Training steps of an epoch of N samples in batches of B: ceil(N / B)."""
        return -(-self.n_train // self.batch_size)

    @property
    def total_steps(self) -> int:
        """The run's step budget (what a decision loop's progress t / T counts to)."""
        return self.epochs * self.steps_per_epoch


class Sampler:
    """Base class. Subclasses override `start_epoch` and `next_batch`, and optionally more.

    A sampler's checkpointed state is its plain-data attributes (arrays, tensors, numbers,
    strings and containers of them) and its random stream; one that holds more (a network,
    an optimizer) extends `state_dict` / `load_state_dict`.
    """

    name = "base"
    unimodal_batches = False  # True: yields per-modality batches; needs a method like MLA
    observes = False  # True: wants per-sample (sim, loss) of every trained batch

    def __init__(self) -> None:
        pass

    def bind(self, ctx: SamplerContext) -> None:
        self.ctx = ctx
        self.rng = ctx.rng

    def start_epoch(self, epoch: int, scorer: Scorer) -> None:
        raise NotImplementedError

    def next_batch(self) -> Batch | None:
        """The next batch of this epoch, or None when the epoch is over."""
        raise NotImplementedError

    def update(self, status) -> None:
        """Called after every training step with the trainer's LearningStatus (only for
        samplers that override it: see `reads_status`)."""

    @property
    def reads_status(self) -> bool:
        """Whether `update` does anything: the trainer then reads each step's numbers at
        once; for the others it reads them in bulk (no device sync per step)."""
        return type(self).update is not Sampler.update

    def observe(self, out: ForwardPass) -> None:
        """The training forward pass of a trained batch (called if `observes`)."""

    def on_epoch_end(self, metrics: dict[str, float]) -> None:
        """Called after each epoch's validation with that epoch's row (`val_acc`, ...)."""

    def state_dict(self) -> dict:
        """What continues this sampler exactly: plain attributes and the random stream."""
        return {"attributes": object_state(self), "rng": to_saveable(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state["attributes"].items():
            setattr(self, key, from_saveable(value))
        self.rng.bit_generator.state = from_saveable(state["rng"])

    def log_metrics(self) -> dict[str, float]:
        """The current sampling distribution, for logs and plots."""
        return {}

    def step_metrics(self) -> dict[str, float]:
        """Extra columns for this step's row of the step table (e.g. a policy's probabilities).

        Called once per training step: keep it cheap; most samplers add nothing.
        """
        return {}

    def config(self) -> dict:
        """Hyperparameters, for the run's resolved config."""
        return {}

    def paired(self, idx: np.ndarray) -> Batch:
        return {m: idx for m in self.ctx.modalities}


class EpochOrderSampler(Sampler):
    """A sampler whose epoch is an ordered list of indices, cut into batches of B."""

    def start_epoch(self, epoch: int, scorer: Scorer) -> None:
        self._order = self.epoch_order(epoch, scorer)
        self._pos = 0

    def epoch_order(self, epoch: int, scorer: Scorer) -> np.ndarray:
        raise NotImplementedError

    def next_batch(self) -> Batch | None:
        if self._pos >= len(self._order):
            return None
        idx = self._order[self._pos : self._pos + self.ctx.batch_size]
        self._pos += self.ctx.batch_size
        return self.paired(idx)


class UniformSampler(EpochOrderSampler):
    """Every sample once per epoch, in a fresh random order: plain training."""

    name = "uniform"

    def epoch_order(self, epoch: int, scorer: Scorer) -> np.ndarray:
        return self.rng.permutation(self.ctx.n_train)
