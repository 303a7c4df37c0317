"""Class-conditional Gaussian modalities with a known, tunable imbalance.

Each modality j has its own dimension, class separation and informative fraction: on an
informative sample x ~ N(mu_{j,y}, noise_j^2 I); on the others x ~ N(0, noise_j^2 I) (the
modality says nothing about the class). Modalities are independent given the class, so the
Bayes-optimal classifier of each modality and of all of them together is known and its
accuracy is estimated by Monte Carlo on a large fresh sample: imbalance is ground truth.

The defaults give a strong modality (`audio`: high separation, informative on 70% of
samples) that a jointly trained model learns first and leans on, and a weak one (`visual`:
low separation, higher dimension, informative on every sample) that carries the
information the strong one lacks on the other 30%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mmbalance.data.dataset import MultimodalDataset, Split, check_modality_names
from mmbalance.errors import ConfigError
from mmbalance.limits import check_seed

MAX_CLASSES = 10_000
MAX_ELEMENTS = 2**28  # numbers in one array drawn here (1 GiB of float32, 2 of float64)

# Named settings (`synthetic:preset=NAME`); options given beside the preset override it.
PRESETS: dict[str, dict] = {
    # Modality competition: `audio` is easy (separation 6) but informative on 80% of the
    # samples only; `visual` is informative on all of them but *mirrored* (class c at +mu_c
    # or -mu_c), so its encoder must learn a nonlinear feature before it helps. Joint
    # training fits audio first and leaves visual almost untrained; MLA, unimodal heads
    # or visual trained alone get most of the lost accuracy back.
    "competition": {
        "separation": [6.0, 4.0], "informative": [0.8, 1.0], "dim": [64, 64],
        "mirrored": [0, 1], "n_train": 4000,
    },
    # the same with three modalities (as RGB, depth and flow): `depth` is mirrored, `flow`
    # plain but weaker; the DUS rule and the probes then work on M = 3
    "competition3": {
        "names": ["rgb", "depth", "flow"], "separation": [6.0, 4.0, 3.0],
        "informative": [0.8, 1.0, 1.0], "dim": [64, 64, 64], "noise": [1.0, 1.0, 1.0],
        "mirrored": [0, 1, 0], "n_train": 4000,
    },
    # Where the best share changes during training (benchmarks/adaptivity.py): `audio` is
    # easy (separation 6) and fits in about two epochs but is informative on 70% of the
    # samples only; `visual` is informative on all of them but mirrored, so it learns
    # slowly. Under a fusion-dominated loss (joint-uni, unimodal weight 0.03) the fitted
    # audio leaves the fusion loss little to push visual with: a constant share must either
    # starve audio or let it silence visual, while first visual alone, then both, gets both.
    # Small (2000 training samples) so a few-epoch budget binds; large validation and test
    # sets, so the choice of epoch and the comparison of two runs are not sampling noise.
    "shifting": {
        "separation": [6.0, 4.0], "informative": [0.7, 1.0], "dim": [64, 64],
        "mirrored": [0, 1], "n_train": 2000, "n_val": 4000, "n_test": 8000,
    },
}


@dataclass
class SyntheticConfig:
    """Per-modality lists must all have one entry per modality."""

    names: list[str] = field(default_factory=lambda: ["audio", "visual"])
    dim: list[int] = field(default_factory=lambda: [16, 64])
    separation: list[float] = field(default_factory=lambda: [3.0, 1.6])
    noise: list[float] = field(default_factory=lambda: [1.0, 1.0])
    informative: list[float] = field(default_factory=lambda: [0.7, 1.0])
    # 1: the modality's class signal is mirrored (x ~ N(±mu_y, noise²I), sign at random), so
    # its class means are all 0: no linear function of the raw input separates the classes
    # and an encoder must learn a nonlinear feature first
    mirrored: list[int] | None = None  # None: none mirrored
    num_classes: int = 6
    n_train: int = 3000
    n_val: int = 1000
    n_test: int = 2000
    seed: int = 0
    bayes_samples: int = 20000

    @classmethod
    def from_options(cls, options: dict) -> SyntheticConfig:
        """A config from selector options; `preset=NAME` first, then the other options."""
        options = dict(options)
        preset = options.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigError(f"synthetic: unknown preset {preset!r}; allowed: "
                                  f"{sorted(PRESETS)}")
            options = {**PRESETS[preset], **options}
        return cls(**options)

    def check(self) -> None:
        m = len(self.names)
        if self.mirrored is None:
            self.mirrored = [0] * m
        if m < 2:
            raise ConfigError(f"synthetic: 'names' needs at least 2 modalities, got {self.names}")
        if len(set(self.names)) != m:
            raise ConfigError(f"synthetic: 'names' must be distinct, got {self.names}")
        check_modality_names(self.names, "synthetic: 'names'")  # before anything is drawn
        for key in ("dim", "separation", "noise", "informative", "mirrored"):
            if len(getattr(self, key)) != m:
                raise ConfigError(
                    f"synthetic: '{key}' needs {m} values (one per modality in 'names'), "
                    f"got {getattr(self, key)}"
                )
        if any(d < 1 for d in self.dim):
            raise ConfigError(f"synthetic: 'dim' values must be >= 1, got {self.dim}")
        if any(not math.isfinite(s) for s in [*self.separation, *self.noise]):
            raise ConfigError(f"synthetic: 'separation' and 'noise' must be finite numbers, "
                              f"got {self.separation} and {self.noise}")
        if any(s <= 0 for s in self.noise):
            raise ConfigError(f"synthetic: 'noise' values must be > 0, got {self.noise}")
        if any(not 0.0 <= p <= 1.0 for p in self.informative):
            raise ConfigError(
                f"synthetic: 'informative' values must be in [0, 1], got {self.informative}"
            )
        if any(v not in (0, 1, True, False) for v in self.mirrored):
            raise ConfigError(f"synthetic: 'mirrored' values must be 0 or 1, got {self.mirrored}")
        if self.num_classes < 2:
            raise ConfigError(f"synthetic: 'num_classes' must be >= 2, got {self.num_classes}")
        if self.seed < 0:
            raise ConfigError(f"synthetic: 'seed' must be >= 0, got {self.seed}")
        check_seed(self.seed, "synthetic: 'seed'")
        for key in ("n_train", "n_val", "n_test", "bayes_samples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"synthetic: '{key}' must be >= 1, got {getattr(self, key)}")
        # sizes bounded before anything is drawn: the features, and the Bayes estimate's
        # (bayes_samples, num_classes, dim) float64 array, each at most MAX_ELEMENTS numbers
        if self.num_classes > MAX_CLASSES:
            raise ConfigError(f"synthetic: 'num_classes' must be at most {MAX_CLASSES}, got "
                              f"{self.num_classes}")
        features = (self.n_train + self.n_val + self.n_test) * sum(self.dim)
        bayes = self.bayes_samples * self.num_classes * max(self.dim)
        for what, size in (("n_train + n_val + n_test times the sum of 'dim'", features),
                           ("bayes_samples times num_classes times the largest 'dim'", bayes)):
            if size > MAX_ELEMENTS:
                raise ConfigError(f"synthetic: {what} is {size:,} numbers; at most "
                                  f"{MAX_ELEMENTS:,} (lower the sizes)")


def _class_means(rng: np.random.Generator, c: int, d: int, sep: float) -> np.ndarray:
    """C class means of norm sep/sqrt(2), so two means lie about `sep` apart."""
    mu = rng.standard_normal((c, d))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    return mu * (sep / np.sqrt(2.0))


def _draw(rng, means, y, noise, informative, mirrored=False) -> np.ndarray:
    n, d = y.shape[0], means.shape[1]
    x = rng.standard_normal((n, d)) * noise
    informed = rng.random(n) < informative
    shift = means[y[informed]]
    if mirrored:
        shift = shift * rng.choice([-1.0, 1.0], size=(shift.shape[0], 1))
    x[informed] += shift
    return x.astype(np.float32)


def _log_likelihood(
    x: np.ndarray, means: np.ndarray, noise: float, p: float, mirrored: bool = False
) -> np.ndarray:
    """log p(x | y=c) for every c, up to a constant shared by all classes. Shape (n, C)."""
    sq_to_mean = ((x[:, None, :] - means[None, :, :]) ** 2).sum(-1) / (2 * noise**2)
    sq_to_zero = (x**2).sum(-1, keepdims=True) / (2 * noise**2)
    if mirrored:  # an equal mixture of N(mu_c) and N(-mu_c)
        sq_to_neg = ((x[:, None, :] + means[None, :, :]) ** 2).sum(-1) / (2 * noise**2)
        sq_to_mean = -np.logaddexp(-sq_to_mean, -sq_to_neg) + np.log(2.0)
    terms = []
    if p > 0:
        terms.append(np.log(p) - sq_to_mean)
    if p < 1:
        terms.append(np.broadcast_to(np.log1p(-p) - sq_to_zero, sq_to_mean.shape))
    return np.logaddexp.reduce(np.stack(terms), axis=0)


def make_synthetic(config: SyntheticConfig | None = None) -> MultimodalDataset:
    """Build the dataset and estimate each modality's (and the joint) Bayes accuracy."""
    cfg = config or SyntheticConfig()
    cfg.check()
    rng = np.random.default_rng(cfg.seed)
    means = [
        _class_means(rng, cfg.num_classes, d, s) for d, s in zip(cfg.dim, cfg.separation)
    ]

    def sample(n: int, r: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
        y = r.integers(0, cfg.num_classes, size=n)
        x = {
            name: _draw(r, mu, y, sigma, p, bool(mir))
            for name, mu, sigma, p, mir in zip(
                cfg.names, means, cfg.noise, cfg.informative, cfg.mirrored
            )
        }
        return x, y.astype(np.int64)

    splits = {}
    for split_name, n in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test)):
        x, y = sample(n, rng)
        splits[split_name] = Split(x=x, y=y)

    # Bayes accuracy on a separate Monte Carlo sample (same means, fresh noise).
    xb, yb = sample(cfg.bayes_samples, np.random.default_rng(cfg.seed + 10_007))
    best: dict[str, float] = {}
    total = np.zeros((cfg.bayes_samples, cfg.num_classes))
    for name, mu, sigma, p, mir in zip(
        cfg.names, means, cfg.noise, cfg.informative, cfg.mirrored
    ):
        ll = _log_likelihood(xb[name].astype(np.float64), mu, sigma, p, bool(mir))
        total += ll
        best[name] = float((ll.argmax(1) == yb).mean())
    best["all"] = float((total.argmax(1) == yb).mean())

    return MultimodalDataset(
        name="synthetic",
        modalities=list(cfg.names),
        num_classes=cfg.num_classes,
        splits=splits,
        best_accuracy=best,
        info={"config": cfg.__dict__.copy()},
    ).validate()
