"""The command line as a user meets it: outputs on disk, one-line errors with status 2."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmbalance.cli import main

SMALL = "synthetic:n_train=400,n_val=200,n_test=200,bayes_samples=2000"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mmbalance.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_train_writes_config_tables_metrics_model(tmp_path):
    out = tmp_path / "run"
    rc = main(["train", "--data", SMALL, "--method", "mla", "--sampler", "dus-h", "--epochs",
               "3", "--out", str(out), "--no-progress", "--set", "accumulation=ema"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["method"] == "mla" and cfg["train"]["accumulation"] == "ema"
    assert cfg["sampler_config"]["strength"] > 0
    steps = pd.read_parquet(out / "steps.parquet")
    for m in ("audio", "visual"):
        for prefix in ("quota", "s", "s_hat", "loss"):
            assert f"{prefix}_{m}" in steps.columns
    assert steps["step"].is_monotonic_increasing and steps["epoch"].max() == 2
    assert steps["quota_visual"].nunique() > 1  # DUS moved the quotas
    epochs = pd.read_parquet(out / "epochs.parquet")
    assert len(epochs) == 3 and "val_acc_visual" in epochs
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"acc", "f1", "map", "acc_audio", "acc_visual"}
    import torch

    state = torch.load(out / "model.pt", weights_only=True)
    assert any(k.startswith("encoders.visual") for k in state)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--method", "late"], "method"),
        (["train", "--sampler", "dus-h"], "paired"),
        (["train", "--sampler", "bss-h:lambda=2"], "lambda0"),
        (["train", "--data", "cifar"], "allowed"),
        (["train", "--data", "synthetic:dims=3"], "dim"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--set", "optimiser=adam"], "optimizer"),
        (["compare", "--grid", "joint/dus-h"], "mla"),
        (["compare", "--grid", "joint"], "METHOD/SAMPLER"),
        (["compare", "--data", SMALL, "--parallel", "none", "--address", "10.0.0.5:6379"],
         "--address"),
        (["report", "/nonexistent/folder"], "/nonexistent/folder"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, needle, tmp_path, capsys):
    full = [*args, "--out", str(tmp_path / "o")] if args[0] != "report" else args
    assert main(full) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert needle in lines[0]
    assert not (tmp_path / "o").exists()  # nothing written for a rejected command


def test_console_entry_point_exit_code():
    res = run_cli("train", "--sampler", "bss-h:lambda=2")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "lambda0" in res.stderr


def test_bad_parquet_names_column_and_row(tmp_path):
    path = tmp_path / "bad.parquet"
    vecs = [[0.1, 0.2]] * 5
    vecs_b = [[0.0, 1.0]] * 3 + [[float("nan"), 1.0]] + [[0.0, 1.0]]
    table = pa.table({"label": [0, 1, 0, 1, 0], "split": ["train", "val", "test", "train", "val"],
                      "audio": vecs, "text": vecs_b})
    pq.write_table(table, path)
    res = run_cli("train", "--data", f"parquet:{path}", "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert "'text'" in res.stderr and "row 3" in res.stderr


def test_existing_out_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("earlier run")
    res = run_cli("train", "--data", SMALL, "--epochs", "1", "--out", str(out))
    assert res.returncode == 2 and "already exists" in res.stderr
    assert (out / "keep.txt").read_text() == "earlier run"


def test_compare_sequential_table_and_report(tmp_path):
    out = tmp_path / "cmp"
    rc = main(["compare", "--data", SMALL, "--seeds", "2", "--epochs", "2", "--parallel", "none",
               "--grid", "joint/uniform", "mla/dus-h", "--out", str(out), "--no-progress"])
    assert rc == 0
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 4 and set(results["seed"]) == {0, 1}
    summary = pd.read_parquet(out / "summary.parquet")
    row = summary[summary["sampler"] == "dus-h"].iloc[0]
    accs = results[results["sampler"] == "dus-h"]["test_acc"]
    assert row["test_acc_mean"] == pytest.approx(accs.mean())
    assert row["test_acc_std"] == pytest.approx(accs.std(ddof=1))
    md = (out / "summary.md").read_text()
    assert "| mla | dus-h |" in md and "±" in md and "Bayes" in md
    assert len(list((out / "runs").iterdir())) == 4
    assert main(["report", str(out)]) == 0
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert "accuracy_by_method.png" in pngs
    run_dir = out / "runs" / "mla__dus-h__s0"
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "plots" / "quotas.png").exists()
    assert np.isfinite(results["final_discrepancy"]).all()
