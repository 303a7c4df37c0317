"""`balance.log_softmax` and the true-class score: PyTorch's numbers to the bit, by any path."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mmbalance import balance
from mmbalance.balance import log_softmax, true_class_score


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where the other has NaN (NaN != NaN defeats torch.equal)."""
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


@pytest.mark.parametrize("classes", [2, 6, 10, 15, 16, 31, 101])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0, 1e4])
def test_log_softmax_repeats_pytorch_to_the_bit(classes: int, scale: float) -> None:
    g = torch.Generator().manual_seed(classes)
    for shape in [(5, classes), (300, classes), (3001, classes), (47, 2, 64, classes)]:
        x = torch.randn(*shape, generator=g) * scale
        assert _same_bits(log_softmax(x), F.log_softmax(x, dim=-1)), shape


def test_log_softmax_odd_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 6, generator=g)
    x[3, 2] = float("nan")
    x[10] = float("-inf")
    x[11, 4] = float("inf")
    x[12] = 0.0
    x[13, :3] = -0.0
    x[14] = 1e30
    assert _same_bits(log_softmax(x), F.log_softmax(x, dim=-1))
    wide = torch.randn(6, 900, generator=g).T  # a transposed view: not contiguous
    assert _same_bits(log_softmax(wide), F.log_softmax(wide, dim=-1))
    double = torch.randn(700, 6, generator=g, dtype=torch.float64)
    assert _same_bits(log_softmax(double), F.log_softmax(double, dim=-1))


def test_log_softmax_keeps_autograd_on_pytorchs_kernel() -> None:
    x = torch.randn(700, 6, requires_grad=True)
    out = log_softmax(x)
    assert out.requires_grad
    out[:, 0].sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_true_class_log_score_is_the_gathered_log_softmax() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(47, 2, 64, 6, generator=g) * 3
    y = torch.randint(0, 6, (47, 1, 64), generator=g)
    want = F.log_softmax(z, dim=-1).gather(-1, y.expand(47, 2, 64).unsqueeze(-1)).squeeze(-1)
    assert torch.equal(true_class_score(z, y, log=True), want)
    flat = torch.randn(3, 3000, 6, generator=g)
    labels = torch.randint(0, 6, (3000,), generator=g)
    want = F.log_softmax(flat, dim=-1).gather(
        -1, labels.expand(3, 3000).unsqueeze(-1)).squeeze(-1)
    assert torch.equal(true_class_score(flat, labels, log=True), want)


def test_a_cpu_whose_kernels_disagree_gets_pytorchs_kernel(monkeypatch) -> None:
    """The probe decides: where the class-by-class kernel would differ, it is never used."""
    monkeypatch.setattr(balance, "_fast_log_softmax_ok", {(6, torch.float32): False})
    monkeypatch.setattr(balance, "_log_softmax_by_class", lambda rows: 1 / 0)
    x = torch.randn(3000, 6)
    assert torch.equal(log_softmax(x), F.log_softmax(x, dim=-1))
