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
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmbalance.errors import UserError


def check_new_run_dir(path: str | Path, option: str = "--out") -> Path:
    """Refuse, without creating anything, an output folder a new run cannot use: one that
    holds something, a dangling link, a path under a file or an unwritable folder. Commands
    call it before their slow checks so a mistake costs nothing and leaves nothing behind."""
    out = Path(path)
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


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


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


def write_arrow(path: Path, table: pa.Table) -> None:
    """One Arrow table as Parquet, replaced atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_table(path: Path, rows: list[dict]) -> None:
    """Rows of dicts as one Parquet table (columns in first-seen order)."""
    write_arrow(path, rows_table(rows))


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
    write_json(out / "config.json", record.config)
    write_arrow(out / "steps.parquet", record.steps)
    write_arrow(out / "epochs.parquet", record.epochs)
    if record.metrics is not None:
        write_json(out / "metrics.json", record.metrics)
    if record.model is not None:
        torch.save(record.model, out / "model.pt")
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
