"""What users of this field already open: TensorBoard events for every run, and MLflow.

TensorBoard. Every run folder the driver writes (`runs.write_record`: `train`, each run of
`compare` and `evaluate`, also runs trained on other nodes) gets `tb/`, an event file made
from the run's own tables, so `tensorboard --logdir <compare folder>` shows every run side
by side. Tags (`run_scalars`): `train/<column>` for each numeric step column (loss, `s_<m>`,
`s_hat_<m>`, `quota_<m>`, `updates_<m>`, `loss_<m>`, `discrepancy` = D), `val/<metric>`
and `epoch/<column>` per epoch, and the best model's `test/<metric>` (probes included),
`best_val/<metric>` and `final/<key>` (best epoch, seconds, any compute ledger) once. Every
tag shares the global-step axis (an epoch's values at its last step): TensorBoard drops
events whose step goes back, so one step axis is the only order that keeps them all.
Sweeps get theirs from Tune's `TBXLoggerCallback` (`tune_callbacks`), `learn` writes its own.

MLflow (optional extra `mmbalance[tracking]`). `--tracking mlflow` (or `tracking: mlflow` in
a sweep/learn YAML) logs params (the resolved config), metrics per epoch or iteration, every
numeric key of `metrics.json` (compute figures included) and the run folder's files as
artifacts, to `--tracking-uri` or, by default, the file store `<out>/mlruns`. A comparison is
one parent run (its config, tables and summary) with a child run per training run. Sweeps
use Tune's `MLflowLoggerCallback`. This module imports MLflow only when asked to track.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mmbalance.errors import ConfigError, UserError

if TYPE_CHECKING:
    import pyarrow as pa

    from mmbalance.runs import RunRecord

TRACKERS = ("mlflow",)
INSTALL_HINT = "pip install 'mmbalance[tracking]'"
TB_DIR = "tb"
MLRUNS = "mlruns"


# ------------------------------------------------------------------------------ TensorBoard
def _number(value: object) -> float | None:
    """A finite float, or None for anything else (bools, strings, NaN: nothing to plot)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _numeric_columns(table: pa.Table, skip: Iterable[str]) -> dict[str, list]:
    import pyarrow as pa

    skip = set(skip)
    return {name: table.column(name).to_pylist() for name in table.column_names
            if name not in skip and (pa.types.is_integer(table.schema.field(name).type)
                                     or pa.types.is_floating(table.schema.field(name).type))}


def flatten_numbers(data: dict, prefix: str = "", sep: str = "/") -> dict[str, float]:
    """Every finite number in a nested mapping, keyed by its path (`ledger/gpu_seconds`)."""
    out: dict[str, float] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_numbers(value, path + sep, sep))
        elif (v := _number(value)) is not None:
            out[path] = v
    return out


def run_scalars(steps: pa.Table, epochs: pa.Table,
                metrics: dict | None) -> list[tuple[int, dict[str, float]]]:
    """A run's TensorBoard scalars as (global step, {tag: value}), steps increasing."""
    by_step: dict[int, dict[str, float]] = {}
    step_col = steps.column("step").to_pylist() if "step" in steps.column_names else []
    for name, values in _numeric_columns(steps, ("step", "epoch")).items():
        for step, value in zip(step_col, values):
            if (v := _number(value)) is not None:
                by_step.setdefault(int(step), {})[f"train/{name}"] = v
    last = max(step_col, default=0)
    if "step" in epochs.column_names:
        at = [int(s) for s in epochs.column("step").to_pylist()]
    else:  # an epoch's values go at its last step (or at its index, with no step table)
        at = list(range(epochs.num_rows))
    for name, values in _numeric_columns(epochs, ("step",)).items():
        tag = f"val/{name[len('val_'):]}" if name.startswith("val_") else f"epoch/{name}"
        for step, value in zip(at, values):
            if (v := _number(value)) is not None:
                by_step.setdefault(step, {})[tag] = v
    if metrics:
        step = int(metrics.get("steps") or max([last, *at], default=0))
        final = by_step.setdefault(step, {})
        for key, v in flatten_numbers(metrics).items():
            group, _, rest = key.partition("/")
            if group == "test" and rest:
                final[key] = v
            elif group == "val" and rest:
                final[f"best_val/{rest}"] = v
            else:
                final[f"final/{key}"] = v
    return sorted(by_step.items())


def write_tensorboard(out: Path, record: RunRecord) -> Path:
    """`out/tb/`: one event file with the run's scalars (see the module docstring)."""
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary

    folder = out / TB_DIR
    folder.mkdir(exist_ok=True)
    # the synchronous writer: no background thread or exit hook per run folder, and the
    # file is complete when this returns (a compare writes dozens of them)
    writer = EventsWriter(str(folder / "events"))
    now = time.time()
    try:
        for step, values in run_scalars(record.steps, record.epochs, record.metrics):
            summary = Summary(value=[Summary.Value(tag=t, simple_value=v)
                                     for t, v in values.items()])
            writer.write_event(Event(wall_time=now, step=step, summary=summary))
    finally:
        writer.close()
    return folder


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under `folder` (recursively), as {tag: [(step,
    value)]}, each record's checksums verified as TensorBoard verifies them. Used by the
    tests and handy in a notebook without TensorBoard installed."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            header = data[pos:pos + 8]
            (length,) = struct.unpack("Q", header)
            (crc,) = struct.unpack("I", data[pos + 8:pos + 12])
            body = data[pos + 12:pos + 12 + length]
            (body_crc,) = struct.unpack("I", data[pos + 12 + length:pos + 16 + length])
            if crc != masked_crc32c(header) or body_crc != masked_crc32c(body):
                raise ValueError(f"{path}: corrupt record at byte {pos}")
            pos += 16 + length
            event = Event.FromString(body)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


# ----------------------------------------------------------------------------------- MLflow
def check_tracking(kind: str | None, option: str = "--tracking") -> None:
    """Refuse an unknown tracker, or MLflow when it is not installed, before anything runs
    or any folder exists."""
    if kind is None:
        return
    if kind not in TRACKERS:
        raise ConfigError(f"{option}: unknown tracker {kind!r}; allowed: {list(TRACKERS)}")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise UserError(f"{option} mlflow: MLflow is not installed; install the extra with "
                        f"{INSTALL_HINT}") from None


def check_tracking_key(kind: object, uri: object) -> None:
    """The `tracking:` and `tracking_uri:` keys of a sweep or learn YAML (whether MLflow is
    installed is the command's check: `check_tracking`)."""
    if kind is not None and kind not in TRACKERS:
        raise ConfigError(f"tracking: unknown tracker {kind!r}; allowed: {list(TRACKERS)} "
                          "or null")
    if uri is not None and kind is None:
        raise ConfigError("tracking_uri: goes with tracking: mlflow")


def tracking_uri(uri: str | None, out: Path) -> str:
    """Where MLflow logs: `uri` as given (a server, `file:`, `sqlite:` ...), a plain path as
    a file store there, else the file store `<out>/mlruns` (offline, and what CI reads)."""
    if uri and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", uri) and uri != "databricks":
        uri = Path(uri).resolve().as_uri()  # no scheme: a folder
    uri = uri or (Path(out) / MLRUNS).resolve().as_uri()
    if uri.startswith("file:"):
        # MLflow 3 keeps the file store only on request; it is the store that works with no
        # server and no database, which is what a local default is for
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def _name(key: str) -> str:
    """A metric or param name MLflow accepts: sampler specs bring ':', '=' and ','."""
    return _UNSAFE.sub("_", key)[:250]


@contextmanager
def _reported(uri: str, note: str) -> Iterator[None]:
    """An MLflow store that refuses or cannot be reached is the user's to fix (a wrong
    URI, a server down): one line, with `note` saying what is already safe on disk."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as exc:  # requests' errors are OSErrors
        raise UserError(f"MLflow at {uri}: logging failed ({type(exc).__name__}: {exc}); "
                        f"{note}") from None


def _param_value(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:6000]  # MLflow's limit on a parameter's value


def flatten_params(data: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: dotted keys (`train.lr`), values as text."""
    out: dict[str, str] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_params(value, path + "."))
        else:
            out[path] = _param_value(value)
    return out


class MlflowTracker:
    """One MLflow experiment through `MlflowClient` (no global active run: a comparison
    logs many runs, nested under one parent)."""

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (found.experiment_id if found is not None
                              else self.client.create_experiment(experiment))

    def start(self, name: str, params: dict | None = None, parent: str | None = None,
              tags: dict | None = None) -> str:
        all_tags = {**(tags or {}), **({"mlflow.parentRunId": parent} if parent else {})}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        if params:
            self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param

        flat = list(flatten_params(params).items())
        for i in range(0, len(flat), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=[Param(_name(k), v)
                                                  for k, v in flat[i:i + 100]])

    def log_metrics(self, run_id: str, rows: Iterable[tuple[str, float, int]]) -> None:
        """(key, value, step) triples; non-finite values are left out."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_name(k), v, now, int(s)) for k, value, s in rows
                   if (v := _number(value)) is not None]
        for i in range(0, len(metrics), 1000):  # and at most 1000 metrics
            self.client.log_batch(run_id, metrics=metrics[i:i + 1000])

    def log_folder(self, run_id: str, folder: Path, skip: Iterable[str] = ()) -> None:
        """The files of `folder` as artifacts (not `mlruns/`, the store itself, nor `skip`).
        A file store is on this machine, next to the events: `tb/` is not copied into it,
        where `tensorboard --logdir OUT` would show every run twice."""
        skip = {MLRUNS, *skip, *((TB_DIR,) if self.uri.startswith("file:") else ())}
        for path in sorted(Path(folder).iterdir()):
            if path.name in skip or path.name.endswith(".tmp"):
                continue
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(run_id, str(path))

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _epoch_metrics(folder: Path) -> Iterator[tuple[str, float, int]]:
    """Per-epoch MLflow metrics of a run folder: each numeric epochs.parquet column (the
    step-level tables stay in TensorBoard: thousands of points per run would swamp a file
    store)."""
    import pyarrow.parquet as pq

    path = folder / "epochs.parquet"
    if not path.is_file():
        return
    epochs = pq.read_table(path)
    at = (epochs.column("epoch").to_pylist() if "epoch" in epochs.column_names
          else list(range(epochs.num_rows)))
    for name, values in _numeric_columns(epochs, ("epoch",)).items():
        for epoch, value in zip(at, values):
            yield name, value, int(epoch)


def log_run_folder(tracker: MlflowTracker, folder: Path, name: str | None = None,
                   parent: str | None = None, tags: dict | None = None) -> str:
    """One run folder as an MLflow run: config.json as params, epochs.parquet per epoch,
    metrics.json's numbers (test, val of the best model, seconds, compute ledger ...) at
    the last epoch, the folder's files as artifacts. A folder without metrics.json (an
    interrupted or diverged run) ends KILLED."""
    folder = Path(folder)
    run_id = tracker.start(name or folder.name, _read_json(folder / "config.json"), parent,
                           tags)
    try:
        rows = list(_epoch_metrics(folder))
        metrics = _read_json(folder / "metrics.json")
        last = max((s for _, _, s in rows), default=0)
        rows += [(k, v, last) for k, v in flatten_numbers(metrics).items()]
        tracker.log_metrics(run_id, rows)
        tracker.log_folder(run_id, folder)
    except BaseException:
        tracker.end(run_id, "FAILED")
        raise
    tracker.end(run_id, "FINISHED" if metrics else "KILLED")
    return run_id


def log_train(folder: Path, uri: str | None, quiet: bool = False) -> str | None:
    """`mmbalance train --tracking mlflow`: the run folder, to experiment mmbalance-train.
    `quiet`: the run stopped with an error, which is the one to report; a failure to log
    then returns None."""
    uri = tracking_uri(uri, folder)
    try:
        with _reported(uri, f"{folder} itself is complete"):
            return log_run_folder(MlflowTracker(uri, "mmbalance-train"), folder)
    except UserError:
        if quiet:
            return None
        raise


def log_comparison(folder: Path, uri: str | None, experiment: str = "mmbalance-compare") -> str:
    """A comparison folder: a parent run (compare.json as params, each summary row's means
    as metrics, results/summary tables as artifacts) and one child run per run folder,
    tagged with its method, sampler and seed. Returns the parent's run id."""
    folder = Path(folder)
    uri = tracking_uri(uri, folder)
    with _reported(uri, f"{folder} itself is complete"):
        return _log_comparison(MlflowTracker(uri, experiment), folder)


def _log_comparison(tracker: MlflowTracker, folder: Path) -> str:
    meta = _read_json(folder / "compare.json")
    parent = tracker.start(folder.name, meta, tags={"mmbalance.kind": "compare"})
    status = "FAILED"
    try:
        summary = folder / "summary.parquet"
        if summary.is_file():
            import pyarrow.parquet as pq

            rows = []
            for row in pq.read_table(summary).to_pylist():
                cell = f"{row['method']}/{row['sampler']}"
                rows += [(f"{cell}/{k}", v, 0) for k, v in row.items()
                         if k not in ("method", "sampler")]
            tracker.log_metrics(parent, rows)
        for run in sorted((folder / "runs").glob("*/")):
            config = _read_json(run / "config.json")
            tags = {"mmbalance.method": config.get("train", {}).get("method", ""),
                    "mmbalance.sampler": config.get("sampler", ""),
                    "mmbalance.seed": str(config.get("train", {}).get("seed", ""))}
            log_run_folder(tracker, run, run.name, parent, tags)
        tracker.log_folder(parent, folder, skip=("runs",))
        status = "FINISHED"
    finally:
        tracker.end(parent, status)
    return parent


class LearnRun:
    """`mmbalance learn --tracking mlflow`: one MLflow run, fed an iteration at a time, that
    a `--resume` continues (its id is kept in `<out>/mlflow_run.json`)."""

    ID_FILE = "mlflow_run.json"

    def __init__(self, out: Path, uri: str | None, config: dict) -> None:
        self.out = Path(out)
        saved = _read_json(self.out / self.ID_FILE)
        uri = saved.get("uri") or tracking_uri(uri, self.out)
        self.uri = uri
        with _reported(uri, "nothing was trained"):  # checked before the first iteration
            self.tracker = MlflowTracker(uri, "mmbalance-learn")
            if saved.get("run_id"):
                self.run_id = saved["run_id"]
                self.tracker.client.update_run(self.run_id, status="RUNNING")
            else:
                self.run_id = self.tracker.start(self.out.name, config)
                (self.out / self.ID_FILE).write_text(json.dumps(
                    {"uri": self.tracker.uri, "run_id": self.run_id}) + "\n")

    def log_row(self, row: dict) -> None:
        step = int(row["iteration"])
        with _reported(self.uri, f"{self.out} keeps what ran (--resume continues it)"):
            self.tracker.log_metrics(self.run_id, [(k, v, step) for k, v in row.items()
                                                   if k != "iteration"])

    def finish(self, ok: bool) -> None:
        from mlflow.exceptions import MlflowException

        if not ok:  # the error that stopped the run is the one to report, not this one
            try:
                self.tracker.end(self.run_id, "FAILED")
            except (MlflowException, OSError):
                pass
            return
        with _reported(self.uri, f"{self.out} itself is complete"):
            # checkpoints stay out: pickles signed with this machine's key
            self.tracker.log_folder(self.run_id, self.out, skip=("checkpoints",))
            self.tracker.end(self.run_id, "FINISHED")


# ------------------------------------------------------------------------------- Ray Tune
def tune_callbacks(kind: str | None, uri: str | None, out: Path, experiment: str) -> list:
    """Tune's own loggers for a sweep: TensorBoard events per trial (`TBXLoggerCallback`,
    in each trial's folder of the experiment) and, with `kind` mlflow, Tune's
    `MLflowLoggerCallback` (one MLflow run per trial: its config, each reported result,
    and, to a server, the trial folder as artifacts)."""
    from ray.tune.logger import TBXLoggerCallback

    callbacks: list = [TBXLoggerCallback()]
    if kind == "mlflow":
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = tracking_uri(uri, out)
        # the trial folders (their events too) go to a server; a file store sits next to
        # them already, and copies under <out>/mlruns would show each trial twice in
        # `tensorboard --logdir <out>`
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment,
                                              save_artifact=not uri.startswith("file:")))
    return callbacks
