"""Issue 12, data and training: Parquet files that would mislead (one class, absurd or sparse
labels, files of a folder that disagree) are refused in one line; user features are
standardised with training-split statistics by default; a run whose loss becomes non-finite
stops at once and is never reported as a result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mmbalance.cli import main
from mmbalance.data.parquet import load_parquet, write_parquet
from mmbalance.data.synthetic import SyntheticConfig, make_synthetic


@pytest.fixture(scope="module")
def raw_scale(tmp_path_factory) -> Path:
    """Synthetic features shifted and scaled per feature by 10^2..10^4, as many published
    feature sets come: raw scale that OGM-GE and MLA cannot train on at lr 0.01."""
    ds = make_synthetic(SyntheticConfig(n_train=300, n_val=100, n_test=100, bayes_samples=500))
    rng = np.random.default_rng(0)
    for m in ds.modalities:
        scale = 10 ** rng.uniform(2, 4, size=ds.splits["train"].x[m].shape[1])
        for split in ds.splits.values():
            split.x[m] = ((split.x[m] + 3) * scale).astype(np.float32)
    return write_parquet(ds, tmp_path_factory.mktemp("raw") / "raw.parquet")


def _table(path: Path) -> pa.Table:
    return pq.read_table(path)


def _write(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path


def _relabel(table: pa.Table, labels, metadata=True) -> pa.Table:
    out = table.set_column(0, "label", pa.array(labels, type=pa.int64()))
    return out if metadata else out.replace_schema_metadata(None)


# ------------------------------------------------------------- files that would mislead
def test_one_class_only_is_refused(raw_scale, refused, tmp_path):
    table = _table(raw_scale)
    path = _write(_relabel(table, np.zeros(len(table), dtype=np.int64)), tmp_path / "one.parquet")
    refused(["train", "--data", f"parquet:{path}", "--out", tmp_path / "o"],
            "column 'label': the training split holds only class 0", tmp_path / "o")


def test_an_absurd_label_is_refused_before_any_allocation(raw_scale, refused, tmp_path):
    table = _table(raw_scale)
    labels = table["label"].to_numpy().copy()
    labels[7] = 2**40
    path = _write(_relabel(table, labels, metadata=False), tmp_path / "big.parquet")
    refused(["train", "--data", f"parquet:{path}", "--out", tmp_path / "o"],
            "column 'label', row 7: label 1099511627776 is not below", tmp_path / "o")


def test_labels_that_skip_classes_are_refused_without_num_classes(raw_scale, refused, tmp_path):
    table = _table(raw_scale)
    labels = np.where(table["label"].to_numpy() == 1, 0, table["label"].to_numpy())
    path = _write(_relabel(table, labels, metadata=False), tmp_path / "sparse.parquet")
    refused(["train", "--data", f"parquet:{path}", "--out", tmp_path / "o"],
            "class 1 never occurs", tmp_path / "o")
    # with num_classes in the metadata an absent class is declared, not a mistake
    assert load_parquet(_write(_relabel(table, labels), tmp_path / "declared.parquet"))


@pytest.mark.parametrize("change, needle", [
    (lambda t: t.drop_columns(["visual"]), "column 'visual' is missing"),
    (lambda t: t.set_column(0, "label", pc.cast(t["label"], pa.string())),
     "column 'label' has type string"),
    (lambda t: t.append_column("depth", t["audio"]), "column 'depth' is not in"),
])
def test_files_of_a_folder_must_agree_on_their_schema(raw_scale, change, needle, refused,
                                                      tmp_path):
    table = _table(raw_scale)
    folder = tmp_path / "parts"
    folder.mkdir()
    _write(table.slice(0, 250), folder / "part-0.parquet")
    _write(change(table.slice(250)), folder / "part-1.parquet")
    line = refused(["train", "--data", f"parquet:{folder}", "--out", tmp_path / "o"], needle,
                   tmp_path / "o")
    assert "part-1.parquet" in line


# ------------------------------------------------------------- standardisation
def test_features_are_standardised_with_training_statistics_by_default(raw_scale, tmp_path):
    raw = load_parquet(raw_scale, standardize=False)
    std = load_parquet(raw_scale)
    stats = std.info["standardize"]
    for m in raw.modalities:
        train = raw.splits["train"].x[m].astype(np.float64)
        np.testing.assert_allclose(stats["mean"][m], train.mean(0), rtol=1e-9)
        np.testing.assert_allclose(stats["std"][m], train.std(0), rtol=1e-9)
        np.testing.assert_allclose(std.splits["train"].x[m].mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(std.splits["train"].x[m].std(0), 1, atol=1e-4)
        for split in ("val", "test"):  # the training split's statistics, not their own
            expected = (raw.splits[split].x[m] - train.mean(0)) / train.std(0)
            np.testing.assert_allclose(std.splits[split].x[m], expected, rtol=1e-4, atol=1e-4)
    assert raw.info["standardize"] is False

    out = tmp_path / "run"
    assert main(["train", "--data", f"parquet:{raw_scale}", "--method", "ogm-ge", "--epochs",
                 "1", "--no-progress", "--out", str(out)]) == 0
    recorded = json.loads((out / "config.json").read_text())["standardize"]
    assert recorded["split"] == "train"
    np.testing.assert_allclose(recorded["mean"]["audio"], stats["mean"]["audio"])
    assert json.loads((out / "metrics.json").read_text())["test"]["acc"] > 0


def test_evaluate_applies_the_same_standardisation(raw_scale, tmp_path):
    from test_dus_rl import write_policy

    policy = write_policy(tmp_path / "policy")
    spec = json.loads((policy / "policy.json").read_text())
    spec["env_config"]["data"] = f"parquet:{raw_scale}"
    (policy / "policy.json").write_text(json.dumps(spec))
    out = tmp_path / "eval"
    assert main(["evaluate", str(policy), "--seeds", "1", "--epochs", "1", "--parallel", "none",
                 "--no-progress", "--out", str(out)]) == 0
    recorded = json.loads((out / "compare.json").read_text())["standardize"]
    expected = load_parquet(raw_scale).info["standardize"]
    np.testing.assert_allclose(recorded["std"]["visual"], expected["std"]["visual"])
    results = pd.read_parquet(out / "results.parquet")
    assert not results["diverged"].any() and np.isfinite(results["test_acc"]).all()


# ------------------------------------------------------------- the divergence guard
def test_lr_inf_is_refused_and_a_huge_lr_stops_at_the_first_non_finite_loss(refused, tmp_path):
    small = "synthetic:n_train=200,n_val=100,n_test=100,bayes_samples=500"
    refused(["train", "--data", small, "--lr", "inf", "--out", tmp_path / "o"], "--lr",
            tmp_path / "o")
    out = tmp_path / "huge"
    line = refused(["train", "--data", small, "--lr", "1e30", "--epochs", "3", "--no-progress",
                    "--out", out], "diverged: the ")
    assert "epoch 0" in line and "learning rate" in line and "feature" in line
    assert not (out / "metrics.json").exists() and not (out / "model.pt").exists()
    steps = pd.read_parquet(out / "steps.parquet")  # the logs up to the last finite step
    assert np.isfinite(steps["loss"]).all() and f"step {len(steps) + 1}," in line


@pytest.mark.parametrize("method", ["ogm-ge", "mla"])
def test_raw_scale_features_diverge_without_standardisation(raw_scale, method, refused,
                                                           tmp_path):
    out = tmp_path / "run"
    line = refused(["train", "--data", f"parquet:{raw_scale},standardize=false", "--method",
                    method, "--epochs", "2", "--no-progress", "--out", out], "diverged")
    assert any(f"the {m} loss" in line for m in ("audio", "visual", "multimodal"))
    assert json.loads((out / "config.json").read_text())["standardize"] is False
    assert not (out / "metrics.json").exists()


def test_compare_flags_diverged_runs_and_never_averages_them(raw_scale, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--data", f"parquet:{raw_scale},standardize=false", "--grid",
                 "ogm-ge/uniform", "joint/uniform", "--seeds", "2", "--epochs", "1",
                 "--parallel", "none", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = pd.read_parquet(out / "results.parquet")
    summary = pd.read_parquet(out / "summary.parquet")
    diverged = results[results["diverged"]]
    assert len(diverged) >= 1 and diverged["test_acc"].isna().all()
    assert diverged["diverged_at"].str.contains("diverged: the").all()
    for _, row in summary.iterrows():
        runs = results[(results["method"] == row["method"]) & (results["sampler"] == "uniform")]
        ok = runs[~runs["diverged"]]
        assert row["seeds"] == len(ok) and row["diverged"] == len(runs) - len(ok)
        if len(ok):
            assert row["test_acc_mean"] == pytest.approx(ok["test_acc"].mean())
        md_line = next(ln for ln in (out / "summary.md").read_text().splitlines()
                       if ln.startswith(f"| {row['method']} |"))
        assert f"{row['diverged']} of {len(runs)} runs diverged" in md_line
    assert "runs diverged and are not averaged in" in printed
    assert main(["report", str(out)]) == 0
