"""What a run leaves on disk, and the guard that never overwrites an earlier run.

A run folder holds `config.json` (the resolved config), `steps.parquet` (one wide row per
training step: `step`, `epoch`, `loss`, `quota_<m>`, `s_<m>`, `s_hat_<m>`, `loss_<m>`,
`discrepancy`), `epochs.parquet` (validation metrics, learning status and sampler metrics
per epoch), `metrics.json` (final val/test metrics of the best model) and `model.pt` (its
state dict: tensors only, loadable with `torch.load(..., weights_only=True)`) and `tb/`
(TensorBoard events made from those tables and metrics: `mmbalance/tracking.py`).

A run that trains somewhere else (a Ray task on another node) never writes there: it returns
its `RunRecord` (the tables as Arrow, the metrics, the model's tensors, the config) and the
driver writes the folder with `write_record`, so every run folder lands under the driver's
output folder whatever the working directory of the node that trained it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmbalance.errors import UserError, one_line
from mmbalance.limits import check_path


def check_new_run_dir(path: str | Path, option: str = "--out") -> Path:
    """Refuse, without creating anything, an output folder a new run cannot use: one that
    holds something, a dangling link, a path under a file or an unwritable folder, a name
    over the OS limits. Commands call it before their slow checks so a mistake costs nothing
    and leaves nothing behind."""
    out = check_path(path, option)
    if out.is_symlink() and not out.exists():
        raise UserError(f"{option} {out}: a symbolic link to nothing ({os.readlink(out)}); "
                        "remove it or choose another folder")
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{option} {out}: is a file; choose a folder")
        if any(out.iterdir()):
            raise UserError(f"{option} {out}: already exists and is not empty; choose a new "
                            "folder (an earlier run is never overwritten)")
        if not os.access(out, os.W_OK | os.X_OK):
            raise UserError(f"{option} {out}: not writable")
        return out
    parent = out.absolute().parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        kind = "a link to nothing" if parent.is_symlink() and not parent.exists() else "a file"
        raise UserError(f"{option} {out}: {parent} is {kind}, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {out}: cannot create it, {parent} is not writable")
    return out


def new_run_dir(path: str | Path, option: str = "--out") -> Path:
    """Create `path` for a new run; refuse a folder that already holds something (see
    `check_new_run_dir`)."""
    out = check_new_run_dir(path, option)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{option} {out}: cannot create it ({exc.strerror})") from None
    return out


def contained(path: str | Path, root: str | Path | None = None) -> Path:
    """`path`, once its real location (every symbolic link followed, also for a file not
    written yet) is known to lie inside the real location of `root` (default: the folder
    `path` names); else a one-line UserError. A link planted in a run folder (`plots` ->
    /elsewhere, `config.json` -> ~/.bashrc) would otherwise send a write out of the folder."""
    path = Path(path)
    root = path.parent if root is None else Path(root)
    try:
        real, real_root = path.resolve(), root.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop (RuntimeError before Python 3.13)
        raise UserError(f"{path}: cannot resolve it ({_reason(exc)}); not written") from None
    if real != real_root and real_root not in real.parents:
        raise UserError(f"{path}: leads to {real}, outside the folder {root} (a symbolic "
                        "link?); nothing is written outside an output folder")
    return path


def _reason(exc: BaseException) -> str:
    """An OS error's reason, short (its strerror), else its message on one line."""
    return getattr(exc, "strerror", None) or one_line(exc) or type(exc).__name__


def write_file(path: str | Path, write: Callable[[Path], object],
               root: str | Path | None = None) -> Path:
    """The one way a run, comparison or report folder is written: `write(tmp)` fills a
    temporary file beside `path` that then replaces it atomically (a reader never sees half a
    file), and both must lie inside `root` (see `contained`). OS errors (a folder where the
    file goes, a full disk) are one line naming the file."""
    path = contained(path, root)
    tmp = contained(path.with_name(path.name + ".tmp"), root)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp.is_file() and not tmp.is_symlink():  # no half-written file left behind
            tmp.unlink()
        raise UserError(f"{path}: cannot write it ({_reason(exc)})") from None
    return path


def make_folder(path: str | Path, root: str | Path) -> Path:
    """A sub-folder of an output folder (`plots/`): created if missing, refused in one line
    when something else (a file, a link out of `root`) holds its name."""
    path = contained(path, root)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file, not a folder; move it away to write the plots")
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create it ({_reason(exc)})") from None
    return path


def write_text(path: str | Path, text: str, root: str | Path | None = None) -> Path:
    return write_file(path, lambda tmp: tmp.write_text(text), root)


def write_json(path: str | Path, data: dict, root: str | Path | None = None) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n", root)


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def rows_table(rows: list[dict]) -> pa.Table:
    """Rows of dicts as one Arrow table (columns in first-seen order)."""
    columns: dict[str, list] = {}
    for row in rows:
        for key in row:
            columns.setdefault(key, [])
    for key in columns:
        columns[key] = [row.get(key) for row in rows]
    return pa.table(columns) if rows else pa.table({})


def write_arrow(path: str | Path, table: pa.Table, root: str | Path | None = None) -> Path:
    """One Arrow table as Parquet, replaced atomically (a reader never sees half a file)."""
    return write_file(path, lambda tmp: pq.write_table(table, tmp), root)


def write_table(path: str | Path, rows: list[dict], root: str | Path | None = None) -> Path:
    """Rows of dicts as one Parquet table (columns in first-seen order)."""
    return write_arrow(path, rows_table(rows), root)


@dataclass
class RunRecord:
    """Everything a run produced, in a form that travels (Ray pickles it back to the driver)."""

    config: dict
    steps: pa.Table
    epochs: pa.Table
    metrics: dict | None = None  # None: the run did not finish
    model: dict[str, torch.Tensor] | None = None  # the best model's state dict, on the CPU


def collect_run(trainer, final: dict | None, config: dict) -> RunRecord:
    """A finished (or interrupted, `final=None`) run as a `RunRecord`."""
    model = None
    if final is not None:
        state = trainer.best_state or trainer.model.state_dict()
        model = {k: v.detach().cpu() for k, v in state.items()}
    return RunRecord(config=config, steps=rows_table(trainer.history.steps),
                     epochs=rows_table(trainer.history.epochs), metrics=final, model=model)


def write_record(out: Path, record: RunRecord) -> None:
    """A run folder from a `RunRecord` (see the module docstring for its files)."""
    write_json(out / "config.json", record.config, out)
    write_arrow(out / "steps.parquet", record.steps, out)
    write_arrow(out / "epochs.parquet", record.epochs, out)
    if record.metrics is not None:
        write_json(out / "metrics.json", record.metrics, out)
    if record.model is not None:
        model = record.model
        write_file(out / "model.pt", lambda tmp: torch.save(model, tmp), out)
    from mmbalance.tracking import write_tensorboard

    write_tensorboard(out, record)  # here, so runs trained on other nodes get theirs too


def write_run(out: Path, trainer, final: dict | None, config: dict) -> None:
    """Everything a finished (or interrupted, `final=None`) run produced."""
    write_record(out, collect_run(trainer, final, config))


def data_record(dataset) -> dict:
    """What a run folder records about how its data was transformed (standardisation of
    user features, with the training split's statistics)."""
    standardize = dataset.info.get("standardize")
    record = {"num_classes": dataset.num_classes}
    return {**record, "standardize": standardize} if standardize is not None else record


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
