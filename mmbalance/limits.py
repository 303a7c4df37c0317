"""Stated maxima for user-given sizes, seeds, names and paths, checked where they are read.

A value beyond these is a mistake (or an attack), never a real setting: `hidden=2000000000`
would try to allocate about 128 GB before the first step, a seed of 2**64 overflows torch's
generator, a path component over 255 bytes makes every file call fail with ENAMETOOLONG. Each
check raises a one-line `ConfigError`/`UserError` naming the option and the limit, before
anything is allocated or created. docs/mistakes_b.md lists them.

A leaf module (it imports only `errors`), so every layer (data, trainers, cli) can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmbalance.errors import ConfigError, UserError

# numpy's legacy RandomState and scikit-learn's random_state take seeds below 2**32 only
MAX_SEED = 2**32 - 1

# TrainConfig sizes: far above any model of the papers (hidden 512, batches of 64..256),
# far below what exhausts a machine's memory
TRAIN_MAXIMA = {
    "epochs": 100_000,
    "batch_size": 65_536,
    "eval_batch_size": 65_536,
    "hidden": 8_192,
    "feature_dim": 8_192,
    "lr_step": 100_000,
}

# a learned policy's network: far above the policies `learn` exports (two layers of 64..256
# units), and bounded before any layer is allocated
MAX_POLICY_PARAMETERS = 50_000_000

# Linux NAME_MAX and PATH_MAX, in bytes of the file-system encoding
NAME_MAX = 255
PATH_MAX = 4096


def check_seed(value: int, what: str) -> int:
    """A seed in 0..MAX_SEED, else ConfigError naming `what`."""
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{what}: a seed must be in 0..{MAX_SEED} (2**32 - 1), got {value}")
    return value


def check_train_sizes(values: dict, what: str = "train config") -> None:
    """Each size in `values` (TrainConfig keys) within TRAIN_MAXIMA, and a seed within
    MAX_SEED; keys not given are not checked. Values are already typed."""
    for key, limit in TRAIN_MAXIMA.items():
        value = values.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise ConfigError(f"{what}: '{key}' must be at most {limit:,}, got {value:,}")
    seed = values.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        check_seed(seed, f"{what}: 'seed'")


def check_path(path: str | Path, what: str) -> Path:
    """`path` as a Path, refused in one line when a component is over NAME_MAX bytes or the
    whole over PATH_MAX: the OS would fail every call on it with a traceback-worthy error."""
    p = Path(path)
    text = os.fsencode(str(p))
    if len(text) >= PATH_MAX:
        raise UserError(f"{what}: path of {len(text)} bytes; at most {PATH_MAX - 1} allowed "
                        f"(PATH_MAX), starts {str(p)[:60]!r}")
    for part in p.parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise UserError(f"{what}: a path component of {size} bytes; at most {NAME_MAX} "
                            f"allowed (NAME_MAX), starts {part[:60]!r}")
    return p
