"""What a dataset module provides to be prepared: its items (`Item`) and a `Preparer`, with
its settings dataclass (`make_settings`) and the stratified split helper (`stratified_carve`).
`writer.py` turns a preparer's raw data into a prepared folder; `reader.py` loads one.

Files are taken as owners have them: `Preparer.child` finds folder and file names in any
case, `listing` leaves hidden files (macOS's `._*`) out and counts them, `require` never
opens a FIFO or device (`file_problem`) and names a Git LFS pointer as one. Every item's
problem is recorded (`reject`): with `--skip-missing` the item is left out and listed with
its reason, without it `raise_problems` names them all once listing is done."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.errors import ConfigError, DataError, ProblemList

LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
SHOWN_PROBLEMS = 20  # listed one per line; the rest are counted
SKIP_HINT = ("pass --skip-missing to leave out items whose files are missing, cut short or "
             "empty, as the authors' loaders leave out missing ones; they are then listed in "
             "meta.json")


def is_hidden(path: Path) -> bool:
    """macOS's `._*` resource forks, `.DS_Store` and other dot files: never data."""
    return path.name.startswith(".")


def special_kind(mode: int) -> str | None:
    """What a file that is not a regular file or folder is (a FIFO would block a read)."""
    import stat

    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return None


def lfs_pointer_problem(path: Path) -> str | None:
    """A Git LFS pointer stands where the file should be (a clone made without `git lfs`):
    say so, and how to fetch the real file, instead of "not a WAV file"."""
    try:
        if path.stat().st_size > 1024:
            return None
        with path.open("rb") as f:
            head = f.read(len(LFS_POINTER))
    except OSError:
        return None
    if head != LFS_POINTER:
        return None
    clone = next((q for q in path.resolve().parents if (q / ".git").exists()), None)
    where = f"cd {clone} && git lfs pull" if clone else "git lfs pull, in the clone it came from"
    return f"is a Git LFS pointer, not the file itself: fetch the real files ({where})"


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a data file, found without opening anything but a
    regular file: missing, a FIFO, socket or device, or a Git LFS pointer."""
    import os

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return f"is unreadable: {exc.strerror or exc}"
    kind = special_kind(mode)
    if kind:
        return f"is {kind}, not a regular file (never opened)"
    if Path(path).is_file():
        return lfs_pointer_problem(Path(path))
    return None


@dataclass
class Item:
    """One sample to prepare: where its files are (relative to the raw root) and its label."""

    id: str
    label: int
    split: str
    src: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    target: str | None = None  # target-oriented text (TomBERT): the second text segment


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
        self.skipped: list[str] = []  # with skip_missing: "<item>: <file> <reason>"
        self.skip_counts: dict[str, int] = {}  # reason -> items skipped for it
        self.problems: list[str] = []  # without: every problem, raised once listing is done
        self.hidden: set[str] = set()  # hidden files met (._*, .DS_Store), ignored
        self._listings: dict[Path, dict[str, Path]] = {}

    def __getstate__(self) -> dict:
        # worker processes get the preparer with every task chunk: not the folder listings
        # (thousands of paths) it kept while listing the items
        return {**self.__dict__, "_listings": {}}

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
        """True if `path` is there (a regular file or a folder, never a FIFO or device, nor
        a Git LFS pointer) and `check(path)` finds no problem in its content; else the item
        is rejected (`reject`)."""
        problem = file_problem(path)
        if problem is None and check is not None:
            try:
                problem = check(path)
            except OSError as exc:
                problem = f"is unreadable: {exc.strerror or exc}"
        if problem is None:
            return True
        self.reject(item_id, path, what, problem)
        return False

    def reject(self, item_id: str, path: Path, what: str, problem: str) -> None:
        """Leave an item out: listed in meta.json with its reason (skip_missing), or
        recorded as a problem; `raise_problems` stops after listing every item, so one run
        names every broken file."""
        if self.skip_missing:
            self.skipped.append(f"{item_id}: {what} {path} {problem}")
            # the reason without its particulars (sizes, decoder messages), for the counts
            reason = f"{what} {problem.split(':')[0].split(' (')[0]}"
            self.skip_counts[reason] = self.skip_counts.get(reason, 0) + 1
        else:
            self.problems.append(f"{path}: {what} {problem} (item {item_id!r})")

    def raise_problems(self) -> None:
        """One problem: one line, as any error. Several: one `ProblemList` listing the first
        `SHOWN_PROBLEMS` one per line, then how many more (the CLI prints it as it is)."""
        if not self.problems:
            return
        if len(self.problems) == 1:
            raise DataError(f"{self.problems[0][:-1]}; {SKIP_HINT})")
        shown = self.problems[:SHOWN_PROBLEMS]
        more = len(self.problems) - len(shown)
        head = (f"{self.root}: {len(self.problems)} items have problems; nothing was "
                f"prepared ({SKIP_HINT}):")
        lines = [head, *(f"  {p}" for p in shown)]
        if more:
            lines.append(f"  ... and {more} more")
        raise ProblemList("\n".join(lines), self.problems)

    def listing(self, folder: Path) -> dict[str, Path]:
        """{lower-case name: entry} of a folder's visible entries, read once (hidden ones
        are left out, and counted in `hidden` when they sit among the data: not the root's
        own `.git`, `.gitattributes`)."""
        if folder not in self._listings:
            entries: dict[str, Path] = {}
            among_data = folder not in (self.root, self.root.resolve().parent)
            if folder.is_dir():
                for p in sorted(folder.iterdir()):
                    if is_hidden(p):
                        if among_data:
                            self.hidden.add(str(p))
                    else:
                        entries.setdefault(p.name.lower(), p)
            self._listings[folder] = entries
        return self._listings[folder]

    def child(self, folder: Path, name: str) -> Path:
        """`folder/name`, matched without regard to case (`audiowav/` for `AudioWAV/`,
        `clip.WAV` for `clip.wav`), as owners' copies name them; `folder/name` if absent."""
        exact = folder / name
        if exact.exists() or exact.is_symlink():
            return exact
        return self.listing(folder).get(name.lower(), exact)

    def layout_error(self, expected: str, also: str = "") -> DataError:
        """The raw folder does not hold the layout: say what was expected and what was
        found, and when `--root` points one level too deep (its parent holds the layout),
        say which folder to pass instead."""
        found = sorted(p.name + ("/" if p.is_dir() else "")
                       for p in self.listing(self.root).values())
        shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
        parent = self.root.resolve().parent
        siblings = {n.lower() for n in self.listing(parent)}
        wanted = {w.strip("/").lower() for w in expected.replace(",", " ").split()
                  if w.endswith("/")}
        deep = ""
        if self.root.name.lower() in wanted or wanted & siblings:
            deep = f"; --root points one level too deep: pass {parent}"
        return DataError(f"{self.root}: expected {expected}{also}; found "
                         f"{shown or 'nothing'}{deep}")


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
