"""Steps read together (`read_outputs`) give each step the numbers it has when read alone."""

import pytest
import torch
from torch.nn import functional as F

from mmbalance.trainers.methods.output import Pending, StepOutput, read_outputs


def _steps(recipe: str, sizes: list[int], m: int = 2, c: int = 6) -> list[StepOutput]:
    g = torch.Generator().manual_seed(len(sizes) + m)
    outs = []
    for n in sizes:
        logits = [torch.randn(n, c, generator=g) * 3 for _ in range(m)]
        y = torch.randint(0, c, (n,), generator=g)
        extra = [torch.rand((), generator=g) for _ in range(1 if recipe == "log" else m)]
        names = [f"m{j}" for j in range(m)]
        outs.append(StepOutput(None, names, dict.fromkeys(names, n),
                               pending=Pending(recipe, logits, y, extra)))
    return outs


def test_batch_sizes_in_runs_and_alone_read_the_same_to_the_bit():
    # runs of equal batch sizes, an epoch's short last batch, and sizes that come back
    sizes = [64] * 9 + [56] + [64] * 3 + [30, 30, 7, 64]
    for recipe in ("log", "prob"):
        outs = _steps(recipe, sizes)
        together = read_outputs(outs)
        assert together == [read_outputs([o])[0] for o in outs]
        for out, row in zip(outs, together):
            p = out.pending
            probs = [F.softmax(z, -1).gather(1, p.y[:, None]).mean().item() for z in p.logits]
            assert row[:2] == pytest.approx(probs, rel=1e-5)
            if recipe == "log":
                ce = [F.cross_entropy(z, p.y).item() for z in p.logits]
                assert row[2:4] == pytest.approx(ce, rel=1e-5)
            assert row[-len(p.extra):] == [e.item() for e in p.extra]


def test_three_modalities_and_both_recipes_in_one_read():
    outs = _steps("log", [64, 64, 20], m=3) + _steps("prob", [64, 20, 64], m=3)
    assert read_outputs(outs) == [read_outputs([o])[0] for o in outs]


@pytest.mark.parametrize("method", ["joint", "ogm-ge", "mla"])
def test_pending_steps_hold_no_activations_and_samplers_get_no_graph(small_synthetic, method):
    """A step's pending logits are kept undetached until the epoch's read (a detach per
    tensor cost as much as the rest of the step's bookkeeping): what their graph saved is
    freed by the step's backward, so they hold no activations; the forward pass a sampler
    keeps carries no graph at all."""
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    tr = Trainer(small_synthetic, TrainConfig.from_dict({"method": method, "epochs": 1}),
                 make_sampler("uniform"))
    out = tr.step()
    z = out.pending.logits[0]
    with pytest.raises(RuntimeError, match="freed|second time"):
        z.grad_fn._saved_mat1  # noqa: B018 (reading it is the check)
    assert out.host().shape == (2 * len(tr.modalities) + (method != "mla"),)
    observing = Trainer(small_synthetic, TrainConfig.from_dict({"method": method, "epochs": 1}),
                        make_sampler("bss-l:score=forward"))
    seen = observing.step()
    assert seen.logits is not None and not seen.logits.requires_grad
