"""A small real-image two-modality dataset with a noise knob for the imbalance.

scikit-learn ships the 8x8 handwritten digits (1797 images, 10 classes) with the package,
so this needs no download. Each image is cut into its left and right 8x4 halves, one
modality each. Both halves alone predict the digit fairly well; Gaussian noise added to one
of them makes it the weak modality, so imbalance can be dialled on real data.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from mmbalance.data.dataset import MultimodalDataset, Split
from mmbalance.errors import ConfigError
from mmbalance.limits import check_seed

HALVES = ("left", "right")


def _check(noise: float, noisy: str, val_fraction: float, test_fraction: float,
           seed: int) -> None:
    if noisy not in HALVES:
        raise ConfigError(
            f"digits: 'noisy' must be one of {', '.join(repr(h) for h in HALVES)}, got {noisy!r}"
        )
    if not (math.isfinite(noise) and noise >= 0):
        raise ConfigError(f"digits: 'noise' must be a finite number >= 0, got {noise}")
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"digits: '{key}' must be in (0, 1), got {value}")
    if seed < 0:
        raise ConfigError(f"digits: 'seed' must be >= 0, got {seed}")
    check_seed(seed, "digits: 'seed'")  # scikit-learn's random_state takes < 2**32 only
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"digits: 'val_fraction' + 'test_fraction' must be < 1 to leave training data, "
            f"got {val_fraction} + {test_fraction}"
        )


def load_digits_dataset(
    noise: float = 1.0,
    noisy: str = "right",
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
    image: bool = False,
) -> MultimodalDataset:
    """Digits as two modalities (left/right image halves), noise added to `noisy`.

    Real data with a controllable imbalance: `noise` (std of Gaussian noise on pixels
    scaled to [0, 1]) weakens the modality named by `noisy`. `seed` fixes the noise and the
    stratified train/val/test split; the split does not depend on the noise, so runs with
    different noise levels see the same samples. `image=True` keeps each half as a
    (1, 8, 4) image for convolutional encoders, otherwise it is a flat (32,) vector.
    """
    _check(noise, noisy, val_fraction, test_fraction, seed)
    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float64) / 16.0).astype(np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    n = images.shape[0]
    halves = {
        "left": np.ascontiguousarray(images[:, :, :4]),
        "right": np.ascontiguousarray(images[:, :, 4:]),
    }
    rng = np.random.default_rng(seed)
    if noise > 0:
        halves[noisy] += rng.normal(0.0, noise, size=halves[noisy].shape).astype(np.float32)

    index = np.arange(n)
    try:
        rest, test = train_test_split(
            index, test_size=test_fraction, stratify=labels, random_state=seed
        )
        train, val = train_test_split(
            rest,
            test_size=val_fraction / (1.0 - test_fraction),
            stratify=labels[rest],
            random_state=seed,
        )
    except ValueError as exc:  # a stratified split needs a sample of every class per split
        raise ConfigError(
            f"digits: 'val_fraction' {val_fraction} and 'test_fraction' {test_fraction} leave a "
            f"split of the {n} images too small to hold each of the 10 classes "
            f"({' '.join(str(exc).split())})"
        ) from None

    shape = (1, 8, 4) if image else (32,)
    splits = {
        name: Split(
            x={m: np.ascontiguousarray(halves[m][idx].reshape(len(idx), *shape)) for m in HALVES},
            y=labels[idx].copy(),
        )
        for name, idx in (("train", train), ("val", val), ("test", test))
    }
    return MultimodalDataset(
        name="digits",
        modalities=list(HALVES),
        num_classes=10,
        splits=splits,
        info={"noise": noise, "noisy": noisy},
    ).validate()
