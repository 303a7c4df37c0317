"""The in-memory multimodal dataset every loader returns and every trainer reads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from mmbalance.errors import DataError

SPLITS = ("train", "val", "test")

# A modality name becomes part of column names (`s_<m>`, `s_hat_<m>`, `quota_<m>`,
# `test_acc_<m>`, `rl_p_<m>_<n>`), of option keys (`pretrained_<m>`) and of file names
# (`<split>/<m>.npy`): lower-case letters and digits only, so no two names can collide once
# prefixed (`audio` and `hat_audio` would: `s_hat_audio`), none can leave a folder (`../x`)
# and none differs from another by case alone (one file on a case-insensitive disk).
MODALITY_NAME = re.compile(r"[a-z][a-z0-9]{0,31}")
# keys that sit beside modality names in the same mappings (`best_accuracy["all"]`, the
# Parquet format's columns)
RESERVED_NAMES = ("all", "label", "split")


def check_modality_names(names: object, where: str) -> list[str]:
    """`names` as a list, when it holds 2 or more distinct names that match MODALITY_NAME and
    are not reserved; else one DataError naming `where` and the first bad name."""
    if not isinstance(names, (list, tuple)):
        raise DataError(f"{where}: modalities must be a list of names, got {names!r}")
    for m in names:
        if not isinstance(m, str) or not MODALITY_NAME.fullmatch(m):
            raise DataError(f"{where}: modality name {m!r} is not allowed; use 1 to 32 "
                            "lower-case letters and digits, starting with a letter (no '_', "
                            "'.', '/' or '-': names become column and file names)")
        if m in RESERVED_NAMES:
            raise DataError(f"{where}: modality name {m!r} is reserved; "
                            f"not one of {list(RESERVED_NAMES)}")
    if len(set(names)) != len(names):
        raise DataError(f"{where}: modality names must be distinct, got {list(names)}")
    if len(names) < 2:
        raise DataError(f"{where}: need at least 2 modalities, got {list(names)}")
    return list(names)


@dataclass
class Split:
    """One split: a float32 array per modality (same first dimension) and int64 labels."""

    x: dict[str, np.ndarray]
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class MultimodalDataset:
    """Features per modality for train/val/test, plus what is known about the data.

    `input_shapes[m]` is one sample's shape for modality m: `(d,)` for feature vectors,
    `(c, h, w)` for image-like inputs. `best_accuracy` holds, where known (synthetic data),
    the Bayes accuracy of each modality alone and of all together ("all").
    """

    name: str
    modalities: list[str]
    num_classes: int
    splits: dict[str, Split]
    best_accuracy: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """What every data source must give, checked once here, cheaply (no pass over the
        features, which may be gigabytes on disk): safe modality names, three non-empty
        splits with labels of an integer type, and a training split holding at least two
        classes. Data too small for that trains into meaningless numbers (one training
        sample gave "acc 0.000, mAP 1.000")."""
        self.modalities = check_modality_names(self.modalities, self.name)
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes,
                                                                (int, np.integer)):
            raise DataError(f"{self.name}: num_classes must be an integer, got "
                            f"{self.num_classes!r}")
        if self.num_classes < 2:
            raise DataError(f"{self.name}: need at least 2 classes, got {self.num_classes}")
        for split_name in SPLITS:
            split = self.splits.get(split_name)
            if split is None:
                raise DataError(f"{self.name}: split '{split_name}' is missing")
            y = np.asarray(split.y)
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"{self.name}: split '{split_name}': labels must be a 1-d "
                                f"array of integers, got {y.dtype} of shape {y.shape}")
            if y.size == 0:
                raise DataError(f"{self.name}: split '{split_name}' is empty; the data is "
                                "too small to split into train, val and test")
        classes = np.unique(np.asarray(self.splits["train"].y))
        if classes.size < 2:
            n = len(self.splits["train"])
            raise DataError(f"{self.name}: the training split ({n} sample(s)) holds only class "
                            f"{int(classes[0])}; a classifier needs at least 2 classes to "
                            "learn from")

    def check_batch_size(self, batch_size: int, what: str = "batch_size") -> None:
        """A batch no larger than the training split: otherwise every epoch is one short
        batch and the batch-size settings (quotas, budgets) mean something else."""
        n = len(self.splits["train"])
        if batch_size > n:
            raise DataError(f"{what}: {batch_size} is larger than the {n} training samples of "
                            f"{self.name}; use a batch size of at most {n}, or more data")

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        train = self.splits["train"]
        return {m: tuple(train.x[m].shape[1:]) for m in self.modalities}

    def validate(self) -> MultimodalDataset:
        """Check shapes, labels and finiteness; raise DataError naming split/modality/row."""
        shapes = None
        for split_name in SPLITS:
            if split_name not in self.splits:
                raise DataError(f"{self.name}: split '{split_name}' is missing")
            split = self.splits[split_name]
            n = len(split)
            if n == 0:
                raise DataError(f"{self.name}: split '{split_name}' is empty")
            bad = np.flatnonzero((split.y < 0) | (split.y >= self.num_classes))
            if bad.size:
                raise DataError(
                    f"{self.name}: column 'label', split '{split_name}', row {int(bad[0])}: "
                    f"label {int(split.y[bad[0]])} outside 0..{self.num_classes - 1}"
                )
            for m in self.modalities:
                arr = split.x[m]
                if arr.shape[0] != n:
                    raise DataError(
                        f"{self.name}: modality '{m}' has {arr.shape[0]} rows in split "
                        f"'{split_name}', labels have {n}"
                    )
                finite = np.isfinite(arr.reshape(n, -1)).all(axis=1)
                if not finite.all():
                    row = int(np.flatnonzero(~finite)[0])
                    raise DataError(
                        f"{self.name}: column '{m}', split '{split_name}', row {row}: NaN or inf"
                    )
            these = {m: split.x[m].shape[1:] for m in self.modalities}
            if shapes is not None and these != shapes:
                raise DataError(f"{self.name}: split '{split_name}' shapes {these} != {shapes}")
            shapes = these
        return self
