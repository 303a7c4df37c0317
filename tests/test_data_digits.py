"""Digits halves: reassembly, where the noise lands, stratified seeded split, config errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mmbalance.data.dataset import SPLITS
from mmbalance.data.digits import load_digits_dataset
from mmbalance.errors import ConfigError


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
    """Rows in lexicographic order, to compare two data sets as multisets of samples."""
    return rows[np.lexsort(rows.T[::-1])]


def _all(ds, modality: str) -> np.ndarray:
    return np.concatenate([ds.splits[s].x[modality] for s in SPLITS])


def _labels(ds) -> np.ndarray:
    return np.concatenate([ds.splits[s].y for s in SPLITS])


def _nearest_mean_accuracy(ds, modality: str) -> float:
    train, test = ds.splits["train"], ds.splits["test"]
    means = np.stack([train.x[modality][train.y == c].mean(0) for c in range(ds.num_classes)])
    dist = ((test.x[modality][:, None, :] - means[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == test.y).mean())


def test_halves_reassemble_the_images():
    ds = load_digits_dataset(noise=0.0)
    assert ds.modalities == ["left", "right"] and ds.num_classes == 10
    assert ds.input_shapes == {"left": (32,), "right": (32,)}
    left = _all(ds, "left").reshape(-1, 8, 4)
    right = _all(ds, "right").reshape(-1, 8, 4)
    assert left.min() >= 0.0 and max(left.max(), right.max()) == 1.0
    images = np.concatenate([left, right], axis=2).reshape(-1, 64)
    got = np.column_stack([images, _labels(ds)])

    bunch = load_digits()
    want = np.column_stack([bunch.images.reshape(-1, 64) / 16.0, bunch.target])
    # Every image appears exactly once over the three splits, halves in place, label kept.
    assert got.shape == want.shape
    np.testing.assert_allclose(_sorted_rows(got), _sorted_rows(want), atol=1e-7)


def test_image_layout_matches_flat_vectors():
    flat = load_digits_dataset(noise=0.3, seed=5)
    img = load_digits_dataset(noise=0.3, seed=5, image=True)
    assert img.input_shapes == {"left": (1, 8, 4), "right": (1, 8, 4)}
    for s in SPLITS:
        for m in ("left", "right"):
            x = img.splits[s].x[m]
            assert x.dtype == np.float32 and x.flags.c_contiguous
            np.testing.assert_array_equal(x.reshape(len(x), -1), flat.splits[s].x[m])


@pytest.mark.parametrize("noisy,clean", [("left", "right"), ("right", "left")])
def test_noise_lands_only_on_the_chosen_half(noisy, clean):
    base = load_digits_dataset(noise=0.0, seed=1)
    ds = load_digits_dataset(noise=0.5, noisy=noisy, seed=1)
    assert ds.info == {"noise": 0.5, "noisy": noisy}
    for s in SPLITS:
        np.testing.assert_array_equal(ds.splits[s].y, base.splits[s].y)
        np.testing.assert_array_equal(ds.splits[s].x[clean], base.splits[s].x[clean])
    diff = _all(ds, noisy) - _all(base, noisy)
    assert abs(diff.mean()) < 0.02
    assert diff.std() == pytest.approx(0.5, rel=0.03)
    # The knob does what it is for: the noisy half becomes the weak modality.
    assert _nearest_mean_accuracy(ds, noisy) + 0.1 < _nearest_mean_accuracy(ds, clean)


def test_split_is_stratified_with_requested_sizes():
    ds = load_digits_dataset(val_fraction=0.15, test_fraction=0.2)
    total = np.bincount(load_digits().target, minlength=10)
    n = int(total.sum())
    sizes = {s: len(ds.splits[s]) for s in SPLITS}
    assert sum(sizes.values()) == n
    assert abs(sizes["test"] - 0.2 * n) <= 1
    assert abs(sizes["val"] - 0.15 * n) <= 2
    for s, fraction in (("train", 0.65), ("val", 0.15), ("test", 0.2)):
        counts = np.bincount(ds.splits[s].y, minlength=10)
        assert np.all(np.abs(counts - fraction * total) <= 2), (s, counts, fraction * total)


def test_split_and_noise_are_deterministic_under_the_seed():
    a = load_digits_dataset(noise=1.0, seed=3)
    b = load_digits_dataset(noise=1.0, seed=3)
    c = load_digits_dataset(noise=1.0, seed=4)
    for s in SPLITS:
        np.testing.assert_array_equal(a.splits[s].y, b.splits[s].y)
        for m in ("left", "right"):
            np.testing.assert_array_equal(a.splits[s].x[m], b.splits[s].x[m])
    # Another seed draws another split (and other noise).
    assert not np.array_equal(a.splits["test"].x["left"], c.splits["test"].x["left"])
    assert not np.array_equal(
        _sorted_rows(a.splits["test"].x["left"]), _sorted_rows(c.splits["test"].x["left"])
    )


def test_bad_noisy_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        load_digits_dataset(noisy="top")
    message = str(info.value)
    assert "'noisy'" in message and "'left'" in message and "'right'" in message
    assert "'top'" in message


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"noise": -0.1}, "noise"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction"),
    ],
)
def test_bad_numbers_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_digits_dataset(**kwargs)
