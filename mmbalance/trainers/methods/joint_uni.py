"""`joint-uni`: the papers' baseline, `w_mm CE(fusion) + sum_j w_j CE(head_j)` with a separate
linear head per modality (the BSS code: CREMA-D `0.1 CE_mm + 0.9 (CE_a + CE_v)`). With DUS
quotas under `share` (the default), the quotas move the uniform step's encoder updates
between modalities at equal compute (`_share_step`); under the other quota meanings, each
unimodal loss on its own quota of samples and the fusion loss on a paired batch of B."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from mmbalance.errors import ConfigError
from mmbalance.models.heads import INFERENCES
from mmbalance.trainers.methods.base import (
    Method,
    StepOutput,
    batch_output,
    check_choice,
    check_nonnegative,
    quota_chunks,
)
from mmbalance.trainers.sampler import PAIRED


@dataclass
class JointUniOptions:
    # w_mm CE(fusion) + sum_j w_j CE(head_j); one weight for every modality or one per
    # modality; prediction from the heads named by inference
    mm_loss_weight: float = 1.0
    uni_loss_weights: float | list[float] = 1.0
    inference: str = "sum"

    def check(self) -> None:
        check_choice(self, "inference", INFERENCES)
        check_nonnegative(self, ("mm_loss_weight",))
        weights = self.uni_loss_weights
        weights = list(weights) if isinstance(weights, (list, tuple)) else [weights]
        if not weights or any(not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0
                              for w in weights):
            raise ConfigError(f"uni_loss_weights: one number >= 0 or one per modality "
                              f"(a/b/...), got {self.uni_loss_weights!r}")
        if self.mm_loss_weight == 0 and not any(w > 0 for w in weights):
            raise ConfigError("mm_loss_weight, uni_loss_weights: at least one must be > 0")

    def uni_weights(self, modalities: list[str]) -> list[float]:
        """The per-modality loss weights for these modalities."""
        w = self.uni_loss_weights
        if not isinstance(w, (list, tuple)):
            return [float(w)] * len(modalities)
        if len(w) != len(modalities):
            raise ConfigError(f"uni_loss_weights: needs one value per modality {modalities} "
                              f"(or one for all), got {list(w)}")
        return [float(v) for v in w]


class JointUniMethod(Method):
    """Paired batches (uniform, BSS): one step on that loss. Per-modality batches (DUS): each
    modality's unimodal loss on its own quota (read by `quota_mode`) and the fusion loss on
    the paired batch of B the quota sampler adds under `PAIRED` (a stream of its own, so the
    fusion layer sees every sample once per epoch whatever the quotas); with `steps`, the
    iteration takes max_j ceil(n_j / B) steps, the fusion loss in the first, each modality's
    chunks in the first ceil(n_j / B).
    """

    name = "joint-uni"
    head = "fusion+uni"
    accepts_unimodal_batches = True
    wants_paired_with_quotas = True
    Options = JointUniOptions

    def __init__(self, ctx, options: JointUniOptions) -> None:
        super().__init__(ctx, options)
        self.w_uni = dict(zip(ctx.modalities, options.uni_weights(ctx.modalities)))
        self.w_mm = float(options.mm_loss_weight)

    @classmethod
    def model_options(cls, options: JointUniOptions) -> dict:
        return {"inference": options.inference}

    def loss_weights(self) -> tuple[float, ...]:
        return (*self.w_uni.values(), self.w_mm)

    def _backward_step(self, loss: torch.Tensor) -> None:
        opt = self.ctx.optimizer
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step(self, batch: dict[str, torch.Tensor], want_logits: bool) -> StepOutput:
        ctx = self.ctx
        self.train_mode()
        if PAIRED not in batch:
            idx = self.paired_index(batch)
            x = {m: ctx.x[m][idx] for m in ctx.modalities}
            y = ctx.y[idx]
            fusion, uni = ctx.model.parts(x)
            loss = self.w_mm * F.cross_entropy(fusion, y)
            for m in ctx.modalities:
                if self.w_uni[m] == 0:  # no zero-gradient "update" of an unused head
                    continue
                loss = loss + self.w_uni[m] * F.cross_entropy(uni[m], y)
            self._backward_step(loss)
            return self.paired_output(uni, fusion, y, loss, want_logits)
        if ctx.quota_mode == "share":
            return self._share_step(batch)
        return self._quota_step(batch)

    def _share_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        """One iteration under `share`: modality j trains k_j updates of B (its rows are k_j B,
        the first B of them the paired batch), sum k_j = M, as in a uniform step. The first
        optimizer step is the uniform step's: the fusion loss and each unimodal loss on the
        paired batch, through every encoder that updates this iteration; a modality with
        k_j = 0 gives the fusion layer its features without gradient (no update, counted as
        no-grad samples). Further steps train the modalities with k_j > 1 on their own rows
        with their unimodal losses."""
        ctx, model = self.ctx, self.ctx.model
        b, names = ctx.batch_size, ctx.modalities
        paired = batch[PAIRED]
        chunks = {m: quota_chunks(batch[m], b, "share") for m in names}
        y = ctx.y[paired]
        zs: dict[str, list] = {m: [] for m in names}
        yy: dict[str, list] = {m: [] for m in names}
        ces: dict[str, list] = {m: [] for m in names}
        feats = {}
        for m in names:
            if chunks[m]:
                feats[m] = model.encoders[m](ctx.x[m][paired])
            elif self.w_mm > 0:
                with torch.no_grad():
                    feats[m] = model.encoders[m](ctx.x[m][paired])
        fusion_loss = None
        loss = None
        if self.w_mm > 0:
            fusion_loss = F.cross_entropy(model.head.fusion(feats), y)
            loss = self.w_mm * fusion_loss
        for m in names:
            if not chunks[m]:
                continue
            z = model.head.unimodal(m, feats[m])
            ce = F.cross_entropy(z, y)
            term = self.w_uni[m] * ce
            loss = term if loss is None else loss + term
            zs[m].append(z.detach())
            yy[m].append(y)
            ces[m].append(ce)
        self._backward_step(loss)
        for s in range(1, max(len(c) for c in chunks.values())):
            loss = None
            for m in names:
                if s >= len(chunks[m]):
                    continue
                idx = chunks[m][s][0]
                z = model.head.unimodal(m, model.encoders[m](ctx.x[m][idx]))
                ce = F.cross_entropy(z, ctx.y[idx])
                term = self.w_uni[m] * ce
                loss = term if loss is None else loss + term
                zs[m].append(z.detach())
                yy[m].append(ctx.y[idx])
                ces[m].append(ce)
            self._backward_step(loss)
        trained = [m for m in names if zs[m]]
        out = batch_output({m: torch.cat(zs[m]) for m in trained},
                           {m: torch.cat(yy[m]) for m in trained},
                           {m: ces[m][0] if len(ces[m]) == 1 else None for m in trained},
                           {m: len(batch[m]) for m in names}, same_rows=False,
                           total=([self.w_uni[m] for m in names],
                                  self.w_mm if fusion_loss is not None else None),
                           modalities=names)
        if fusion_loss is not None:
            out.stats = torch.cat([out.stats, fusion_loss.detach().reshape(1)])
        return out

    def _quota_step(self, batch: dict[str, torch.Tensor]) -> StepOutput:
        ctx, model = self.ctx, self.ctx.model
        chunks = {m: quota_chunks(batch[m], ctx.batch_size, ctx.quota_mode)
                  for m in ctx.modalities}
        zs: dict[str, list] = {m: [] for m in ctx.modalities}
        yy: dict[str, list] = {m: [] for m in ctx.modalities}
        ces: dict[str, list] = {m: [] for m in ctx.modalities}
        fusion_loss = None
        for s in range(max(len(c) for c in chunks.values())):
            loss = None
            if s == 0 and self.w_mm > 0:
                paired = batch[PAIRED]
                feats = model.encode({m: ctx.x[m][paired] for m in ctx.modalities})
                fusion_loss = F.cross_entropy(model.head.fusion(feats), ctx.y[paired])
                loss = self.w_mm * fusion_loss
            for m in ctx.modalities:
                if s >= len(chunks[m]):
                    continue
                idx, weight = chunks[m][s]
                y = ctx.y[idx]
                z = model.head.unimodal(m, model.encoders[m](ctx.x[m][idx]))
                ce = F.cross_entropy(z, y)
                term = self.w_uni[m] * weight * ce
                loss = term if loss is None else loss + term
                zs[m].append(z.detach())
                yy[m].append(y)
                ces[m].append(ce)
            self._backward_step(loss)
        uni = {m: torch.cat(v) for m, v in zs.items()}
        one = {m: v[0] if len(v) == 1 else None for m, v in ces.items()}
        out = batch_output(uni, {m: torch.cat(v) for m, v in yy.items()}, one,
                           {m: len(batch[m]) for m in ctx.modalities}, same_rows=False,
                           total=([self.w_uni[m] for m in ctx.modalities],
                                  self.w_mm if fusion_loss is not None else None))
        if fusion_loss is not None:
            out.stats = torch.cat([out.stats, fusion_loss.detach().reshape(1)])
        return out
