"""TensorBoard events for every run, MLflow tracking: written by the commands, read back
with TensorBoard's event format and MLflow's own client."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from mmbalance.cli import main
from mmbalance.compare import RunSpec
from mmbalance.tracking import read_scalars

TINY = "synthetic:n_train=240,n_val=80,n_test=80,bayes_samples=500"
MODALITIES = ("audio", "visual")


def _compare(out: Path, *extra: str, grid: tuple[str, ...] = ("joint/uniform", "mla/dus-h")
             ) -> pd.DataFrame:
    rc = main(["compare", "--data", TINY, "--seeds", "1", "--epochs", "2", "--batch-size", "40",
               "--parallel", "none", "--grid", *grid, "--out", str(out), "--no-progress",
               *extra])
    assert rc == 0
    results = pd.read_parquet(out / "results.parquet")
    results["key"] = [RunSpec(m, s, seed).key for m, s, seed in
                      zip(results["method"], results["sampler"], results["seed"])]
    return results


def test_tensorboard_shows_every_compare_run_with_its_tables(tmp_path):
    out = tmp_path / "cmp"
    results = _compare(out)
    runs = sorted((out / "runs").iterdir())
    assert [r.name for r in runs] == ["joint__uniform__s0", "mla__dus-h__s0"]
    # `tensorboard --logdir out` finds one event folder per run
    assert sorted(p.parent.parent for p in out.rglob("events.out.tfevents.*")) == runs
    for run in runs:
        scalars = read_scalars(run / "tb")
        expected = {"train/loss", "train/discrepancy", "val/acc", "test/acc", "best_val/acc",
                    "final/best_epoch"}
        for m in MODALITIES:
            expected |= {f"train/s_hat_{m}", f"train/s_{m}", f"train/quota_{m}",
                         f"val/acc_{m}", f"test/acc_{m}", f"test/probe_acc_{m}"}
        assert expected <= set(scalars), expected - set(scalars)
        steps = pd.read_parquet(run / "steps.parquet")
        loss = scalars["train/loss"]
        assert [s for s, _ in loss] == steps["step"].tolist()
        assert [v for _, v in loss] == pytest.approx(steps["loss"].tolist(), rel=1e-6)
        quota = [v for _, v in scalars["train/quota_visual"]]
        assert quota == steps["quota_visual"].astype(float).tolist()
        epochs = pd.read_parquet(run / "epochs.parquet")
        val = scalars["val/acc_visual"]  # per epoch, at the epoch's last step
        assert [s for s, _ in val] == epochs["step"].tolist()
        assert [v for _, v in val] == pytest.approx(epochs["val_acc_visual"].tolist(), rel=1e-6)
        row = results[results["key"] == run.name]
        for key in ("acc", "probe_acc_audio", "probe_acc_visual"):
            [(step, value)] = scalars[f"test/{key}"]
            assert step == steps["step"].max()
            assert value == pytest.approx(row[f"test_{key}"].item(), rel=1e-6)
    dus = read_scalars(out / "runs" / "mla__dus-h__s0" / "tb")
    assert len({v for _, v in dus["train/quota_visual"]}) > 1  # DUS moved the quotas


def test_any_numeric_step_column_and_ledger_key_becomes_a_tag(tmp_path):
    """Columns other engineers add (`updates_<m>`, a compute ledger) need no change here."""
    from mmbalance.runs import RunRecord, write_record

    steps = pa.table({"step": [1, 2, 3], "epoch": [0, 0, 1], "loss": [1.0, float("nan"), 0.5],
                      "updates_audio": [1, 2, 3], "note": ["a", "b", "c"]})
    epochs = pa.table({"epoch": [0, 1], "step": [2, 3], "val_acc": [0.4, 0.6]})
    metrics = {"best_epoch": 1, "val": {"acc": 0.6}, "test": {"acc": 0.55},
               "ledger": {"gpu_seconds": 12.5, "device": "cpu"}, "wall_seconds": 3.0}
    write_record(tmp_path, RunRecord({"sampler": "uniform"}, steps, epochs, metrics))
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["train/updates_audio"] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert scalars["train/loss"] == [(1, 1.0), (3, 0.5)]  # NaN left out, not drawn as a gap
    assert scalars["val/acc"] == [(2, pytest.approx(0.4)), (3, pytest.approx(0.6))]
    assert scalars["final/ledger/gpu_seconds"] == [(3, 12.5)]
    assert scalars["final/wall_seconds"] == [(3, 3.0)]
    assert "train/note" not in scalars and "final/ledger/device" not in scalars


def test_compare_logs_to_mlflow_and_reads_back(tmp_path):
    """The tiny comparison in an MLflow file store under OUT/mlruns, read with MlflowClient:
    a parent run, one child per run with its config, per-epoch metrics, final metrics and
    files."""
    mlflow = pytest.importorskip("mlflow")  # setup.sh installs the [tracking] extra
    from mlflow.tracking import MlflowClient

    t0 = time.perf_counter()
    out = tmp_path / "cmp"
    # a sampler with options: ':', '=' and ',' are not allowed in MLflow names
    results = _compare(out, "--tracking", "mlflow",
                       grid=("joint/uniform", "mla/dus-h:strength=2,n_min=4"))
    client = MlflowClient((out / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("mmbalance-compare")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "cmp"
    assert json.loads(parent.data.params["grid"]) == [
        ["joint", "uniform"], ["mla", "dus-h:strength=2,n_min=4"]]
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"compare.json", "results.parquet", "summary.md"} <= top and "runs" not in top
    assert parent.data.metrics["mla/dus-h_strength_2_n_min_4/test_acc_mean"] == \
        pytest.approx(results.loc[results["method"] == "mla", "test_acc"].item())

    children = {r.info.run_name: r for r in runs if r is not parent
                and r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == set(results["key"])
    for name, run in children.items():
        folder = out / "runs" / name
        config = json.loads((folder / "config.json").read_text())
        assert run.info.status == "FINISHED"
        assert run.data.params["sampler"] == config["sampler"]
        assert run.data.params["train.lr"] == str(config["train"]["lr"])
        assert run.data.tags["mmbalance.method"] == config["train"]["method"]
        row = results[results["key"] == name]
        assert run.data.metrics["test/acc"] == pytest.approx(row["test_acc"].item())
        assert run.data.metrics["test/probe_acc_visual"] == pytest.approx(
            row["test_probe_acc_visual"].item())
        assert run.data.metrics["train_seconds"] == pytest.approx(row["train_seconds"].item())
        history = client.get_metric_history(run.info.run_id, "val_acc")
        epochs = pd.read_parquet(folder / "epochs.parquet")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (e, pytest.approx(v)) for e, v in zip(epochs["epoch"], epochs["val_acc"])]
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "steps.parquet", "epochs.parquet", "metrics.json",
                "model.pt"} <= files
        assert "tb" not in files  # a file store is local: the events are not copied
    # so TensorBoard on the folder still shows each run once
    assert len(list(out.rglob("events.out.tfevents.*"))) == 2
    assert mlflow is not None and time.perf_counter() - t0 < 30


def test_train_logs_to_a_given_store(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out, store = tmp_path / "run", tmp_path / "store"
    assert main(["train", "--data", TINY, "--epochs", "1", "--batch-size", "40", "--out",
                 str(out), "--no-progress", "--tracking", "mlflow", "--tracking-uri",
                 str(store)]) == 0
    assert not (out / "mlruns").exists() and (out / "tb").is_dir()
    client = MlflowClient(store.resolve().as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("mmbalance-train").experiment_id])
    metrics = json.loads((out / "metrics.json").read_text())
    assert run.info.run_name == "run" and run.data.params["train.epochs"] == "1"
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test"]["acc"])
    assert run.data.metrics["best_epoch"] == metrics["best_epoch"]


def test_an_unreachable_mlflow_server_is_one_line_after_the_run_is_written(
        tmp_path, monkeypatch, refused):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow retries for minutes
    out = tmp_path / "run"
    line = refused(["train", "--data", TINY, "--epochs", "1", "--out", out, "--no-progress",
                    "--tracking", "mlflow", "--tracking-uri", "http://127.0.0.1:9"],
                   "MLflow at http://127.0.0.1:9: logging failed")
    assert f"{out} itself is complete" in line
    assert (out / "metrics.json").is_file() and (out / "tb").is_dir()


def test_tracking_without_mlflow_is_one_line_naming_the_extra(tmp_path, monkeypatch, refused):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    out = tmp_path / "o"
    for command in (["train"], ["compare"]):
        line = refused([*command, "--tracking", "mlflow", "--out", out], "not installed", out)
        assert "pip install 'mmbalance[tracking]'" in line
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text("name: s\nbase: {data: synthetic}\nsearch_space: {train.lr: {grid: [0.01]}}"
                   "\ntracking: mlflow\n")
    refused(["sweep", cfg, "--out", out], "mmbalance[tracking]", out)
    refused(["train", "--tracking-uri", "http://localhost:5000", "--out", out],
            "--tracking mlflow", out)


def test_yaml_tracking_keys_are_checked():
    from mmbalance.errors import ConfigError
    from mmbalance.tune.sweep import SweepConfig

    base = {"base": {"data": "synthetic"}, "search_space": {"train.lr": {"grid": [0.01]}}}
    assert SweepConfig.from_dict({**base, "tracking": "mlflow"}).tracking == "mlflow"
    with pytest.raises(ConfigError, match="allowed"):
        SweepConfig.from_dict({**base, "tracking": "wandb"})
    with pytest.raises(ConfigError, match="goes with tracking: mlflow"):
        SweepConfig.from_dict({**base, "tracking_uri": "http://localhost:5000"})


@pytest.mark.ray
def test_sweep_trials_log_through_tunes_callbacks(ray_session, tmp_path):
    """TensorBoard events in every trial folder (TBXLoggerCallback) and, with `tracking:
    mlflow`, one MLflow run per trial (MLflowLoggerCallback) with its config and results."""
    pytest.importorskip("mlflow")
    import yaml
    from mlflow.tracking import MlflowClient

    cfg = {"name": "tracked", "base": {"data": TINY, "method": "joint", "sampler": "uniform",
                                       "train": {"epochs": 2, "batch_size": 40}},
           "search_space": {"train.lr": {"grid": [0.01, 0.03]}}, "max_concurrent": 2,
           "tracking": "mlflow"}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 0
    trials = pd.read_parquet(out / "trials.parquet")
    trial_dirs = [p for p in (out / "tracked").iterdir() if p.is_dir()]
    assert len(trial_dirs) == 2
    for trial in trial_dirs:
        scalars = read_scalars(trial)
        assert [s for s, _ in scalars["ray/tune/val_acc"]] == [1, 2]
    client = MlflowClient((out / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert sorted(r.data.params["train/lr"] for r in runs) == ["0.01", "0.03"]
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [1, 2]
        mine = trials[[run.info.run_name.endswith(t) for t in trials["trial"]]]  # plain_trial_<id>
        assert sorted(m.value for m in history) == pytest.approx(sorted(mine["val_acc"]))
        assert run.info.status == "FINISHED"
        assert not client.list_artifacts(run.info.run_id)  # a file store: folders stay put
    assert len(list(out.rglob("events.out.tfevents.*"))) == 2  # each trial once


@pytest.mark.ray
def test_learn_logs_each_iteration_and_a_resume_continues_the_same_run(ray_session, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    root = Path(__file__).resolve().parents[1]
    sets = [f"env_config.data={TINY}", "env_config.train.epochs=2",
            "env_config.train.batch_size=40", "env_config.steps_per_action=2",
            "training.train_batch_size_per_learner=32", "training.minibatch_size=16",
            "training.num_epochs=1"]
    out = tmp_path / "learn"
    args = ["learn", str(root / "tune_configs" / "dus_ppo.yaml"), "--out", str(out),
            "--no-progress", "--tracking", "mlflow", "--iterations", "1"]  # not --set: issue 20
    assert main([*args, *(a for s in sets for a in ("--set", s))]) == 0
    assert main(["learn", "--resume", str(out), "--iterations", "2", "--no-progress"]) == 0
    client = MlflowClient((out / "mlruns").resolve().as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("mmbalance-learn").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["algorithm"] == "PPO"
    progress = pd.read_parquet(out / "progress.parquet")
    history = client.get_metric_history(run.info.run_id, "env_steps")
    assert sorted((m.step, m.value) for m in history) == list(
        zip(progress["iteration"], progress["env_steps"]))
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"learn_config.yaml", "progress.parquet", "policy"} <= files
    assert "checkpoints" not in files and "tb" not in files
