"""K runs of one MLA model trained in one batched update: stacked parameters and `torch.func`.

`StackedMLA` takes K `Trainer`s built the usual way (their own seeds, samplers, learning
status, logs) and moves their model parameters into tensors with a leading run dimension;
each trainer's parameters become *views* of its slice, so whatever a trainer does with its
own model (validation at epoch ends, best-state copies, final metrics) reads and writes the
stacked values with no copy. A trainer's iteration is still `next_batch` + update +
`record_step`; `StackedMLA.step({run: batch})` replaces the runs' `MLAMethod.step` calls by
one batched update and returns each run's `StepOutput`. It lives next to `MLAMethod` and
shares its update: the projector recursion (`owm_update`) and the gradient projection
(`project`) are the same functions on a leading run dimension, and the optimizer step is
torch's own SGD (`torch.optim.sgd.sgd`, the function `torch.optim.SGD` steps with) on the
stacked tensors. Per modality, in MLA's order:

- the runs' batches (their quotas differ) are padded to the largest with a mask; each run's
  loss is the masked mean, so its gradient is the unpadded batch's;
- one forward of every run, and one backward of the summed per-run losses (runs share no
  parameter, so each run's gradient is that of its own loss). MLP encoders (the default for
  feature vectors) run as batched matmuls (`baddbmm`) on transposed activations; any other
  encoder (CNN, ...) through `torch.func.functional_call` under `torch.vmap` over the runs.
  The shared head's logits and the cross-entropy are computed batched too;
- MLA's OWM projector per run (batched matmuls with the K projectors), as `MLAMethod` does;
- torch's SGD update on the stacked tensors (`d = g + wd·p`; `buf = μ·buf + d`, the first
  buffer being `d`; `p -= lr·buf`) in one fused pass, with each run's learning rate read
  from its own optimizer (runs at different learning rates step in groups), so a StepLR
  schedule keeps working.
- runs that have no batch this iteration (their budget ended, or they were reset at
  another time) are left out: the others train on gathered copies of their slices.

Each run's compute ledger counts the update as `MLAMethod`'s would be counted (one
optimizer step per modality, that encoder and the head changed, its rows as gradient
samples). The result equals K separate `Trainer.step()` calls to float tolerance (only the order of
floating-point sums differs). The momentum buffers are views too (put into each trainer's
optimizer state) and so is each `MLAMethod.projector`, so a trainer stays consistent if it
is later stepped on its own. Supported: method `mla`, optimizer `sgd`, samplers that do not
observe per-sample terms (`observes = False`), quota modes `batch` and `scaled` (each run's
loss weighted by its n_j / B), models without BatchNorm or dropout.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pad_sequence

from mmbalance.errors import ConfigError
from mmbalance.trainers.ledger import stop_counting
from mmbalance.trainers.methods.mla import owm_update, project
from mmbalance.trainers.methods.output import StepOutput

HEAD = ("head.fc.weight", "head.fc.bias")


def check_batchable(trainer) -> None:
    """Raise ConfigError if this run cannot be trained by `StackedMLA`."""
    cfg = trainer.config
    if cfg.method != "mla":
        raise ConfigError(
            f"vectorised training: method {cfg.method!r} is not supported, only 'mla' "
            "(joint needs paired batches, which the quota sampler does not give; ogm-ge adds "
            "random gradient noise)"
        )
    if cfg.optimizer != "sgd":
        raise ConfigError(
            f"vectorised training: optimizer {cfg.optimizer!r} is not supported, only 'sgd'"
        )
    if cfg.quota_mode not in ("batch", "scaled"):
        raise ConfigError(
            f"vectorised training: quota_mode {cfg.quota_mode!r} is not supported (runs would "
            "take different numbers of optimizer steps); use 'scaled' or 'batch'"
        )
    if trainer.sampler.observes:
        raise ConfigError(
            f"vectorised training: sampler {trainer.sampler.name!r} observes per-sample terms "
            "(BSS); only samplers that do not (quota, uniform, dus-h) are supported"
        )
    stateful = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
    bad = sorted({type(mod).__name__ for mod in trainer.model.modules()
                  if isinstance(mod, stateful) and getattr(mod, "p", 1.0) != 0.0})
    if bad:
        raise ConfigError(f"vectorised training: models with {bad} layers are not supported")


def _clone_state_dict(module, state_dict, prefix, local_metadata) -> None:
    """state_dict post-hook: own copies rather than views of the stacked tensors (a deep
    copy or torch.save of a view would carry the whole K-run storage)."""
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor):
            state_dict[key] = value.clone()


class StackedMLA:
    """The parameters, momentum buffers and OWM projectors of K MLA runs, stacked."""

    def __init__(self, trainers: Sequence) -> None:
        if not trainers:
            raise ConfigError("vectorised training: needs at least one run")
        for t in trainers:
            check_batchable(t)
        t0 = trainers[0]
        self.cfg = t0.config
        self.options = t0.method.options
        self.quota_mode = t0.config.quota_mode
        for t in trainers[1:]:
            self._check_same(t)
            if t.config.quota_mode != self.quota_mode:
                raise ConfigError("vectorised training: every run needs the same quota_mode, "
                                  f"got {self.quota_mode!r} and {t.config.quota_mode!r}")
        self.modalities = list(t0.modalities)
        self.names = [n for n, _ in t0.model.named_parameters()]
        if not set(HEAD) <= set(self.names):
            raise ConfigError("vectorised training: the model has no shared head 'head.fc'")
        self.enc_names = {m: [n for n in self.names if n.startswith(f"encoders.{m}.")]
                          for m in self.modalities}
        # a structural copy the functional calls run through; its own tensors never train
        self.template = copy.deepcopy(t0.model).requires_grad_(False)
        stop_counting(self.template)  # each run's ledger is counted in _update
        # MLP encoders (the default for feature vectors) run as batched matmuls; anything
        # else through functional_call under vmap
        self._programs = {m: _mlp_program(self.template.encoders[m], f"encoders.{m}.")
                          for m in self.modalities}
        self._forward = {m: torch.vmap(self._encoder_fn(m)) for m in self.modalities}
        with torch.no_grad():
            per_run = [dict(t.model.named_parameters()) for t in trainers]
            self.params = {n: torch.stack([p[n].detach() for p in per_run]).requires_grad_()
                           for n in self.names}
            self.bufs = ({n: torch.stack([_momentum(t, n) for t in trainers])
                          for n in self.names} if self.cfg.momentum != 0 else None)
            self.proj = torch.stack([t.method.projector for t in trainers])
        self.trainers = list(trainers)
        for i in range(len(self.trainers)):
            self._bind(i)

    def __len__(self) -> int:
        return len(self.trainers)

    # ----------------------------------------------------------------- set-up
    def _check_same(self, t) -> None:
        a = {k: v for k, v in self.cfg.to_dict().items() if k != "seed"}
        b = {k: v for k, v in t.config.to_dict().items() if k != "seed"}
        if a != b:
            diff = sorted(k for k in a if a[k] != b[k])
            raise ConfigError(f"vectorised training: runs differ in {diff} (only seeds may)")

    def _encoder_fn(self, m: str):
        encoder = self.template.encoders[m]

        def fn(enc: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(encoder, enc, (x,))

        return fn

    def _bind(self, i: int) -> None:
        """Make run i's parameters, momentum buffers and projector views of slice i."""
        t = self.trainers[i]
        params = dict(t.model.named_parameters())
        for n in self.names:
            p = params[n]
            p.data = self.params[n].detach()[i]
            if self.bufs is not None:
                t.optimizer.state[p]["momentum_buffer"] = self.bufs[n][i]
        t.method.projector = self.proj[i]
        if not getattr(t.model, "_stacked_hook", False):
            t.model.register_state_dict_post_hook(_clone_state_dict)
            t.model._stacked_hook = True

    def load(self, i: int, trainer) -> None:
        """Put a run into slot i: a new episode's trainer, or one restored from a checkpoint
        (its momentum buffers come along)."""
        check_batchable(trainer)
        self._check_same(trainer)
        with torch.no_grad():
            params = dict(trainer.model.named_parameters())
            for n in self.names:
                self.params[n][i].copy_(params[n])
                if self.bufs is not None:
                    self.bufs[n][i].copy_(_momentum(trainer, n))
            self.proj[i].copy_(trainer.method.projector)
        self.trainers[i] = trainer
        self._bind(i)

    # ------------------------------------------------------------------ training
    def step(self, batches: dict[int, dict[str, torch.Tensor]]) -> dict[int, StepOutput]:
        """One MLA iteration of each run in `batches` (run index -> that run's batch)."""
        runs = sorted(batches)
        if not runs:
            return {}
        k = len(self.trainers)
        lrs = [self.trainers[i].optimizer.param_groups[0]["lr"] for i in runs]
        if runs == list(range(k)):
            return dict(zip(runs, self._update(runs, self.params, self.bufs, self.proj,
                                               [batches[i] for i in runs], lrs)))
        # a subset of the runs: train gathered copies of their slices, then write them back
        idx = torch.as_tensor(runs, device=self.proj.device)
        with torch.no_grad():
            params = {n: v[idx].requires_grad_() for n, v in self.params.items()}
            bufs = {n: v[idx] for n, v in self.bufs.items()} if self.bufs is not None else None
            proj = self.proj[idx]
        outs = self._update(runs, params, bufs, proj, [batches[i] for i in runs], lrs)
        with torch.no_grad():
            for n in self.names:
                self.params[n].index_copy_(0, idx, params[n])
                if bufs is not None:
                    self.bufs[n].index_copy_(0, idx, bufs[n])
            self.proj.index_copy_(0, idx, proj)
        return dict(zip(runs, outs))

    def _update(self, runs: list[int], params: dict, bufs: dict | None, proj: torch.Tensor,
                batches: list[dict], lrs: list[float]) -> list[StepOutput]:
        cfg = self.cfg
        prev_feat = None  # previous modality's mean feature per run, (R, F)
        scores, losses = [], []
        for m in self.modalities:
            names = [*self.enc_names[m], *HEAD]
            idx = [b[m] for b in batches]
            leaves = [params[n] for n in names]
            loss, s, feat = self._forward_runs(m, dict(zip(names, leaves)), idx, runs[0])
            objective = loss
            if self.quota_mode == "scaled":  # each run's loss weighted by its n_j / B
                objective = loss * torch.tensor([len(i) / cfg.batch_size for i in idx],
                                                device=loss.device, dtype=loss.dtype)
            grads = list(torch.autograd.grad(objective.sum(), leaves))
            loss = loss.detach()
            with torch.no_grad():
                if self.options.mla_projection and prev_feat is not None:
                    proj.copy_(owm_update(proj, prev_feat.unsqueeze(-1),  # r: (R, F, 1)
                                          self.options.mla_proj_alpha))
                    w = names.index(HEAD[0])
                    grads[w] = project(grads[w], proj)
                _sgd([params[n] for n in names], grads,
                     [bufs[n] for n in names] if bufs is not None else None,
                     lrs, cfg.momentum, cfg.weight_decay)
                # each run's compute ledger: the stacked update bypasses the runs' own
                # optimizers and encoder hooks, so it counts what `MLAMethod` would have
                for run, rows in zip(runs, idx):
                    if len(rows):
                        self.trainers[run].ledger.add_step({m: len(rows)})
            scores.append(s)
            losses.append(loss)
            prev_feat = feat
        # (2M, R) on the device: each run's column is its StepOutput's stats (s_t, then CE),
        # read by its trainer in bulk, as MLAMethod's are
        stats = torch.cat([torch.stack(scores), torch.stack(losses)])
        return [StepOutput(stats[:, j], self.modalities,
                           {m: len(b[m]) for m in self.modalities}, total="sum")
                for j, b in enumerate(batches)]

    def _forward_runs(self, m: str, p: dict, idx: list[torch.Tensor], run: int):
        """Per-run loss (with graph), batch score and mean feature; `idx`: each run's batch."""
        data = self.trainers[run]  # every run trains on the same data
        idx_pad, mask, counts = _pad(idx)
        r, n = idx_pad.shape
        x = data.train_x[m][idx_pad.reshape(-1)]
        x = x.view(r, n, *x.shape[1:])
        y = data.train_y[idx_pad]
        program = self._programs[m]
        if program is not None:
            feat_t = _run_program(program, p, x)
        else:
            prefix = f"encoders.{m}."
            enc = {k.removeprefix(prefix): v for k, v in p.items() if k.startswith(prefix)}
            feat_t = self._forward[m](enc, x).transpose(1, 2)
        # activations are kept transposed, (R, features, n): the weight gradients come out
        # contiguous, and the per-sample reductions over the few classes run along contiguous
        # memory (F.cross_entropy on (R·n, C) logits is twice as slow)
        zt = _linear_t(feat_t, p[HEAD[0]], p[HEAD[1]])  # (R, C, n)
        ce = torch.logsumexp(zt, 1) - zt.gather(1, y.unsqueeze(1)).squeeze(1)  # (R, n)
        loss = _masked_mean(ce, mask, counts)
        with torch.no_grad():  # the true-class probability is exp(-CE)
            s = _masked_mean(torch.exp(-ce.detach()), mask, counts)
            return loss, s, _masked_mean(feat_t.detach().transpose(1, 2), mask, counts)


def _momentum(trainer, name: str) -> torch.Tensor:
    """A run's SGD momentum buffer for parameter `name`; zeros before its first step (the
    first update then equals plain SGD, as torch's SGD does)."""
    p = dict(trainer.model.named_parameters())[name]
    buf = trainer.optimizer.state.get(p, {}).get("momentum_buffer")
    return buf.detach().clone() if buf is not None else torch.zeros_like(p.detach())


def _mlp_program(module: nn.Module, prefix: str) -> list[tuple] | None:
    """The layers of an MLP encoder as [("flatten",), ("linear", w, b), ("relu",), ...], or
    None if the module is anything else (it then runs through vmap)."""
    from mmbalance.models.encoders import MLPEncoder

    if type(module) is not MLPEncoder or type(module.net) is not nn.Sequential:
        return None
    program: list[tuple] = []
    for name, layer in module.net.named_children():
        if type(layer) is nn.Flatten and layer.start_dim == 1 and layer.end_dim == -1:
            program.append(("flatten",))
        elif type(layer) is nn.Linear:
            bias = f"{prefix}net.{name}.bias" if layer.bias is not None else None
            program.append(("linear", f"{prefix}net.{name}.weight", bias))
        elif type(layer) is nn.ReLU:
            program.append(("relu",))
        else:
            return None
    return program if program and program[0] == ("flatten",) else None


def _run_program(program: list[tuple], params: dict, x: torch.Tensor) -> torch.Tensor:
    """An MLP encoder on (R, n, ...) inputs; returns the features transposed, (R, F, n)."""
    h = x.reshape(x.shape[0], x.shape[1], -1).transpose(1, 2)  # the program's flatten
    for op in program[1:]:
        if op[0] == "linear":
            h = _linear_t(h, params[op[1]], params[op[2]] if op[2] else None)
        elif op[0] == "relu":
            h = torch.relu(h)
    return h


def _linear_t(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """F.linear per run on transposed activations: h (R, in, n), w (R, out, in), b (R, out)."""
    if b is None:
        return torch.bmm(w, h)
    return torch.baddbmm(b.unsqueeze(2), w, h)


def _pad(idx: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(R, n_max) indices padded with 0, a float mask (None when no run is padded), sizes."""
    sizes = [len(i) for i in idx]
    counts = torch.tensor(sizes, dtype=torch.float32, device=idx[0].device)
    if min(sizes) == max(sizes):
        return torch.stack(idx), None, counts
    padded = pad_sequence(idx, batch_first=True, padding_value=0)
    mask = (torch.arange(padded.shape[1], device=padded.device)[None, :]
            < counts[:, None]).float()
    return padded, mask, counts


def _masked_mean(v: torch.Tensor, mask: torch.Tensor | None, counts: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (R, n, ...) values, counting only unmasked rows."""
    if mask is None:
        return v.mean(1)
    m = mask.view(*mask.shape, *([1] * (v.ndim - 2)))
    return (v * m).sum(1) / counts.view(-1, *([1] * (v.ndim - 2)))


def _sgd(params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor] | None,
         lrs: list[float], momentum: float, weight_decay: float) -> None:
    """torch.optim.SGD's step (no dampening, no Nesterov) on stacked tensors, in place: torch's
    own `sgd` function, fused where torch has the kernel, once per group of runs that share a
    learning rate. Momentum buffers start at zero, which makes the first step's `buf = d` of
    torch's SGD."""
    from torch.optim.sgd import sgd

    grads = [g.contiguous() for g in grads]  # the fused CPU kernel ignores strides
    fused = bufs is not None and getattr(torch, "_fused_sgd_", None) is not None
    groups: dict[float, list[int]] = {}
    for i, lr in enumerate(lrs):
        groups.setdefault(lr, []).append(i)
    for lr, runs in groups.items():
        if len(runs) == len(lrs):  # every run: the stacked tensors themselves
            p, g, b = params, grads, bufs
        else:  # views of these runs' slices (rows of the stacked tensors: contiguous)
            p = [t[i] for t in params for i in runs]
            g = [t[i] for t in grads for i in runs]
            b = [t[i] for t in bufs for i in runs] if bufs is not None else None
        sgd(p, g, b if b is not None else [None] * len(p), fused=fused, foreach=not fused,
            weight_decay=weight_decay, momentum=momentum, lr=lr, dampening=0.0,
            nesterov=False, maximize=False)
