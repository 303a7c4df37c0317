"""The plain PyTorch training loop: asks a sampler what to feed, keeps the learning status.

No Ray and no sampler here: the sampler arrives through the interface in `sampler.py`, the
method sees only its `MethodContext`. `step()` runs exactly one training iteration (starting
and ending epochs as needed), so an environment can drive training K iterations at a time;
`fit()` runs to the end. Each step's numbers (batch scores, unimodal CE, loss) stay on the
device and are read in bulk at the epoch's end, when `status` or `history` are read, or at
once for a sampler that reads the status every step (docs/architecture.md has the whole
step). Model selection uses validation accuracy only; test metrics come from the best model.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from mmbalance.balance import LearningStatus
from mmbalance.data.dataset import MultimodalDataset
from mmbalance.errors import ConfigError, DivergedError, UserError
from mmbalance.models.multimodal import MultimodalModel
from mmbalance.trainers.arrays import FeatureArray
from mmbalance.trainers.config import TrainConfig
from mmbalance.trainers.ledger import ComputeLedger
from mmbalance.trainers.methods import (
    METHOD_CLASSES,
    MethodContext,
    StepOutput,
    check_method_sampler,
    read_outputs,
)
from mmbalance.trainers.metrics import classification_metrics
from mmbalance.trainers.quota import QuotaPlan
from mmbalance.trainers.sampler import (
    ForwardPass,
    Sampler,
    SamplerContext,
    StepFeedback,
    UniformSampler,
)

# what `state_dict` writes; 2: the sampler and the method write their own state_dict
STATE_FORMAT = 2


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' asked for but torch sees no CUDA GPU; use auto or cpu")
    return torch.device(name)


@dataclass
class History:
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)


class Trainer:
    def __init__(
        self, dataset: MultimodalDataset, config: TrainConfig, sampler: Sampler | None = None
    ):
        self.config = config.check()
        self.dataset = dataset
        self.modalities = list(dataset.modalities)
        self.sampler = sampler or UniformSampler()
        method_cls = METHOD_CLASSES[config.method]
        check_method_sampler(config.method, self.sampler)
        torch.manual_seed(config.seed)  # model initialisation
        self.device = resolve_device(config.device)
        self._on_cpu = self.device.type == "cpu"
        # the run's own stream for training-time noise (OGM-GE), so runs interleaved in one
        # process (several environments) stay reproducible
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.x = {
            s: {m: FeatureArray(sp.x[m], self.device) for m in self.modalities}
            for s, sp in dataset.splits.items()
        }
        self.y = {s: torch.as_tensor(sp.y, device=self.device) for s, sp in dataset.splits.items()}
        self.train_x, self.train_y = self.x["train"], self.y["train"]
        self.n_train = len(dataset.splits["train"])
        self.model = MultimodalModel(
            dataset.input_shapes,
            dataset.num_classes,
            head=method_cls.head,
            feature_dim=config.feature_dim,
            hidden=config.hidden,
            encoders=dataset.info.get("encoders"),
            pretrained=dataset.info.get("pretrained"),
            **method_cls.model_options(config.options),
        ).to(self.device)
        if config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                self.model.parameters(), lr=config.lr, momentum=config.momentum,
                weight_decay=config.weight_decay,
            )
        else:
            self.optimizer = torch.optim.Adam(
                self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
            )
        self.scheduler = (
            torch.optim.lr_scheduler.StepLR(self.optimizer, config.lr_step, config.lr_gamma)
            if config.lr_step
            else None
        )
        self.ledger = ComputeLedger(self.model, self.optimizer, self.modalities)
        self.quota_plan = QuotaPlan(config.quota_mode, config.batch_size, len(self.modalities))
        resident = {m: a.data if a.resident else a for m, a in self.train_x.items()}
        self.method = method_cls(MethodContext(
            model=self.model, optimizer=self.optimizer, x=resident, y=self.train_y,
            generator=self.generator, batch_size=config.batch_size,
            quota_mode=config.quota_mode, quota_plan=self.quota_plan), config.options)
        self._status = LearningStatus(self.modalities, config.accumulation, config.ema_beta)
        # the step log's columns; quota_<m>: what the sampler asked for (a quota sampler's
        # quota, else the batch); rows_<m>: the samples modality m trained on in the step
        self._step_keys = ["step", "epoch", "loss", *(f"quota_{m}" for m in self.modalities),
                           *self._status.keys(), *(f"rows_{m}" for m in self.modalities)]
        self.sampler.bind(
            SamplerContext(
                n_train=self.n_train,
                modalities=self.modalities,
                batch_size=config.batch_size,
                epochs=config.epochs,
                rng=np.random.default_rng([config.seed, 1]),
                num_classes=dataset.num_classes,
                paired_with_quotas=method_cls.wants_paired_with_quotas,
                loss_weights=self.method.loss_weights(),
                quota_plan=self.quota_plan,
            )
        )
        self.epoch = 0
        self.global_step = 0
        self.in_epoch = False
        self._history = History()
        # trained steps whose numbers are still where they were computed (see `_read_steps`)
        self._pending: list[tuple[StepOutput, int, int, dict | None, np.ndarray | None]] = []
        self._quotas: np.ndarray | None = None
        self._needs_status = bool(self.sampler.needs_status)
        self._observes = bool(self.sampler.observes)
        self._logs_steps = bool(self.sampler.logs_steps)
        self.best_val = -math.inf
        self.best_epoch = -1
        self.best_state: dict | None = None
        self.last_step: StepOutput | None = None
        self.train_seconds = 0.0
        # this thread's CPU time in its epochs, evaluation excluded (robust to other load;
        # what fit() spends training: a caller's own work between steps would count too)
        self.train_cpu_seconds = 0.0
        self._cpu_epoch0 = time.thread_time()

    # ----------------------------------------------------------------- training
    @property
    def done(self) -> bool:
        return self.epoch >= self.config.epochs

    @property
    def status(self) -> LearningStatus:
        """The learning status, up to date with every trained step."""
        self._read_steps()
        return self._status

    @property
    def history(self) -> History:
        """The step and epoch logs, up to date with every trained step."""
        self._read_steps()
        return self._history

    def _to_device(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Index arrays as device tensors; a paired batch (one shared array) is moved once."""
        moved: dict[int, torch.Tensor] = {}
        out = {}
        for m, v in batch.items():
            if id(v) not in moved:
                index = torch.from_numpy(np.asarray(v))  # the sampler's array, not a copy
                moved[id(v)] = index if self._on_cpu else index.to(self.device)
            out[m] = moved[id(v)]
        return out

    def step(self, stop_at_epoch_end: bool = False) -> StepOutput | None:
        """One training iteration; None once the epoch budget is spent.

        With `stop_at_epoch_end`, a call that finds the epoch over closes it (evaluation,
        logs) and returns None instead of starting the next one, so a caller can change the
        sampler's plan between epochs.
        """
        batch = self.next_batch(stop_at_epoch_end)
        if batch is None:
            return None
        out = self.method.step(batch, want_logits=self._observes)
        self.record_step(batch, out)
        return out

    def next_batch(self, stop_at_epoch_end: bool = False) -> dict[str, torch.Tensor] | None:
        """The sampler's next batch on the device, opening and closing epochs as needed.

        `step()` is `next_batch` + the method's update + `record_step`; a caller that trains
        several runs in one batched update (the vectorised env) uses the two halves.
        """
        self.ledger.start()
        while not self.done:
            self._t0 = time.perf_counter()  # sampler and training time; not evaluation
            if not self.in_epoch:
                # this thread's CPU time is read per epoch: the clock is a system call that
                # would cost a few percent of a small model's step if read at every step
                self._cpu_epoch0 = time.thread_time()
                self._epoch_start = self._t0
                self.method.ctx.epoch = self.epoch
                last = self._history.epochs[-1] if self._history.epochs else None
                self.sampler.start_epoch(self.epoch, self.training_pass, last)
                self.in_epoch = True
            self.quota_plan.last = None
            batch = self.sampler.next_batch()  # an observing sampler folds its epoch in here
            self._quotas = self.quota_plan.last  # a quota sampler's decision for this step
            if batch is None:
                self._read_steps()
                self.train_seconds += time.perf_counter() - self._t0
                self.train_cpu_seconds += time.thread_time() - self._cpu_epoch0
                self._end_epoch()
                if stop_at_epoch_end:
                    return None
                continue
            self._host_batch = batch  # the sampler's own index arrays, for its feedback
            return self._to_device(batch)
        return None

    def record_step(self, batch: dict[str, torch.Tensor], out: StepOutput) -> None:
        """Take a trained batch's output and give the sampler its feedback, if it asked for
        some: the batch's forward pass (if it `observes`) and the learning status (if it
        `needs_status`: the step's numbers are read now). Otherwise the step's numbers stay
        on the device and are read with the epoch's others (`_read_steps`); a non-finite
        loss stops the run there (`DivergedError`, naming the step) rather than training
        on."""
        self.global_step += 1
        self._pending.append((out, self.global_step, self.epoch, None, self._quotas))
        if self._observes or self._needs_status:
            forward = None
            if self._observes and out.logits is not None:
                rows = self._host_batch[self.modalities[0]]
                forward = ForwardPass(rows, out.logits, out.labels)
            if self._needs_status:
                self._read_steps()
            self.sampler.feedback(StepFeedback(
                self.global_step, self._status if self._needs_status else None, forward))
        if self._logs_steps:  # after the feedback: a policy's row shows its latest decision
            extra = dict(self.sampler.log_metrics("step"))
            if self._pending:
                self._pending[-1] = (*self._pending[-1][:3], extra, self._pending[-1][4])
            else:
                self._history.steps[-1].update(extra)
        self.last_step = out
        self.train_seconds += time.perf_counter() - self._t0

    def _read_steps(self) -> None:
        """Read the pending steps' numbers in one transfer and fold them, in order, into the
        learning status and the step log. A non-finite loss raises `DivergedError` naming
        its step (the steps after it are dropped)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        outs = [p[0] for p in pending]
        values = read_outputs(outs)
        mods = self.modalities
        k = len(mods)
        losses = [out.loss_of(v) for out, v in zip(outs, values)]
        # each step's samples per modality, and which modalities trained in it (a `share`
        # quota can skip one; a modality a method does not size counts as trained)
        sizes = [[out.sizes.get(m, 0) for m in mods] for out in outs]
        everyone = [True] * k
        trained = [everyone if all(sz) else [out.sizes.get(m, 1) > 0 for m in mods]
                   for out, sz in zip(outs, sizes)]
        bad = None
        # a sum of floats is finite only if every term is: one check for the common case,
        # the search for the first bad step only when there is one (or the sum overflowed)
        if not (math.isfinite(sum(losses))
                and math.isfinite(sum(c for v in values for c in v[k : 2 * k]))):
            bad = next((i for i, (loss, v, t) in enumerate(zip(losses, values, trained))
                        if not (math.isfinite(loss) and all(
                            math.isfinite(c) for c, on in zip(v[k : 2 * k], t) if on))), None)
        good = len(pending) if bad is None else bad
        status = self._status.fold([(v[:k], v[k : 2 * k]) for v in values[:good]],
                                   trained[:good])
        keys = self._step_keys
        steps = self._history.steps
        for (out, step, epoch, extra, quotas), loss, row, sz in zip(pending, losses, status,
                                                                     sizes):
            entry = dict(zip(keys, [step, epoch, loss, *(sz if quotas is None
                                                         else quotas.tolist()), *row, *sz]))
            if extra:
                entry.update(extra)
            steps.append(entry)
        if bad is not None:
            _, step, epoch, *_ = pending[bad]
            self._raise_diverged(losses[bad], values[bad][k : 2 * k], step, epoch, trained[bad])

    def _raise_diverged(self, loss: float, ce: list[float], step: int, epoch: int,
                        trained: list[bool]) -> None:
        """Name where the loss stopped being a number, with the usual causes."""
        bad = [m for m, v, on in zip(self.modalities, ce, trained) if on and not math.isfinite(v)]
        where = {"step": step, "epoch": epoch, "modality": bad[0] if bad else "multimodal"}
        value = ce[self.modalities.index(bad[0])] if bad else loss
        raise DivergedError(
            f"diverged: the {where['modality']} loss is {value} at step {where['step']}, epoch "
            f"{where['epoch']}; lower the learning rate (lr {self.config.lr}) or bring the "
            f"features to unit scale (parquet data: drop standardize=false)", where)

    def _end_epoch(self) -> None:
        self.in_epoch = False
        val = self.evaluate("val")
        row = {"epoch": self.epoch, "step": self.global_step,
               "seconds": time.perf_counter() - self._epoch_start,
               "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({f"val_{k}": v for k, v in val.items()})
        row.update(self.status.as_dict())
        row.update({f"sampler_{k}": v for k, v in self.sampler.log_metrics().items()})
        self.history.epochs.append(row)
        if val["acc"] > self.best_val:
            self.best_val, self.best_epoch = val["acc"], self.epoch
            self.best_state = self._weights()
        if self.scheduler is not None:
            self.scheduler.step()
        self.epoch += 1

    def _weights(self) -> dict[str, torch.Tensor]:
        """A copy of the model's weights (tensor clones: a deep copy of the state dict costs
        several times more, at every epoch that improves)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def fit(self, progress: bool = False) -> dict:
        """Train to the epoch budget; return final val/test metrics of the best model."""
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.config.epochs, desc=f"{self.config.method}/{self.sampler.name}",
                       unit="epoch", leave=False)
        seen = self.epoch
        while self.step() is not None or not self.done:
            if bar is not None and self.epoch > seen:
                bar.update(self.epoch - seen)
                seen = self.epoch
                last = self.history.epochs[-1]
                bar.set_postfix(val_acc=f"{last['val_acc']:.3f}", D=f"{last['discrepancy']:.3f}")
        if bar is not None:
            bar.update(self.epoch - seen)
            bar.close()
        return self.final_metrics()

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Everything needed to continue this run exactly, between epochs or within one
        (the sampler's own state: its epoch plan and position, what it observed so far)."""
        from mmbalance.trainers.state import to_saveable

        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "method": self.method.state_dict(),
            "sampler": self.sampler.state_dict(),
            "quota_plan": self.quota_plan.state_dict(),
            "ledger": self.ledger.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "status": to_saveable(self.status.state_dict()),
            "counters": {"epoch": self.epoch, "global_step": self.global_step,
                         "best_val": self.best_val, "best_epoch": self.best_epoch,
                         "train_seconds": self.train_seconds, "in_epoch": self.in_epoch},
            "best_state": self.best_state,
            "history": {"steps": self.history.steps, "epochs": self.history.epochs},
            "config": self.config.to_dict(),
            "format": STATE_FORMAT,
        }

    def load_state_dict(self, state: dict) -> None:
        from mmbalance.trainers.state import from_saveable

        if state.get("format") != STATE_FORMAT:
            raise UserError("checkpoint was saved by an older mmbalance, which stored the "
                            "sampler's and the method's state another way; it cannot be "
                            "resumed: start the run anew")
        saved = {k: v for k, v in state["config"].items() if k not in ("epochs", "lr")}
        mine = {k: v for k, v in self.config.to_dict().items() if k not in ("epochs", "lr")}
        if saved != mine:
            diff = sorted(k for k in {*mine, *saved} if saved.get(k) != mine.get(k))
            raise ConfigError(f"checkpoint was saved with another config (differs in {diff})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # a new lr (e.g. from PBT) takes effect
            group["lr"] = self.config.lr
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method"])
        self.sampler.load_state_dict(state["sampler"])
        if "quota_plan" in state:
            self.quota_plan.load_state_dict(state["quota_plan"])
        if "ledger" in state:
            self.ledger.load_state_dict(state["ledger"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self._pending = []
        self._status.load_state_dict(from_saveable(state["status"]))
        c = state["counters"]
        self.epoch, self.global_step = int(c["epoch"]), int(c["global_step"])
        self.method.ctx.epoch = self.epoch
        self.best_val, self.best_epoch = float(c["best_val"]), int(c["best_epoch"])
        self.train_seconds = float(c["train_seconds"])
        self.best_state = state["best_state"]
        self._history = History(list(state["history"]["steps"]),
                                list(state["history"]["epochs"]))
        self.in_epoch = bool(c.get("in_epoch", False))
        self._epoch_start = time.perf_counter()  # the epoch's wall time restarts here
        self._cpu_epoch0 = time.thread_time()

    def save(self, path) -> None:
        from mmbalance.trainers.state import save_file

        save_file(self.state_dict(), path)

    def restore(self, path) -> None:
        from mmbalance.trainers.state import load_file

        self.load_state_dict(load_file(path))

    # --------------------------------------------------------------- evaluation
    @torch.no_grad()
    def _logits(self, split: str, parts: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(prediction logits, unimodal logits) over a split; with `parts`, the fusion
        layer's logits instead of the prediction (what BSS measures, as the authors do)."""
        self.model.eval()
        xs, n = self.x[split], self.y[split].shape[0]
        mm_parts, uni_parts = [], {m: [] for m in self.modalities}
        chunk = self.config.eval_batch_size
        forward = self.model.parts if parts else self.model
        for a in range(0, n, chunk):
            mm, uni = forward({m: xs[m][a : a + chunk] for m in self.modalities})
            mm_parts.append(mm)
            for m in self.modalities:
                uni_parts[m].append(uni[m])
        if len(mm_parts) == 1:  # one chunk: no copy
            return mm_parts[0], {m: v[0] for m, v in uni_parts.items()}
        return torch.cat(mm_parts), {m: torch.cat(v) for m, v in uni_parts.items()}

    @torch.no_grad()
    def features(self, split: str) -> dict[str, np.ndarray]:
        """Each encoder's output features over a split (eval mode, no gradient)."""
        self.model.eval()
        xs, n = self.x[split], self.y[split].shape[0]
        parts: dict[str, list] = {m: [] for m in self.modalities}
        chunk = self.config.eval_batch_size
        for a in range(0, n, chunk):
            for m in self.modalities:
                parts[m].append(self.model.encoders[m](xs[m][a : a + chunk]).cpu())
        return {m: torch.cat(v).numpy() for m, v in parts.items()}

    def probe(self) -> dict[str, float]:
        """Linear-probe test accuracy of each frozen encoder (`trainers/probe.py`)."""
        from mmbalance.trainers.probe import probe_accuracy

        train, test = self.features("train"), self.features("test")
        ytr, yte = self.y["train"].cpu().numpy(), self.y["test"].cpu().numpy()
        return {m: probe_accuracy(train[m], ytr, test[m], yte) for m in self.modalities}

    def evaluate(self, split: str) -> dict[str, float]:
        mm, uni = self._logits(split)
        return classification_metrics(
            mm.cpu().numpy(), {m: z.cpu().numpy() for m, z in uni.items()},
            self.y[split].cpu().numpy(), self.dataset.num_classes,
        )

    def training_pass(self) -> ForwardPass:
        """A no-grad pass over the training set (the `Scorer` a sampler gets at each epoch
        start): each modality's logits and the fusion layer's, as BSS measures them."""
        mm, uni = self._logits("train", parts=True)
        logits = torch.stack([*(uni[m] for m in self.modalities), mm])
        return ForwardPass(np.arange(self.n_train), logits, self.train_y)

    @contextmanager
    def _best_model(self):
        """The model holds the best-validation weights inside the block, its own after."""
        current = None
        if self.best_state is not None:
            current = self._weights()
            self.model.load_state_dict(self.best_state)
        try:
            yield
        finally:
            if current is not None:
                self.model.load_state_dict(current)

    def best_logits(self, split: str) -> dict[str, np.ndarray]:
        """Each modality's unimodal logits over a split, from the best-validation model."""
        with self._best_model():
            _, uni = self._logits(split)
        return {m: z.cpu().numpy() for m, z in uni.items()}

    def final_metrics(self) -> dict:
        """Val and test metrics of the model with the best validation accuracy (test also
        holds each encoder's linear-probe accuracy `probe_acc_<m>` unless `probe` is off)."""
        ledger = self.ledger.snapshot(self.train_seconds)  # before the final passes
        with self._best_model():
            out = {
                "best_epoch": self.best_epoch,
                "val": self.evaluate("val"),
                "test": self.evaluate("test"),
                "train_seconds": self.train_seconds,
                "steps": self.global_step,
                "ledger": ledger,
            }
            if self.config.probe:
                out["test"].update({f"probe_acc_{m}": v for m, v in self.probe().items()})
        return out
