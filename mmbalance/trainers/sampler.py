"""The sampler interface: a sampler *is* the data source of the training loop.

The trainer consumes this interface and the samplers in `mmbalance/policies/` implement it,
so it lives here, on the trainer's side: policies import it, the trainer never imports a
policy. The trainer asks `next_batch()` for what to feed and never knows the policy behind
it. A batch maps each modality to an index array into the training set: the same array for
every modality is a paired batch; different arrays (of possibly different sizes) are
unimodal batches (DUS), which only methods that update each modality on its own batch
accept.

The contract, besides `bind` and `next_batch`:

- one epoch hook, `start_epoch(epoch, scorer, last_epoch)`: a `Scorer` that runs a no-grad
  pass over the training set when called (BSS), and the previous epoch's row of the epoch
  log (`val_acc`, the learning status, ...; None before the first);
- one feedback call per step, `feedback(StepFeedback)`, for samplers that ask for it with
  an explicit flag: `needs_status` (the learning status, up to date with this step: the
  trainer then reads each step's numbers at once instead of in bulk) and `observes` (the
  step's `ForwardPass`, the detached logits of the trained batch); what a sampler computes
  from them (BSS's balance terms, DUS's quotas) is its own business;
- one metrics call, `log_metrics(scope)`: the sampling distribution for the epoch row, or
  with `logs_steps` set, extra columns for every step's row;
- `state_dict()` / `load_state_dict()` carry a sampler through a checkpoint.

`UniformSampler`, plain training's data order, is the trainer's default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mmbalance.balance import LearningStatus
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
class StepFeedback:
    """What the trainer knows after a training step, for `Sampler.feedback`: the run's step
    count, the learning status (up to date; None unless the sampler `needs_status`) and
    the trained batch's forward pass (None unless it `observes`)."""

    step: int
    status: LearningStatus | None = None
    forward: ForwardPass | None = None


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
    """Base class. Subclasses override `start_epoch` and `next_batch`, and optionally more
(see the module docstring for the contract).

    A sampler's checkpointed state is its plain-data attributes (arrays, tensors, numbers,
    strings and containers of them) and its random stream; one that holds more (a network,
    an optimizer) extends `state_dict` / `load_state_dict`.
    """

    name = "base"
    unimodal_batches = False  # True: yields per-modality batches; needs a method like MLA
    observes = False  # True: every step's feedback carries the trained batch's forward pass
    needs_status = False  # True: every step's feedback carries the up-to-date learning status
    logs_steps = False  # True: `log_metrics("step")` adds columns to every step's row
    # attributes set from the sampler's options: a checkpoint restores the run's position
    # and streams, never these, so a PBT trial that clones another's checkpoint with
    # mutated options trains on with its own
    option_attributes: tuple[str, ...] = ()

    def __init__(self) -> None:
        pass

    def bind(self, ctx: SamplerContext) -> None:
        self.ctx = ctx
        self.rng = ctx.rng

    def start_epoch(self, epoch: int, scorer: Scorer, last_epoch: dict | None = None) -> None:
        """A new epoch starts; `last_epoch` is the previous epoch's row (None before the
        first)."""
        raise NotImplementedError

    def next_batch(self) -> Batch | None:
        """The next batch of this epoch, or None when the epoch is over."""
        raise NotImplementedError

    def feedback(self, step: StepFeedback) -> None:
        """After every training step, for samplers that `observes` or `needs_status`."""

    def state_dict(self) -> dict:
        """What continues this sampler exactly: plain attributes and the random stream."""
        return {"attributes": object_state(self), "rng": to_saveable(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        mine = {key: getattr(self, key) for key in self.option_attributes}
        for key, value in state["attributes"].items():
            setattr(self, key, from_saveable(value))
        self.rng.bit_generator.state = from_saveable(state["rng"])
        for key, value in mine.items():
            setattr(self, key, value)

    def log_metrics(self, scope: str = "epoch") -> dict[str, float]:
        """`epoch`: the current sampling distribution, for the epoch row, logs and plots;
        `step` (called once per training step, for samplers that `logs_steps`: keep it
        cheap): extra columns for the step's row (e.g. a policy's probabilities)."""
        return {}

    def config(self) -> dict:
        """Hyperparameters, for the run's resolved config."""
        return {}

    def paired(self, idx: np.ndarray) -> Batch:
        return {m: idx for m in self.ctx.modalities}


class EpochOrderSampler(Sampler):
    """A sampler whose epoch is an ordered list of indices, cut into batches of B."""

    def start_epoch(self, epoch: int, scorer: Scorer, last_epoch: dict | None = None) -> None:
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
