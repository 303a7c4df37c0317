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

- each run's rows of the modality become its optimizer steps by its quota meaning
  (`quota_chunks`, as `MLAMethod` reads them): one step under `batch` and `scaled`, under
  `share` (the default) as many as the modality's updates this iteration, none, one or
  several. Sub-step c trains the c-th step of every run that has one; a run without one is
  masked out: it is not in the batched update, and its parameters, momentum buffers and
  projector are not written (momentum and weight decay would move them even with a zero
  gradient);
- the runs' chunks (their sizes may differ) are padded to the largest with a mask; each
  run's loss is the masked mean, so its gradient is the unpadded chunk's;
- one forward of every run, and the gradients of the summed per-run losses (runs share no
  parameter, so each run's gradient is that of its own loss). MLP encoders (the default for
  feature vectors) run as batched matmuls (`baddbmm`) on transposed activations, their
  gradients and the head's written out (`_mlp_grads`: the chain rule of linear, ReLU, linear
  head and cross-entropy, a third of autograd's ops, which at these sizes cost more than
  the arithmetic); any other encoder (CNN, ...) runs through `torch.func.functional_call`
  under `torch.vmap` over the runs, and autograd. The shared head's logits and the
  cross-entropy are computed batched too;
- MLA's OWM projector per run (batched matmuls with the K projectors), as `MLAMethod` does;
- torch's SGD update on the stacked tensors (`d = g + wd·p`; `buf = μ·buf + d`, the first
  buffer being `d`; `p -= lr·buf`) in one fused pass, with each run's learning rate read
  from its own optimizer (runs at different learning rates step in groups), so a StepLR
  schedule keeps working.
- a sub-step that trains only some runs (masked runs; runs without a batch this iteration,
  their budget ended or they were reset at another time) trains gathered copies of their
  slices and writes them back.

Each run's compute ledger counts the update as `MLAMethod`'s would be counted (one
optimizer step per step the run took, that encoder and the head changed, its rows as
gradient samples). The result equals K separate `Trainer.step()` calls to float tolerance (only the order of
floating-point sums differs). The momentum buffers are views too (put into each trainer's
optimizer state) and so is each `MLAMethod.projector`, so a trainer stays consistent if it
is later stepped on its own. Supported: method `mla`, optimizer `sgd`, samplers that do not
observe per-sample terms (`observes = False`), every quota mode, models without BatchNorm or
dropout.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pad_sequence

from mmbalance.errors import ConfigError
from mmbalance.trainers.methods.mla import owm_update, project
from mmbalance.trainers.methods.output import StepOutput
from mmbalance.trainers.quota import quota_chunks

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
        for module in self.template.modules():  # the copy took run 0's ledger hooks along;
            module._forward_hooks.clear()       # each run's ledger is counted in _update
        # MLP encoders (the default for feature vectors) run as batched matmuls; anything
        # else through functional_call under vmap
        self._programs = {m: _mlp_program(self.template.encoders[m], f"encoders.{m}.")
                          for m in self.modalities}
        self._forward = {m: torch.vmap(self._encoder_fn(m)) for m in self.modalities}
        # an MLP program's layers as (weight, bias or None, ReLU after it)
        self._layers = {m: layers for m, prog in self._programs.items()
                        if prog and (layers := _layers(prog))}
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
        return dict(zip(runs, self._update(runs, [batches[i] for i in runs])))

    def _update(self, runs: list[int], batches: list[dict]) -> list[StepOutput]:
        """MLA's iteration for `runs`, modality by modality. Each run's rows of a modality
        become its optimizer steps by its quota meaning (`quota_chunks`): one step under
        `batch` and `scaled`; under `share` as many as the modality's updates this
        iteration, none, one or several. Sub-step c trains the c-th chunk of every run that
        has one; the others are masked out: their parameters, momentum buffers and
        projector are not written at all (momentum and weight decay would move them even
        with a zero gradient)."""
        dev = self.proj.device
        r = len(runs)
        units = [self.trainers[i].method.unit for i in runs]
        lrs = [self.trainers[i].optimizer.param_groups[0]["lr"] for i in runs]
        ledgers = [self.trainers[i].ledger for i in runs]
        # per run: the mean feature of the modality it trained last (MLA's projector input)
        prev_feat = torch.zeros(r, self.proj.shape[1], device=dev)
        has_prev = [False] * r
        nan = torch.full((r,), float("nan"), device=dev)
        scores, losses = [], []
        for m in self.modalities:
            chunks = [quota_chunks(b[m], u, self.quota_mode) for b, u in zip(batches, units)]
            trained = [len(c) > 0 for c in chunks]
            if not any(trained):  # every run sits this modality out (`share`)
                scores.append(nan)
                losses.append(nan)
                continue
            names = [*self.enc_names[m], *HEAD]
            if self.options.mla_projection:
                # once per modality switch, for the runs that train this modality after
                # another: damp what the other's features span
                self._owm([runs[j] for j in range(r) if trained[j] and has_prev[j]],
                          prev_feat[[j for j in range(r) if trained[j] and has_prev[j]]])
            sums = torch.zeros(r, 3 + prev_feat.shape[1], device=dev)  # p_y, CE, rows, features
            for c in range(max(len(ch) for ch in chunks)):
                active = [j for j in range(r) if len(chunks[j]) > c]
                part = [chunks[j][c] for j in active]
                out = self._substep(m, names, [runs[j] for j in active],
                                    [p[0] for p in part], [p[1] for p in part],
                                    [lrs[j] for j in active],
                                    [self.options.mla_projection and has_prev[j] for j in active])
                if len(active) == r:
                    sums += out
                else:
                    sums.index_add_(0, torch.as_tensor(active, device=dev), out)
                for j, (rows, _) in zip(active, part):  # the run's ledger: what MLAMethod counts
                    ledgers[j].add_step({m: len(rows)})
            count = sums[:, 2].clamp(min=1)
            on = torch.as_tensor(trained, device=dev)
            scores.append(torch.where(on, sums[:, 0] / count, nan))
            losses.append(torch.where(on, sums[:, 1] / count, nan))
            prev_feat = torch.where(on.unsqueeze(1), sums[:, 3:] / count.unsqueeze(1), prev_feat)
            has_prev = [h or t for h, t in zip(has_prev, trained)]
        # (2M, R) on the device: each run's column is its StepOutput's stats (s_t, then CE),
        # read by its trainer in bulk, as MLAMethod's are
        stats = torch.cat([torch.stack(scores), torch.stack(losses)])
        return [StepOutput(stats[:, j], self.modalities,
                           {m: len(b[m]) for m in self.modalities}, total="sum")
                for j, b in enumerate(batches)]

    def _rows(self, runs: list[int]) -> torch.Tensor | None:
        """The stacked tensors' rows of `runs`; None when they are all the rows in order (the
        tensors themselves are used, no gather)."""
        if runs == list(range(len(self.trainers))):
            return None
        return torch.as_tensor(runs, device=self.proj.device)

    def _owm(self, runs: list[int], feat: torch.Tensor) -> None:
        """MLA's projector update of `runs` after seeing their mean features (R, F)."""
        if not runs:
            return
        rows = self._rows(runs)
        alpha = self.options.mla_proj_alpha
        with torch.no_grad():
            if rows is None:
                self.proj.copy_(owm_update(self.proj, feat.unsqueeze(-1), alpha))
            else:
                self.proj.index_copy_(0, rows, owm_update(self.proj.index_select(0, rows),
                                                          feat.unsqueeze(-1), alpha))

    def _substep(self, m: str, names: list[str], runs: list[int], idx: list[torch.Tensor],
                 weights: list[float], lrs: list[float], projected: list[bool]) -> torch.Tensor:
        """One optimizer step of modality m for `runs` (each on its own index chunk, its loss
        weighted), the others untouched. Returns per run (R, 3 + F): the sums over its rows
        of the true-class probability, of the CE, the row count and the feature sums."""
        rows = self._rows(runs)
        with torch.no_grad():
            if rows is None:  # every run: the stacked tensors themselves
                leaves = [self.params[n] for n in names]
                bufs = [self.bufs[n] for n in names] if self.bufs is not None else None
                proj = self.proj
            else:  # gathered copies of these runs' rows, written back after the step
                # (index_select: a fraction of advanced indexing's cost on these sizes)
                leaves = [self.params[n].index_select(0, rows).requires_grad_() for n in names]
                bufs = ([self.bufs[n].index_select(0, rows) for n in names]
                        if self.bufs is not None else None)
                proj = self.proj.index_select(0, rows) if any(projected) else None
        scale = (torch.tensor(weights, device=self.proj.device)
                 if any(w != 1.0 for w in weights) else None)  # `scaled`: n_j / B per run
        if m in self._layers:
            grads, out = self._mlp_grads(m, dict(zip(names, leaves)), idx, scale, runs[0])
            grads = [grads[n] for n in names]
        else:
            ce_sum, out = self._forward_runs(m, dict(zip(names, leaves)), idx, runs[0])
            counts = out[:, 2] if scale is None else out[:, 2] / scale
            grads = list(torch.autograd.grad((ce_sum / counts).sum(), leaves))
        with torch.no_grad():
            if any(projected):
                w = names.index(HEAD[0])
                g = project(grads[w], proj)
                grads[w] = g if all(projected) else torch.where(
                    torch.tensor(projected, device=g.device).view(-1, 1, 1), g, grads[w])
            _sgd(leaves, grads, bufs, lrs, self.cfg.momentum, self.cfg.weight_decay)
            if rows is not None:
                for n, p in zip(names, leaves):
                    self.params[n].index_copy_(0, rows, p)
                if bufs is not None:
                    for n, b in zip(names, bufs):
                        self.bufs[n].index_copy_(0, rows, b)
        return out

    @torch.no_grad()
    def _mlp_grads(self, m: str, p: dict, idx: list[torch.Tensor], scale: torch.Tensor | None,
                   run: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """An MLP encoder's and the head's gradients of the per-run losses (each the mean CE
        over its rows, times `scale`), written out rather than through autograd: at these
        sizes a step costs its number of ops more than its arithmetic, and the chain rule of
        linear, ReLU, linear head and cross-entropy takes a third of autograd's. Returns the
        gradients by parameter name and, per run (R, 3 + F), the sums over its rows of the
        true-class probability and of the CE, the row count and the feature sums."""
        data = self.trainers[run]  # every run trains on the same data
        idx_pad, mask, counts = _pad(idx)
        r, n = idx_pad.shape
        x = _rows_of(data.train_x[m], idx_pad.reshape(-1))
        h = x.view(r, n, -1).transpose(1, 2)  # (R, in, n): activations kept transposed
        layers, acts = self._layers[m], [h]
        for w, b, relu in layers:
            h = _linear_t(h, p[w], p[b] if b else None)
            acts.append(torch.relu_(h) if relu else h)
        feat_t = acts[-1]
        zt = _linear_t(feat_t, p[HEAD[0]], p[HEAD[1]])  # (R, C, n)
        y = data.train_y[idx_pad].unsqueeze(1)  # (R, 1, n)
        lse = torch.logsumexp(zt, 1, keepdim=True)
        ce = (lse - zt.gather(1, y)).squeeze(1)  # (R, n)
        # d(sum of the runs' losses)/dz = (softmax - one-hot) · row weight / run's row count
        dz = torch.exp(zt - lse)
        p_y = dz.gather(1, y).squeeze(1)  # the true-class probability
        dz.scatter_add_(1, y, torch.full_like(p_y, -1.0).unsqueeze(1))
        per_run = 1.0 / counts if scale is None else scale / counts
        dz.mul_(per_run.view(r, 1, 1) if mask is None else (mask * per_run[:, None]).unsqueeze(1))
        grads = {HEAD[0]: torch.bmm(dz, feat_t.transpose(1, 2)), HEAD[1]: dz.sum(2)}
        dh = torch.bmm(p[HEAD[0]].transpose(1, 2), dz)
        for i in range(len(layers) - 1, -1, -1):
            w, b, relu = layers[i]
            if relu:  # ReLU's gradient: where its output is positive
                dh = torch.ops.aten.threshold_backward(dh, acts[i + 1], 0)
            grads[w] = torch.bmm(dh, acts[i].transpose(1, 2))
            if b:
                grads[b] = dh.sum(2)
            if i:
                dh = torch.bmm(p[w].transpose(1, 2), dh)
        if mask is not None:
            ce, p_y, feat_t = ce * mask, p_y * mask, feat_t * mask.unsqueeze(1)
        out = torch.cat([torch.stack([p_y.sum(1), ce.sum(1), counts], 1), feat_t.sum(2)], 1)
        return grads, out

    def _forward_runs(self, m: str, p: dict, idx: list[torch.Tensor], run: int):
        """Per run: the sum of the CE over its rows (with graph) and, detached, (R, 3 + F):
        the sums of the true-class probability and of the CE, the row count, the feature
        sums. `idx`: each run's rows."""
        data = self.trainers[run]  # every run trains on the same data
        idx_pad, mask, counts = _pad(idx)
        r, n = idx_pad.shape
        x = _rows_of(data.train_x[m], idx_pad.reshape(-1))
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
        if mask is not None:
            ce = ce * mask
        with torch.no_grad():  # the true-class probability is exp(-CE)
            ce_d = ce.detach()
            p_y = torch.exp(-ce_d)
            feat = feat_t.detach()
            if mask is not None:
                p_y = p_y * mask
                feat = feat * mask.unsqueeze(1)
            out = torch.cat([torch.stack([p_y.sum(1), ce_d.sum(1), counts], 1), feat.sum(2)], 1)
        return ce.sum(1), out


def _rows_of(array, idx: torch.Tensor) -> torch.Tensor:
    """Rows `idx` of a trainer's feature array: index_select where it is resident on the
    device (a fifth of advanced indexing's cost at these sizes), else the array's own read."""
    return array.data.index_select(0, idx) if array.resident else array[idx]


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


def _layers(program: list[tuple]) -> list[tuple[str, str | None, bool]] | None:
    """An MLP program's linear layers as (weight, bias or None, followed by a ReLU); None if
    it is not a chain of linear layers each followed by at most one ReLU (autograd then)."""
    layers: list[tuple[str, str | None, bool]] = []
    for op in program[1:]:
        if op[0] == "linear":
            layers.append((op[1], op[2], False))
        elif op[0] == "relu" and layers and not layers[-1][2]:
            layers[-1] = (layers[-1][0], layers[-1][1], True)
        else:  # a ReLU first or twice in a row
            return None
    return layers


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
