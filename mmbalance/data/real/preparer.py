"""What a dataset module provides to be prepared: its items (`Item`) and a `Preparer`, with
its settings dataclass (`make_settings`) and the stratified split helper (`stratified_carve`).
`writer.py` turns a preparer's raw data into a prepared folder; `reader.py` loads one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.errors import ConfigError, DataError


@dataclass
class Item:
    """One sample to prepare: where its files are (relative to the raw root) and its label."""

    id: str
    label: int
    split: str
    src: dict[str, Any] = field(default_factory=dict)
    text: str | None = None


class Preparer:
    """What a dataset module provides; `writer.prepare()` does the rest.

    Subclasses set `name`, `modalities`, `settings_cls` and implement `items()` (the raw
    annotations as `Item`s and the class names), `arrays()` (per-sample shape and dtype per
    modality), `process(item)` (the arrays of one sample) and `encoders()`.
    """

    name = ""
    modalities: tuple[str, ...] = ()
    settings_cls: type = object
    has_val = False  # the raw layout has its own validation split
    path_settings: tuple[str, ...] = ()  # settings naming files: stored as absolute paths

    def __init__(self, root: str | Path, settings: Any = None, skip_missing: bool = False):
        self.root = Path(root)
        self.settings = settings if settings is not None else self.settings_cls()
        for key in self.path_settings:  # plan.json and meta.json say which file was used
            if getattr(self.settings, key):
                setattr(self.settings, key, str(Path(getattr(self.settings, key)).resolve()))
        self.skip_missing = skip_missing
        self.skipped: list[str] = []

    def items(self) -> tuple[list[Item], list[str]]:
        raise NotImplementedError

    def arrays(self) -> dict[str, tuple[tuple[int, ...], str]]:
        raise NotImplementedError

    def process(self, item: Item) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def encoders(self) -> dict[str, dict]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Extra facts for meta.json (e.g. the tokenizer)."""
        return {}

    def notes(self) -> list[str]:
        """Lines the user should read before a long preparation starts (e.g. a fallback)."""
        return []

    def sources(self) -> dict:
        """Which raw files feed each modality (e.g. frame folders or videos): part of the
        plan, so a resume never mixes two sources. Valid after `items()`."""
        return {}

    def written_files(self) -> dict[str, str]:
        """Files to write into the prepared folder ({relative path: text}), e.g. a split
        made at preparation time, in the authors' annotation format. Valid after `items()`."""
        return {}

    # helpers for items()
    def require(self, path: Path, what: str, item_id: str,
                check: Callable[[Path], str | None] | None = None) -> bool:
        """True if `path` exists (and `check(path)` finds no problem); else skip the item
        (skip_missing) or raise naming the file."""
        problem = "not found" if not path.exists() else (check(path) if check else None)
        if problem is None:
            return True
        if self.skip_missing:
            self.skipped.append(f"{item_id}: {what} {path} {problem}")
            return False
        raise DataError(f"{path}: {what} {problem} (item {item_id!r}; pass --skip-missing to "
                        "leave out items whose files are missing or cut short, as the authors' "
                        "loaders leave out missing ones)")


def make_settings(cls: type, values: dict | None) -> Any:
    """A settings dataclass from user values; unknown keys are errors naming the allowed."""
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"prepare: unknown setting(s) {unknown}; allowed: {sorted(known)}")
    for key, value in values.items():
        default = known[key].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"prepare: {key} must be true/false, got {value!r}")
        if isinstance(default, int | float) and not isinstance(default, bool):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"prepare: {key} must be a number, got {value!r}")
            if isinstance(default, float):
                values[key] = float(value)
            elif int(value) != value:
                raise ConfigError(f"prepare: {key} must be an integer, got {value!r}")
            else:
                values[key] = int(value)
        if isinstance(default, str) and not isinstance(value, str):
            values[key] = str(value)
    settings = cls(**values)
    check = getattr(settings, "check", None)
    if check is not None:
        check()
    return settings


def stratified_carve(labels: np.ndarray, fraction: float, seed: int | list[int],
                     key: str = "val_fraction") -> np.ndarray:
    """Boolean mask of the rows carved out (train -> val, or all -> test): per class, seeded.

    Each class gives round(fraction x its size) rows (at least 1 and at most all but one of
    classes with 2+ rows), chosen by one generator walking the classes in sorted order, so
    the split depends only on the labels, the fraction and the seed. `key` names the
    setting in errors.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"{key}: must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = round(fraction * len(idx))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        mask[rng.permutation(idx)[:k]] = True
    return mask
