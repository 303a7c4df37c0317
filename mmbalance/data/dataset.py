"""The in-memory multimodal dataset every loader returns and every trainer reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmbalance.errors import DataError

SPLITS = ("train", "val", "test")


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

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        train = self.splits["train"]
        return {m: tuple(train.x[m].shape[1:]) for m in self.modalities}

    def validate(self) -> MultimodalDataset:
        """Check shapes, labels and finiteness; raise DataError naming split/modality/row."""
        if len(self.modalities) < 2:
            raise DataError(f"{self.name}: need at least 2 modalities, got {self.modalities}")
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
