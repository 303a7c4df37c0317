"""Report: which PNGs a run or comparison folder gives, and that they are real images."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmbalance.errors import UserError
from mmbalance.report import discover_modalities, make_report
from mmbalance.report.run import quotas_vary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCHS = 8
STEPS_PER_EPOCH = 12
BATCH = 32
RUN_PLOTS = {"accuracy.png", "status.png", "discrepancy.png"}
COMPARE_PLOTS = {"accuracy_by_method.png", "discrepancy_curves.png", "weak_modality.png"}


def _quotas(kind: str, modalities: list[str], t: int) -> dict[str, int]:
    """Samples per modality at step t: DUS gives the weak (last) modality a growing share."""
    if kind != "dus":
        return {m: BATCH for m in modalities}
    weak = min(2 * BATCH - 8, BATCH + t // 4)
    rest = (2 * BATCH * (len(modalities) - 1) - weak) // (len(modalities) - 1)
    return {m: (weak if m == modalities[-1] else rest) for m in modalities}


def _write_run(
    folder: Path,
    method: str,
    sampler: str,
    modalities: list[str],
    kind: str = "uniform",
    seed: int = 0,
    best: dict | None = None,
) -> Path:
    """A run folder with fake but plausible histories: modality i learns slower than i-1."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    n = EPOCHS * STEPS_PER_EPOCH
    t = np.arange(1, n + 1)
    steps: dict[str, object] = {"step": t, "epoch": (t - 1) // STEPS_PER_EPOCH,
                                "loss": 2.0 * np.exp(-t / 40) + 0.1 * rng.random(n)}
    s_hat = {}
    for i, m in enumerate(modalities):
        target = 0.9 - 0.2 * i + {"dus": 0.15, "bss": 0.08}.get(kind, 0.0) * (i > 0)
        s = target * (1 - np.exp(-t / (15 + 10 * i))) + 0.08 * rng.standard_normal(n)
        s_hat[m] = np.cumsum(s) / t
        steps[f"quota_{m}"] = np.array([_quotas(kind, modalities, k)[m] for k in t])
        steps[f"s_{m}"] = s
        steps[f"s_hat_{m}"] = s_hat[m]
        steps[f"loss_{m}"] = -np.log(np.clip(s, 0.05, 1))
    stacked = np.stack(list(s_hat.values()))
    steps["discrepancy"] = stacked.max(0) - stacked.min(0)
    pq.write_table(pa.table(steps), folder / "steps.parquet")

    last = np.arange(1, EPOCHS + 1) * STEPS_PER_EPOCH - 1
    e = np.arange(EPOCHS)
    epochs: dict[str, object] = {"epoch": e, "step": last + 1, "seconds": 0.5 + 0 * e,
                                 "lr": 1e-3 + 0 * e}
    for key in ("acc", "f1", "map"):
        epochs[f"val_{key}"] = 0.95 - 0.5 * np.exp(-e / 2) - 0.02 * rng.random(EPOCHS)
    for i, m in enumerate(modalities):
        boost = 0.08 * i if kind in ("dus", "bss") else 0.0  # rebalancing helps the weak
        epochs[f"val_acc_{m}"] = ((0.85 - 0.15 * i + boost) - 0.4 * np.exp(-e / (2 + i))
                                  + 0.02 * rng.standard_normal(EPOCHS))
    epochs["discrepancy"] = steps["discrepancy"][last]
    for m in modalities:
        epochs[f"s_hat_{m}"] = s_hat[m][last]
    if kind == "bss":
        epochs["sampler_subset_size"] = np.minimum(100 + 60 * e, 400)
        epochs["sampler_pacing"] = np.minimum(0.25 + 0.15 * e, 1.0)
    if kind == "bss-constant":
        epochs["sampler_subset_size"] = np.full(EPOCHS, 400)
    pq.write_table(pa.table(epochs), folder / "epochs.parquet")

    config = {"data": "synthetic", "sampler": sampler, "sampler_config": {},
              "train": {"method": method, "epochs": EPOCHS, "seed": seed},
              "best_accuracy": best or {}}
    (folder / "config.json").write_text(json.dumps(config))
    test = {"acc": float(epochs["val_acc"][-1]), "f1": 0.8, "map": 0.85}
    test.update({f"acc_{m}": float(epochs[f"val_acc_{m}"][-1]) for m in modalities})
    (folder / "metrics.json").write_text(json.dumps({"best_epoch": EPOCHS - 1, "val": test,
                                                     "test": test}))
    (folder / "model.pt").write_bytes(b"")
    return folder


def _check_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = plt.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300, image.shape
    assert image[..., :3].std() > 0.01, f"{path} looks blank"


def _names(paths: list[Path]) -> set[str]:
    return {p.name for p in paths}


def _check_written(folder: Path, paths: list[Path], expected: set[str]) -> None:
    assert _names(paths) == expected
    assert {p.name for p in (folder / "plots").iterdir()} == expected
    for p in paths:
        assert p.parent == folder / "plots"
        _check_png(p)


# ------------------------------------------------------------------------- run folders
def test_dus_run_has_quotas_plot(tmp_path: Path) -> None:
    best = {"audio": 0.93, "visual": 0.71, "all": 0.97}
    run = _write_run(tmp_path / "dus", "mla", "dus-h", ["audio", "visual"], kind="dus",
                     best=best)
    paths = make_report(run)
    _check_written(run, paths, RUN_PLOTS | {"quotas.png"})


def test_bss_run_has_subset_plot_but_no_quotas(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "bss", "joint", "bss-h", ["audio", "visual"], kind="bss")
    paths = make_report(str(run))  # a str path works too
    _check_written(run, paths, RUN_PLOTS | {"subset.png"})


def test_constant_subset_gives_no_subset_plot(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "bssl", "joint", "bss-l", ["a", "b"], kind="bss-constant")
    _check_written(run, make_report(run), RUN_PLOTS)


def test_uniform_run_three_modalities(tmp_path: Path) -> None:
    modalities = ["audio", "visual", "text"]
    run = _write_run(tmp_path / "uni", "joint", "uniform", modalities,
                     best={m: 0.8 for m in modalities})
    steps = pq.read_table(run / "steps.parquet")
    assert discover_modalities(steps.column_names) == modalities
    assert not quotas_vary(steps.to_pandas(), modalities)
    _check_written(run, make_report(run), RUN_PLOTS)


def test_report_twice_overwrites(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "dus", "mla", "dus-h", ["x", "y", "z"], kind="dus")
    first = make_report(run)
    assert quotas_vary(pq.read_table(run / "steps.parquet").to_pandas(), ["x", "y", "z"])
    assert _names(make_report(run)) == _names(first) == RUN_PLOTS | {"quotas.png"}


# ------------------------------------------------------------------ comparison folders
GRID = [("joint", "uniform", "uniform"), ("joint", "bss-h", "bss"), ("mla", "dus-h", "dus")]


def _write_comparison(folder: Path, modalities: list[str], seeds: list[int], best: dict) -> Path:
    folder.mkdir()
    rows = []
    for method, sampler, kind in GRID:
        for seed in seeds:
            key = f"{method}__{sampler}__s{seed}"
            run = _write_run(folder / "runs" / key, method, sampler, modalities, kind, seed,
                             best)
            metrics = json.loads((run / "metrics.json").read_text())
            epochs = pq.read_table(run / "epochs.parquet").to_pandas()
            row = {"method": method, "sampler": sampler, "seed": seed, "best_epoch": EPOCHS - 1,
                   "train_seconds": 4.0,
                   "final_discrepancy": float(epochs["discrepancy"].iloc[-1])}
            row.update({f"test_{k}": v for k, v in metrics["test"].items()})
            row.update({f"val_{k}": v for k, v in metrics["val"].items()})
            rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows), folder / "results.parquet")
    meta = {"data": "synthetic", "seeds": seeds, "grid": [[m, s] for m, s, _ in GRID],
            "modalities": modalities, "best_accuracy": best}
    (folder / "compare.json").write_text(json.dumps(meta))
    (folder / "summary.md").write_text("| method |\n")
    return folder


def test_comparison_plots(tmp_path: Path) -> None:
    best = {"audio": 0.9, "visual": 0.7, "text": 0.6, "all": 0.95}
    folder = _write_comparison(tmp_path / "cmp", ["audio", "visual", "text"], [0, 1, 2], best)
    paths = make_report(folder)
    _check_written(folder, paths, COMPARE_PLOTS)
    # The run folders are left alone: only the comparison's own plots/ is written.
    assert not any((folder / "runs").glob("*/plots"))


def test_comparison_one_seed_no_bayes(tmp_path: Path) -> None:
    folder = _write_comparison(tmp_path / "cmp", ["a", "b"], [7], {})
    _check_written(folder, make_report(folder), COMPARE_PLOTS)


# ----------------------------------------------------------------------------- errors
def test_neither_folder_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError) as info:
        make_report(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "steps.parquet" in message and "compare.json" in message


def test_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(UserError, match="no such folder") as info:
        make_report(missing)
    assert str(missing) in str(info.value)
    assert not missing.exists()


def test_learning_curve_draws_progress_and_fixed_policy_levels():
    import math

    import pandas as pd

    from mmbalance.report.learn import learning_curve_figure

    progress = pd.DataFrame({"iteration": [1, 2, 3], "env_steps": [32.0, 64.0, 96.0],
                             "episode_return_mean": [1.0, 2.0, 1.5],
                             "discrepancy": [math.nan] * 3, "final_val_acc": [0.5, 0.6, 0.7]})
    fig = learning_curve_figure(progress, "t", {"dus-h": {"return": 1.8, "final_D": 0.1}})
    ret, disc, acc = fig.axes
    curve, level = ret.get_lines()
    assert list(curve.get_xdata()) == [32.0, 64.0, 96.0]
    assert list(curve.get_ydata()) == [1.0, 2.0, 1.5]
    assert list(level.get_ydata()) == [1.8, 1.8] and "dus-h" in level.get_label()
    # no episode ended yet: said, not drawn as an empty curve; the level is still shown
    assert [t.get_text() for t in disc.texts] == ["no episode has ended yet"]
    assert len(disc.get_lines()) == 1
    assert len(acc.get_lines()) == 1  # no final_val_acc level was given
    plt.close(fig)


# ---------------------------------------------------------------- plots a person reads
@pytest.fixture
def figures(monkeypatch):
    """The figures the report draws, kept open for inspection instead of saved."""
    from mmbalance.report import common

    kept: list = []
    monkeypatch.setattr(common, "save", lambda fig, out: kept.append(fig) or out)
    yield kept
    for fig in kept:
        plt.close(fig)


def _integer_ticks(ax) -> bool:
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


def test_one_epoch_run_is_a_visible_point_with_integer_ticks(tmp_path, figures):
    import pandas as pd

    from mmbalance.report.run import plot_discrepancy, plot_run_accuracy

    epochs = pd.DataFrame({"epoch": [0], "val_acc": [0.41], "val_acc_audio": [0.38],
                           "val_acc_visual": [0.22]})
    plot_run_accuracy(epochs, ["audio", "visual"], {}, "t", tmp_path / "a.png", 6)
    ax = figures[-1].axes[0]
    assert ax.get_xlim() == (-0.5, 0.5) and _integer_ticks(ax)  # not -0.04 .. 0.04
    assert all(line.get_markersize() >= 7 for line in ax.get_lines()[:3])
    steps = pd.DataFrame({"step": np.arange(1, 6), "discrepancy": np.linspace(0.1, 0.3, 5)})
    plot_discrepancy(steps, "t", tmp_path / "d.png")
    assert _integer_ticks(figures[-1].axes[0])  # 5 steps: no 1.5, 2.5 ticks


def test_identical_curves_stay_visible_and_say_so(tmp_path, figures):
    import pandas as pd

    from mmbalance.report.compare import plot_discrepancy_curves
    from mmbalance.report.run import plot_run_accuracy

    acc = [0.3, 0.5, 0.6]
    epochs = pd.DataFrame({"epoch": [0, 1, 2], "val_acc": acc, "val_acc_audio": acc,
                           "val_acc_visual": [0.2, 0.25, 0.3]})
    plot_run_accuracy(epochs, ["audio", "visual"], {}, "t", tmp_path / "a.png")
    lines = {ln.get_label(): ln for ln in figures[-1].axes[0].get_lines()}
    assert set(lines) == {"multimodal", "audio (= multimodal)", "visual"}
    same = lines["audio (= multimodal)"]
    assert same.get_linestyle() == "--" and same.get_markerfacecolor() == "none"
    assert lines["visual"].get_linestyle() == "-"
    curve = pd.DataFrame({"mean": [0.2, 0.1], "std": [0.0, 0.0], "count": [2, 2]},
                         index=[0, 1])
    plot_discrepancy_curves({("joint", "uniform"): curve, ("joint", "bss-l"): curve.copy()},
                            "synthetic", tmp_path / "c.png")
    labels = [ln.get_label() for ln in figures[-1].axes[0].get_lines()]
    assert labels == ["joint / uniform (2 seeds)",
                      "joint / bss-l (2 seeds) (= joint / uniform (2 seeds))"]


def test_titles_name_the_data_and_accuracy_plots_show_chance(tmp_path, figures):
    from mmbalance.report import data_label

    run = _write_run(tmp_path / "run", "mla", "dus-h", ["audio", "visual"], kind="dus")
    config = json.loads((run / "config.json").read_text())
    config.update(data="cremad:/data/prepared/cremad,pretrained_audio=/w/r18.pth",
                  num_classes=6)
    (run / "config.json").write_text(json.dumps(config))
    make_report(run)
    titles = [fig.axes[0].get_title() for fig in figures]
    assert all("cremad:…/cremad (+1 options)" in t for t in titles), titles
    assert data_label("synthetic") == "synthetic"
    accuracy = figures[0].axes[0]
    chance = [ln for ln in accuracy.get_lines() if ln.get_label() == "chance (1/6)"]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(1 / 6)

    figures.clear()
    folder = _write_comparison(tmp_path / "cmp", ["a", "b"], [0, 1], {})
    meta = json.loads((folder / "compare.json").read_text())
    (folder / "compare.json").write_text(json.dumps({**meta, "num_classes": 4}))
    make_report(folder)
    by_method, _, weak = figures
    for fig in (by_method, weak):
        lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "chance (1/4)"]
        assert len(lines) == 1 and lines[0].get_ydata()[0] == pytest.approx(0.25)


# ------------------------------------------------- accuracy against the weak modality's probe
def _with_probes(folder: Path, alone: bool) -> pd.DataFrame:
    """The comparison's results with probe accuracies (and `alone:<m>` rows): under joint,
    audio's probe is the lowest below its alone probe while visual's is the lowest overall,
    so the two rules for the weak modality disagree."""
    results = pd.read_parquet(folder / "results.parquet")
    rng = np.random.default_rng(0)
    n = len(results)
    boost = results["sampler"].map({"uniform": 0.0, "bss-h": 0.05, "dus-h": 0.1}).to_numpy()
    results["test_probe_acc_a"] = 0.6 + boost + 0.01 * rng.standard_normal(n)
    results["test_probe_acc_b"] = 0.45 + boost + 0.01 * rng.standard_normal(n)
    if alone:
        rows = []
        for m, probe in (("a", 0.9), ("b", 0.5)):
            for seed in sorted(set(results["seed"])):
                rows.append({"method": f"alone:{m}", "sampler": "uniform", "seed": seed,
                             "test_acc": 0.3, f"test_probe_acc_{m}": probe + 0.01 * seed})
        results = pd.concat([results, pd.DataFrame(rows)], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(results, preserve_index=False),
                   folder / "results.parquet")
    return results


def test_accuracy_against_weak_probe_plots_what_results_hold(tmp_path, figures):
    from mmbalance.report.tradeoff import FIGURE, tradeoff_points, unimodal_references

    folder = _write_comparison(tmp_path / "cmp", ["a", "b"], [0, 1, 2], {})
    _with_probes(folder, alone=True)
    results = pd.read_parquet(folder / "results.parquet")  # what the report reads
    weak, points = tradeoff_points(results, ["a", "b"])
    assert weak == "a"  # furthest below its alone probe under joint, though b's is lower
    multi = results[~results["method"].str.startswith("alone:")]
    expected = multi.groupby(["method", "sampler"], sort=False).agg(
        acc_mean=("test_acc", "mean"), acc_std=("test_acc", "std"),
        probe_mean=("test_probe_acc_a", "mean"), probe_std=("test_probe_acc_a", "std"),
        seeds=("seed", "size")).reset_index()
    assert list(zip(points["method"], points["sampler"])) == [(m, s) for m, s, _ in GRID]
    for col in ("acc_mean", "acc_std", "probe_mean", "probe_std", "seeds"):
        assert points[col].tolist() == pytest.approx(expected[col].tolist()), col
    assert unimodal_references(results, ["a", "b"]) == pytest.approx({"a": 0.91, "b": 0.51})

    paths = make_report(folder)
    assert FIGURE in _names(paths)
    fig = figures[-1]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["joint", "mla"]
    drawn = []
    for ax in panels:
        for container in ax.containers:  # one error-bar point per sampler
            (x, y), = container.lines[0].get_xydata()
            drawn.append((ax.get_title(), x, y))
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert lines["a alone: its probe (x)"].get_xdata()[0] == pytest.approx(0.91)
        assert lines["a alone: its probe (y)"].get_ydata()[0] == pytest.approx(0.91)
        assert lines["b alone: its probe (y)"].get_ydata()[0] == pytest.approx(0.51)
    assert drawn == [(m, pytest.approx(x), pytest.approx(y)) for m, x, y in
                     zip(points["method"], points["probe_mean"], points["acc_mean"])]
    assert "a probe" in panels[0].get_xlabel()


def test_accuracy_against_weak_probe_without_references(tmp_path):
    from mmbalance.report.tradeoff import FIGURE, tradeoff_points

    folder = _write_comparison(tmp_path / "cmp", ["a", "b"], [0, 1], {})
    results = _with_probes(folder, alone=False)
    assert tradeoff_points(results, ["a", "b"])[0] == "b"  # the lowest mean probe
    paths = make_report(folder)
    _check_written(folder, paths, COMPARE_PLOTS | {FIGURE})
