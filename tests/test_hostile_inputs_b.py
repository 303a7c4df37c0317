"""Issue 20 (hardening, round two), part b, as a hostile user: nothing is written outside an
output folder, modality names cannot collide, a grid row cannot be given twice, Ctrl-C keeps
what finished, data too small to mean anything is refused, and every input that used to end in
a traceback is one stderr line with exit 2, before any folder is made.

Grouped by the issue's headings. Most cases run the CLI in this process (`refused`, from
conftest.py); one compare is stopped with a real SIGINT in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mmbalance.cli import main
from mmbalance.errors import UserError
from mmbalance.report import make_report

SMALL = "synthetic:n_train=120,n_val=60,n_test=60,bayes_samples=300"
FAST = ["--epochs", "1", "--batch-size", "32", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One real (tiny) training run folder; tests copy it before breaking it."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--data", SMALL, *FAST, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def good_parquet(tmp_path_factory) -> Path:
    from mmbalance.data.parquet import write_parquet
    from mmbalance.data.synthetic import SyntheticConfig, make_synthetic

    ds = make_synthetic(SyntheticConfig(n_train=120, n_val=60, n_test=60, bayes_samples=300))
    return write_parquet(ds, tmp_path_factory.mktemp("data") / "good.parquet")


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ------------------------------------------------------------- writes outside the output folder
def test_report_never_follows_a_plots_link_out_of_the_run_folder(run_dir, refused, tmp_path):
    run = _copy(run_dir, tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "accuracy.png").write_bytes(b"precious")
    (run / "plots").symlink_to(outside)
    line = refused(["report", run], "outside the folder")
    assert str(run / "plots") in line
    assert _files(outside) == {"accuracy.png": b"precious"}  # untouched, nothing added


def test_report_never_follows_a_plot_file_link_out_of_the_run_folder(run_dir, refused,
                                                                     tmp_path):
    run = _copy(run_dir, tmp_path / "run")
    (run / "plots").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (run / "plots" / "status.png").symlink_to(victim)
    refused(["report", run], "outside the folder")
    assert victim.read_text() == "keep me"
    # the plot made before the refused one stays inside the folder
    assert not (tmp_path / "accuracy.png").exists()


def test_every_run_folder_write_goes_through_the_containment_check(tmp_path):
    from mmbalance.runs import RunRecord, contained, write_json, write_record

    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    (out / "config.json").symlink_to(victim)
    record = RunRecord(config={"a": 1}, steps=pa.table({"step": [1]}),
                       epochs=pa.table({"epoch": [0]}), metrics={"m": 1},
                       model={"w": torch.zeros(2)})
    with pytest.raises(UserError, match="outside the folder"):
        write_record(out, record)
    with pytest.raises(UserError, match="outside the folder"):
        write_json(out / "config.json", {"b": 2}, out)
    assert victim.read_text() == "{}"
    # a temporary file planted as a link is refused too (it would be written through)
    (out / "config.json").unlink()
    (out / "config.json.tmp").symlink_to(victim)
    with pytest.raises(UserError, match="outside the folder"):
        write_json(out / "config.json", {"b": 2}, out)
    assert victim.read_text() == "{}"
    (out / "config.json.tmp").unlink()
    write_record(out, record)  # a plain folder is written as before
    assert json.loads((out / "config.json").read_text()) == {"a": 1}
    assert torch.load(out / "model.pt", weights_only=True)["w"].shape == (2,)
    assert contained(out / "plots" / "a.png", out) == out / "plots" / "a.png"


# ------------------------------------------------------------- name collisions
@pytest.mark.parametrize("names, bad", [
    ("audio/hat_audio", "hat_audio"),  # s_hat_audio would be both modalities' column
    ("audio/audio.v1", "audio.v1"),
    ("audio/", "''"),
    ("Audio/visual", "Audio"),
    ("all/visual", "all"),  # best_accuracy['all'] is the fused input's
])
def test_synthetic_modality_names_that_could_collide_are_refused(names, bad, refused, tmp_path):
    refused(["train", "--data", f"{SMALL},names={names}", *FAST, "--out", tmp_path / "o"],
            bad, tmp_path / "o")


@pytest.mark.parametrize("column", ["hat_audio", "audio.v1", "../x", ""])
def test_parquet_modality_columns_with_unsafe_names_are_refused(column, good_parquet, refused,
                                                                tmp_path):
    table = pq.read_table(good_parquet)
    renamed = table.rename_columns(["label", "split", "audio", column])
    path = tmp_path / "names.parquet"
    pq.write_table(renamed, path)
    line = refused(["train", "--data", f"parquet:{path}", *FAST, "--out", tmp_path / "o"],
                   f"modality name {column!r} is not allowed", tmp_path / "o")
    assert str(path) in line


def test_the_steps_table_keeps_one_series_per_modality(run_dir):
    """With safe names, every modality's ŝ column is its own, and the report finds exactly
    the dataset's modalities."""
    from mmbalance.report import discover_modalities

    steps = pd.read_parquet(run_dir / "steps.parquet")
    assert discover_modalities(list(steps.columns)) == ["audio", "visual"]


# ------------------------------------------------------------- duplicate grid rows
@pytest.mark.parametrize("grid, extra, needle", [
    (["joint/uniform", "joint/uniform"], [], "joint/uniform is given twice"),
    (["mla/dus-h:strength=2", "mla/dus-h:strength=2"], [], "given twice"),
    (["joint/uniform", "alone:audio/uniform"], ["--unimodal-reference"], "alone:audio"),
])
def test_a_grid_row_given_twice_is_refused_before_anything(grid, extra, needle, refused,
                                                           tmp_path):
    out = tmp_path / "cmp"
    refused(["compare", "--data", SMALL, "--seeds", "1", *FAST, "--parallel", "none",
             "--grid", *grid, *extra, "--out", out], needle, out)


# ------------------------------------------------------------- interrupted runs
def test_ctrl_c_in_compare_keeps_the_finished_runs_as_a_partial_table(monkeypatch, capsys,
                                                                      tmp_path):
    from mmbalance import compare

    real, calls = compare.run_one, []

    def stop_at_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(compare, "run_one", stop_at_the_fourth)
    out = tmp_path / "cmp"
    rc = main(["compare", "--data", SMALL, "--seeds", "2", *FAST, "--parallel", "none",
               "--grid", "joint/uniform", "joint/bss-h", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 130
    assert "partial results: 3 of 4 runs finished" in err and str(out) in err
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 3
    summary = pd.read_parquet(out / "summary.parquet")
    assert summary["seeds"].tolist() == [2, 1]
    assert (out / "summary.md").read_text().startswith("PARTIAL: interrupted after 3 of 4")
    assert len(list((out / "runs").iterdir())) == 3
    # the partial folder is a comparison folder like any other
    assert "accuracy_by_method.png" in {p.name for p in make_report(out)}


def test_a_real_sigint_during_compare_writes_the_partial_table(tmp_path):
    """The same with the signal a terminal sends: the compare subprocess gets SIGINT once
    its first run folder is written."""
    out = tmp_path / "cmp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmbalance.cli", "compare", "--data", SMALL, "--seeds", "2",
         "--epochs", "100", "--batch-size", "32", "--no-progress", "--parallel", "none",
         "--grid", "joint/uniform", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (out / "runs").is_dir() or not any((out / "runs").glob("*/model.pt")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)  # the row is kept right after its folder is written; the second
        # run takes seconds (100 epochs), so the signal lands in it
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode in (0, -signal.SIGINT):  # the second run finished before the signal
        pytest.skip("the comparison ended before SIGINT arrived")  # landed: nothing to stop
    assert proc.returncode == 130, err
    assert "partial results: 1 of 2 runs finished" in err, err
    assert len(pd.read_parquet(out / "results.parquet")) == 1
    assert (out / "summary.md").read_text().startswith("PARTIAL")


# ------------------------------------------------------------- tiny data
@pytest.mark.parametrize("data, needle", [
    ("synthetic:n_train=1", "holds only class"),
    ("synthetic:n_train=1,num_classes=2,seed=3", "holds only class"),
    ("digits:test_fraction=0.001", "too small to hold each of the 10 classes"),
    ("digits:val_fraction=0.001", "too small to hold each of the 10 classes"),
])
def test_data_too_small_to_split_or_to_hold_two_classes_is_refused(data, needle, refused,
                                                                   tmp_path):
    refused(["train", "--data", data, "--epochs", "1", "--no-progress", "--out", tmp_path / "o"],
            needle, tmp_path / "o")


def test_a_parquet_file_with_one_training_row_is_refused(good_parquet, refused, tmp_path):
    table = pq.read_table(good_parquet)
    split = table["split"].to_pylist()
    keep = [i for i, s in enumerate(split) if s != "train"] + [split.index("train")]
    path = tmp_path / "one.parquet"
    pq.write_table(table.take(keep), path)
    refused(["train", "--data", f"parquet:{path}", *FAST, "--out", tmp_path / "o"],
            "the training split holds only class", tmp_path / "o")


def _prepared(folder: Path, counts: dict[str, int], modalities=("audio", "visual")) -> Path:
    """A prepared folder as `mmbalance prepare` leaves it (writer.py), with tiny arrays."""
    rng = np.random.default_rng(0)
    for split, n in counts.items():
        (folder / split).mkdir(parents=True)
        np.save(folder / split / "labels.npy", (np.arange(n) % 3).astype(np.int64))
        for m in modalities:
            np.save(folder / split / f"{m}.npy", rng.standard_normal((n, 4)).astype(np.float32))
    meta = {"dataset": "cremad", "modalities": list(modalities), "num_classes": 3,
            "arrays": {m: {"shape": [4], "dtype": "float32"} for m in modalities},
            "encoders": {m: {"name": "mlp"} for m in modalities},
            "class_names": ["a", "b", "c"], "settings": {}, "counts": counts, "skipped": []}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def test_a_prepared_dataset_with_an_empty_split_is_refused(refused, tmp_path):
    data = _prepared(tmp_path / "prep", {"train": 30, "val": 0, "test": 9})
    refused(["train", "--data", f"cremad:{data}", "--no-dataset-defaults", *FAST, "--out",
             tmp_path / "o"], "split 'val' is empty", tmp_path / "o")


def test_a_prepared_dataset_names_no_file_outside_its_folder(refused, tmp_path):
    data = _prepared(tmp_path / "prep", {"train": 30, "val": 9, "test": 9})
    meta = json.loads((data / "meta.json").read_text())
    meta["modalities"] = ["audio", "../../x"]
    (data / "meta.json").write_text(json.dumps(meta))
    refused(["train", "--data", f"cremad:{data}", "--no-dataset-defaults", *FAST, "--out",
             tmp_path / "o"], "modality name '../../x' is not allowed", tmp_path / "o")


def test_a_batch_larger_than_the_training_split_is_refused(refused, tmp_path):
    refused(["train", "--data", SMALL, "--epochs", "1", "--batch-size", "500", "--out",
             tmp_path / "o"], "500 is larger than the 120 training samples", tmp_path / "o")
    refused(["compare", "--data", SMALL, "--seeds", "1", "--epochs", "1", "--batch-size", "500",
             "--parallel", "none", "--grid", "joint/uniform", "--out", tmp_path / "c"],
            "larger than the 120 training samples", tmp_path / "c")


# ------------------------------------------------------------- tracebacks -> one line, exit 2
def test_an_uint64_label_beyond_int64_is_one_line(good_parquet, refused, tmp_path):
    table = pq.read_table(good_parquet)
    labels = table["label"].to_numpy().astype(np.uint64)
    labels[5] = np.iinfo(np.uint64).max
    path = tmp_path / "u64.parquet"
    pq.write_table(table.set_column(0, "label", pa.array(labels, type=pa.uint64())), path)
    refused(["train", "--data", f"parquet:{path}", *FAST, "--out", tmp_path / "o"],
            "row 5: label 18446744073709551615 is not below", tmp_path / "o")


@pytest.mark.parametrize("args, needle", [
    (["train", "--seed", str(2**64)], "--seed"),
    (["train", "--seed", str(2**32)], "--seed"),
    (["train", "--set", f"seed={2**64}"], "'seed'"),
    (["train", "--data", f"synthetic:seed={2**64}"], "synthetic: 'seed'"),
    (["train", "--data", f"digits:seed={2**40}"], "digits: 'seed'"),
    (["compare", "--first-seed", str(2**32 - 1), "--seeds", "2"], "the last seed 4294967296"),
    (["train", "--set", "hidden=2000000000"], "'hidden' must be at most 8,192"),
    (["train", "--set", "feature_dim=100000"], "'feature_dim' must be at most"),
    (["train", "--batch-size", "10000000"], "'batch_size' must be at most"),
    (["train", "--epochs", "10000000000"], "'epochs' must be at most"),
    (["train", "--set", "eval_batch_size=100000000"], "'eval_batch_size' must be at most"),
    (["train", "--data", "synthetic:n_train=100000000,dim=64/64"], "at most 268,435,456"),
    (["train", "--data", "synthetic:num_classes=100000"], "'num_classes' must be at most"),
    (["train", "--method", "mla", "--sampler", "dus-rl:hidden=2000000000"], "'hidden' takes"),
])
def test_absurd_seeds_and_sizes_are_refused_before_allocating(args, needle, refused, tmp_path):
    refused([*args, "--out", tmp_path / "o"], needle, tmp_path / "o")


def test_overlong_paths_are_one_line(refused, tmp_path):
    long_name = tmp_path / ("x" * 300)
    refused(["train", "--data", SMALL, *FAST, "--out", long_name], "NAME_MAX")
    deep = tmp_path.joinpath(*["d" * 200] * 25)
    refused(["compare", "--data", SMALL, "--out", deep], "PATH_MAX")
    refused(["train", "--data", f"parquet:{long_name}", *FAST, "--out", tmp_path / "o"],
            "NAME_MAX", tmp_path / "o")
    refused(["train", "--data", f"parquet:{deep}", *FAST, "--out", tmp_path / "o"], "PATH_MAX",
            tmp_path / "o")
    refused(["report", long_name], "NAME_MAX")
    refused(["evaluate", deep], "PATH_MAX")
    refused(["train", "--method", "mla", "--sampler", f"learned:{long_name}", *FAST, "--out",
             tmp_path / "o"], "NAME_MAX", tmp_path / "o")
    refused(["prepare", "cremad", "--root", long_name, "--out", tmp_path / "p"], "--root",
            tmp_path / "p")
    refused(["prepare", "cremad", "--root", tmp_path, "--out", deep], "--out")


@pytest.fixture
def policy(tmp_path):
    from test_dus_rl import write_policy

    return write_policy(tmp_path / "policy")


def test_an_oversized_policy_json_is_refused_before_allocating(policy, refused, tmp_path):
    spec = json.loads((policy / "policy.json").read_text())
    obs = spec["observation_space"]["dim"]
    wide = 65536
    spec["layers"] = [{"kind": "linear", "in": obs, "out": wide}]
    spec["layers"] += [{"kind": "linear", "in": wide, "out": wide} for _ in range(30)]
    (policy / "policy.json").write_text(json.dumps(spec))
    out = tmp_path / "o"
    line = refused(["evaluate", policy, "--out", out], "more than 50,000,000 parameters", out)
    assert str(policy / "policy.json") in line
    refused(["train", "--method", "mla", "--sampler", f"learned:{policy}", *FAST, "--out", out],
            "more than 50,000,000 parameters", out)


def test_a_policy_pt_holding_a_list_is_one_line(policy, refused, tmp_path):
    tensors = torch.load(policy / "policy.pt", weights_only=True)
    torch.save(list(tensors.values()), policy / "policy.pt")
    out = tmp_path / "o"
    line = refused(["evaluate", policy, "--out", out], "got list", out)
    assert str(policy / "policy.pt") in line
    refused(["train", "--method", "mla", "--sampler", f"learned:{policy}", *FAST, "--out", out],
            "a mapping of parameter names to tensors", out)


def test_a_policy_json_with_absurd_train_settings_is_refused(policy, refused, tmp_path):
    spec = json.loads((policy / "policy.json").read_text())
    spec["env_config"]["train"] = {"epochs": 1, "hidden": 2_000_000_000}
    (policy / "policy.json").write_text(json.dumps(spec))
    refused(["evaluate", policy, "--out", tmp_path / "o"], "'hidden' must be at most",
            tmp_path / "o")


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    assert main(["compare", "--data", SMALL, "--seeds", "1", *FAST, "--parallel", "none",
                 "--grid", "joint/uniform", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name, content, needle", [
    ("results.parquet", b"not parquet at all", "not a readable Parquet table"),
    ("compare.json", b"{garbage", "not valid JSON"),
    ("compare.json", b"[1, 2]", "expected a JSON object"),
    ("compare.json", b'{"grid": 5}', "'grid' has the wrong type"),
    ("compare.json", b'{"best_accuracy": {"all": "high"}}', "'best_accuracy.all'"),
])
def test_report_on_a_broken_comparison_names_the_file(name, content, needle, compare_dir,
                                                      refused, tmp_path):
    folder = _copy(compare_dir, tmp_path / "cmp")
    (folder / name).write_bytes(content)
    line = refused(["report", folder], needle, folder / "plots")
    assert str(folder / name) in line


def test_report_on_a_results_table_with_text_accuracies_names_the_column(compare_dir, refused,
                                                                        tmp_path):
    folder = _copy(compare_dir, tmp_path / "cmp")
    results = pd.read_parquet(folder / "results.parquet")
    results["test_acc"] = "high"
    results.to_parquet(folder / "results.parquet")
    refused(["report", folder], "column 'test_acc' holds", folder / "plots")


@pytest.mark.parametrize("name, content, needle", [
    ("steps.parquet", b"PAR1 garbage", "not a readable Parquet table"),
    ("config.json", b"\xff\xfe not json", "not valid JSON"),
])
def test_report_on_broken_run_files_names_the_file(name, content, needle, run_dir, refused,
                                                   tmp_path):
    folder = _copy(run_dir, tmp_path / "run")
    (folder / name).write_bytes(content)
    line = refused(["report", folder], needle, folder / "plots")
    assert str(folder / name) in line


def test_report_on_a_steps_table_without_its_step_column(run_dir, refused, tmp_path):
    folder = _copy(run_dir, tmp_path / "run")
    pd.read_parquet(folder / "steps.parquet").drop(columns=["step"]).to_parquet(
        folder / "steps.parquet")
    refused(["report", folder], "column 'step' is missing", folder / "plots")


def test_report_with_plots_taken_by_a_file(run_dir, refused, tmp_path):
    folder = _copy(run_dir, tmp_path / "run")
    (folder / "plots").write_text("a file, not a folder")
    line = refused(["report", folder], "is a file, not a folder")
    assert str(folder / "plots") in line


def test_report_on_a_learn_folder_with_an_empty_progress_table(refused, tmp_path):
    folder = tmp_path / "learn"
    folder.mkdir()
    (folder / "learn_config.yaml").write_text("algorithm: PPO\nenv: quota\n")
    pq.write_table(pa.table({}), folder / "progress.parquet")
    line = refused(["report", folder], "holds no rows", folder / "plots")
    assert str(folder / "progress.parquet") in line
    (folder / "progress.parquet").write_bytes(b"")
    refused(["report", folder], "not a readable Parquet table", folder / "plots")


def test_report_on_a_sweep_folder_with_garbage_results(refused, tmp_path):
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "sweep.yaml").write_text("name: grid\nmetric: val_acc\n")
    (folder / "results.parquet").write_bytes(b"garbage")
    refused(["report", folder], "not a readable Parquet table", folder / "plots")
    (folder / "sweep.yaml").write_text("- a list\n")
    refused(["report", folder], "expected a YAML mapping", folder / "plots")
