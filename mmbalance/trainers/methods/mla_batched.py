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
stacked tensors. An iteration:

- each run's rows of a modality become its optimizer steps by its quota meaning
  (`quota_chunks`, as `MLAMethod` reads them): one step under `batch` and `scaled`, under
  `share` (the default) as many as the modality's updates this iteration, none, one or
  several. A run's steps keep MLA's order (modality by modality, the projector updated at
  each switch). Slot s trains the s-th step of every run at once, each run through its
  own modality's encoder (under `share` every run takes M steps, so an iteration is M
  slots whatever the quotas). A run without an s-th step is masked out of slot s, and an
  encoder's rows are written only for the runs that train it: the others' parameters,
  momentum buffers and projector are not written at all (momentum and weight decay would
  move them even with a zero gradient);
- the runs' chunks (their sizes may differ) are padded to the largest with a mask; each
  run's loss is the masked mean, so its gradient is the unpadded chunk's;
- one forward of every run, and the gradients of the summed per-run losses (runs share no
  parameter, so each run's gradient is that of its own loss). The shared head and the
  cross-entropy, and MLP encoders (the default for feature vectors), run as batched
  matmuls (`baddbmm`) on transposed activations with their gradients written out (the
  chain rule of linear, ReLU, linear head and cross-entropy: a third of autograd's ops,
  which at these sizes cost more than the arithmetic); any other encoder (CNN, ...) runs
  through `torch.func.functional_call` under `torch.vmap` over its runs and takes the
  head's gradient through autograd;
- MLA's OWM projector per run (batched matmuls with the K projectors), as `MLAMethod` does;
- torch's SGD update on the stacked tensors (`d = g + wd·p`; `buf = μ·buf + d`, the first
  buffer being `d`; `p -= lr·buf`) in one fused pass, with each run's learning rate read
  from its own optimizer (runs at different learning rates step in groups), so a StepLR
  schedule keeps working;
- where a slot's encoder (or head) serves only some runs (the others train another
  modality, are masked out, have no batch this iteration, their budget ended or they were
  reset at another time), it trains gathered copies of their slices and writes them back.

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
from mmbalance.trainers.ledger import stop_counting
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
        stop_counting(self.template)  # each run's ledger is counted in _update
        # MLP encoders (the default for feature vectors) run as batched matmuls; anything
        # else through functional_call under vmap
        programs = {m: _mlp_program(self.template.encoders[m], f"encoders.{m}.")
                    for m in self.modalities}
        self._forward = {m: torch.vmap(self._encoder_fn(m)) for m in self.modalities}
        # an MLP program's layers as (weight, bias or None, ReLU after it)
        self._layers = {m: layers for m, prog in programs.items()
                        if prog and (layers := _layers(prog))}
        with torch.no_grad():
            per_run = [dict(t.model.named_parameters()) for t in trainers]
            self.params = {n: torch.stack([p[n].detach() for p in per_run])
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
        """MLA's iteration for `runs`. Each run's rows of a modality become its optimizer
        steps by its quota meaning (`quota_chunks`): one step under `batch` and `scaled`;
        under `share` as many as the modality's updates this iteration, none, one or
        several. A run's steps keep MLA's order (modality by modality, the projector
        updated at each switch); slot s trains the s-th step of every run in one batched
        update, each run through its own modality's encoder (under `share` every run takes
        M steps, so an iteration is M slots whatever the quotas). A run without an s-th
        step is masked out of slot s, and an encoder's rows are written only for the runs
        that train it: the others' parameters, momentum buffers and projector are not
        written at all (momentum and weight decay would move them even with a zero
        gradient)."""
        dev = self.proj.device
        r, mods = len(runs), self.modalities
        units = [self.trainers[i].method.unit for i in runs]
        lrs = [self.trainers[i].optimizer.param_groups[0]["lr"] for i in runs]
        # each run's steps in MLA's order: (modality, rows, loss weight, first of its
        # modality, after another modality: the head's gradient is projected)
        plan: list[list[tuple]] = []
        for b, u in zip(batches, units):
            steps: list[tuple] = []
            for mi, m in enumerate(mods):
                after = bool(steps)
                for c, (rows, weight) in enumerate(quota_chunks(b[m], u, self.quota_mode)):
                    steps.append((mi, rows, weight, c == 0, after))
            plan.append(steps)
        # per modality and run: the sums of p_y, of the CE, the rows and the features
        sums = torch.zeros(len(mods), r, 3 + self.proj.shape[1], device=dev)
        for s in range(max(len(p) for p in plan)):
            active = [j for j in range(r) if len(plan[j]) > s]
            step = [plan[j][s] for j in active]
            if self.options.mla_projection:
                # once per modality switch: damp what the previous modality's features span
                switch = [(j, plan[j][s - 1][0]) for j, st in zip(active, step)
                          if st[3] and st[4]]
                if switch:
                    prev = sums[[p for _, p in switch], [j for j, _ in switch]]
                    self._owm([runs[j] for j, _ in switch], prev[:, 3:] / prev[:, 2:3])
            out = self._slot([runs[j] for j in active], step, [lrs[j] for j in active])
            sums.index_put_((torch.tensor([st[0] for st in step], device=dev),
                             torch.tensor(active, device=dev)), out, accumulate=True)
            for j, st in zip(active, step):  # each run's ledger: what MLAMethod counts
                self.trainers[runs[j]].ledger.add_step({mods[st[0]]: len(st[1])})
        count = sums[:, :, 2]
        nan = torch.tensor(float("nan"), device=dev)
        # (2M, R) on the device: each run's column is its StepOutput's stats (s_t, then CE;
        # NaN for a modality it did not train), read by its trainer in bulk, as MLAMethod's
        stats = torch.where((count > 0).unsqueeze(2),
                            sums[:, :, :2] / count.clamp(min=1).unsqueeze(2), nan)
        stats = torch.cat([stats[:, :, 0], stats[:, :, 1]])
        return [StepOutput(stats[:, j], mods, {m: len(b[m]) for m in mods}, total="sum")
                for j, b in enumerate(batches)]

    def _rows(self, runs: list[int]) -> torch.Tensor | None:
        """The stacked tensors' rows of `runs`; None when they are all the rows in order (the
        tensors themselves are used, no gather)."""
        if runs == list(range(len(self.trainers))):
            return None
        return torch.as_tensor(runs, device=self.proj.device)

    def _gather(self, names: list[str], rows: torch.Tensor | None) -> tuple[list, list | None]:
        """Parameters `names` and their momentum buffers for `rows`: the stacked tensors
        themselves (rows None), or gathered copies (index_select: a fraction of advanced
        indexing's cost at these sizes) that `_write_back` returns."""
        with torch.no_grad():
            if rows is None:
                return ([self.params[n] for n in names],
                        [self.bufs[n] for n in names] if self.bufs is not None else None)
            return ([self.params[n].index_select(0, rows) for n in names],
                    [self.bufs[n].index_select(0, rows) for n in names]
                    if self.bufs is not None else None)

    def _write_back(self, names: list[str], rows: torch.Tensor | None, params: list,
                    bufs: list | None) -> None:
        if rows is not None:
            with torch.no_grad():
                for n, p in zip(names, params):
                    self.params[n].index_copy_(0, rows, p)
                for n, b in zip(names, bufs or []):
                    self.bufs[n].index_copy_(0, rows, b)

    def _owm(self, runs: list[int], feat: torch.Tensor) -> None:
        """MLA's projector update of `runs` after seeing their mean features (R, F)."""
        rows = self._rows(runs)
        alpha = self.options.mla_proj_alpha
        with torch.no_grad():
            if rows is None:
                self.proj.copy_(owm_update(self.proj, feat.unsqueeze(-1), alpha))
            else:
                self.proj.index_copy_(0, rows, owm_update(self.proj.index_select(0, rows),
                                                          feat.unsqueeze(-1), alpha))

    def _slot(self, runs: list[int], steps: list[tuple], lrs: list[float]) -> torch.Tensor:
        """One optimizer step of each of `runs` (rows of the stacked tensors), each through
        its own modality's encoder and the shared head; `steps[j]` = (modality, rows, loss
        weight, ..., projected). The head, the cross-entropy and MLP encoders have their
        gradients written out (the chain rule of linear, ReLU, linear head and
        cross-entropy: a third of autograd's ops, which at these sizes cost more than the
        arithmetic); other encoders take the head's gradient through autograd. Returns per
        run (R, 3 + F): the sums over its rows of the true-class probability and of the
        CE, the row count and the feature sums."""
        dev = self.proj.device
        idx_pad, mask, counts = _pad([st[1] for st in steps])
        r, n = idx_pad.shape
        data = self.trainers[runs[0]]  # every run trains on the same data
        positions: dict[int, list[int]] = {}  # modality -> the runs (positions) training it
        for j, st in enumerate(steps):
            positions.setdefault(st[0], []).append(j)
        groups, feats = [], []
        for mi, pos in positions.items():
            m = self.modalities[mi]
            names = self.enc_names[m]
            rows = self._rows([runs[j] for j in pos])
            params, bufs = self._gather(names, rows)
            sel = None if len(pos) == r else torch.tensor(pos, device=dev)
            ip = idx_pad if sel is None else idx_pad.index_select(0, sel)
            x = _rows_of(data.train_x[m], ip.reshape(-1))
            x = x.view(len(pos), n, *x.shape[1:])
            if m in self._layers:
                with torch.no_grad():
                    acts = _mlp_forward(self._layers[m], dict(zip(names, params)), x)
                feat, graph, leaves = acts[-1], acts, params
            else:  # autograd through functional_call under vmap
                leaves = [p.detach().requires_grad_() for p in params]
                prefix = f"encoders.{m}."
                enc = {k.removeprefix(prefix): v for k, v in zip(names, leaves)}
                with torch.enable_grad():
                    graph = self._forward[m](enc, x).transpose(1, 2)
                feat = graph.detach()
            groups.append((m, names, rows, sel, params, bufs, graph, leaves, pos))
            feats.append(feat)
        with torch.no_grad():
            if len(feats) == 1:
                feat_t = feats[0]
            else:  # the groups' features back in the runs' order
                order = torch.tensor([j for pos in positions.values() for j in pos])
                inverse = torch.empty_like(order)
                inverse[order] = torch.arange(r)
                feat_t = torch.cat(feats).index_select(0, inverse.to(dev))
            head_rows = self._rows(runs)
            head, head_bufs = self._gather(list(HEAD), head_rows)
            zt = _linear_t(feat_t, head[0], head[1])  # (R, C, n)
            y = data.train_y[idx_pad].unsqueeze(1)  # (R, 1, n)
            lse = torch.logsumexp(zt, 1, keepdim=True)
            ce = (lse - zt.gather(1, y)).squeeze(1)  # (R, n)
            # d(sum of the runs' losses)/dz = (softmax - one-hot) · row weight / row count
            dz = torch.exp(zt - lse)
            p_y = dz.gather(1, y).squeeze(1)  # the true-class probability
            dz.scatter_add_(1, y, torch.full_like(p_y, -1.0).unsqueeze(1))
            per_run = 1.0 / counts
            weights = [st[2] for st in steps]
            if any(w != 1.0 for w in weights):  # `scaled`: each run's loss weighted by n_j / B
                per_run = per_run * torch.tensor(weights, device=dev)
            dz.mul_(per_run.view(r, 1, 1) if mask is None
                    else (mask * per_run[:, None]).unsqueeze(1))
            head_grads = [torch.bmm(dz, feat_t.transpose(1, 2)), dz.sum(2)]
            dfeat = torch.bmm(head[0].transpose(1, 2), dz)  # (R, F, n)
            projected = [st[4] and self.options.mla_projection for st in steps]
            if any(projected):
                proj = self.proj if head_rows is None else self.proj.index_select(0, head_rows)
                g = project(head_grads[0], proj)
                head_grads[0] = g if all(projected) else torch.where(
                    torch.tensor(projected, device=dev).view(-1, 1, 1), g, head_grads[0])
        for m, names, rows, sel, params, bufs, graph, leaves, pos in groups:
            dh = dfeat if sel is None else dfeat.index_select(0, sel)
            if m in self._layers:
                grads = _mlp_backward(self._layers[m], dict(zip(names, params)), graph, dh)
                grads = [grads[nm] for nm in names]
            else:
                grads = list(torch.autograd.grad(graph, leaves, grad_outputs=dh))
            with torch.no_grad():
                _sgd(params, grads, bufs, [lrs[j] for j in pos], self.cfg.momentum,
                     self.cfg.weight_decay)
            self._write_back(names, rows, params, bufs)
        with torch.no_grad():
            _sgd(head, head_grads, head_bufs, lrs, self.cfg.momentum, self.cfg.weight_decay)
            self._write_back(list(HEAD), head_rows, head, head_bufs)
            if mask is not None:
                ce, p_y, feat_t = ce * mask, p_y * mask, feat_t * mask.unsqueeze(1)
            return torch.cat([torch.stack([p_y.sum(1), ce.sum(1), counts], 1), feat_t.sum(2)],
                             1)


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


def _mlp_forward(layers: list[tuple], params: dict, x: torch.Tensor) -> list[torch.Tensor]:
    """An MLP encoder on (R, n, ...) inputs, no graph: every layer's activations, transposed
    (R, features, n), the input first and the features last."""
    acts = [x.reshape(x.shape[0], x.shape[1], -1).transpose(1, 2)]  # the program's flatten
    for w, b, relu in layers:
        h = _linear_t(acts[-1], params[w], params[b] if b else None)
        acts.append(torch.relu_(h) if relu else h)
    return acts


@torch.no_grad()
def _mlp_backward(layers: list[tuple], params: dict, acts: list[torch.Tensor],
                  dh: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gradients of an MLP encoder's parameters given the gradient `dh` (R, F, n) at its
    features and its activations from `_mlp_forward`."""
    grads = {}
    for i in range(len(layers) - 1, -1, -1):
        w, b, relu = layers[i]
        if relu:  # ReLU's gradient: where its output is positive
            dh = torch.ops.aten.threshold_backward(dh, acts[i + 1], 0)
        grads[w] = torch.bmm(dh, acts[i].transpose(1, 2))
        if b:
            grads[b] = dh.sum(2)
        if i:
            dh = torch.bmm(params[w].transpose(1, 2), dh)
    return grads


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
