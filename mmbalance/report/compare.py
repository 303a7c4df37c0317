"""Plots of a comparison folder (it holds `compare.json`): `accuracy_by_method.png`,
`discrepancy_curves.png`, `weak_modality.png` and, when the runs have probe accuracies,
`accuracy_vs_weak_probe.png` (`tradeoff.py`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmbalance.errors import UserError
from mmbalance.report import common


def compare_report(folder: Path) -> list[Path]:
    """All plots of one comparison folder."""
    meta_path, results_path = folder / "compare.json", folder / "results.parquet"
    meta = common.read_json(meta_path)
    results = common.read_table(results_path)
    if "diverged" in results:  # a diverged run has no result to plot (compare.py)
        results = results[~results["diverged"].astype(bool)].reset_index(drop=True)
    modalities = common.get(meta, meta_path, "modalities", list, [])
    if not all(isinstance(m, str) for m in modalities):
        raise UserError(f"{meta_path}: 'modalities' must be a list of names, got {modalities!r}")
    if not modalities:
        modalities = [c[len("test_acc_"):] for c in results.columns if c.startswith("test_acc_")]
    if len(results):
        common.require_columns(results, results_path, ["method", "sampler"], numeric=False)
        common.require_columns(results, results_path, [
            c for c in ("test_acc", "seed", *(f"test_acc_{m}" for m in modalities))
            if c in results])
    grid = common.get(meta, meta_path, "grid", list, [])
    if not all(isinstance(g, list) and len(g) == 2 and all(isinstance(x, str) for x in g)
               for g in grid):
        raise UserError(f"{meta_path}: 'grid' must be a list of [method, sampler] pairs")
    best = common.bayes_values(meta, meta_path)
    data = common.data_label(common.get(meta, meta_path, "data", str, "?"))
    chance = meta.get("num_classes")
    plots = common.plots_folder(folder)

    written = []
    if len(results) and "test_acc" in results:
        written.append(plot_accuracy_by_method(results, modalities, best, data,
                                               plots / "accuracy_by_method.png", chance))
    order = [tuple(g) for g in grid]
    if {"method", "sampler"} <= set(results.columns):
        order += list(zip(results["method"], results["sampler"]))
    curves = _discrepancy_by_group(folder / "runs", order)
    if curves:
        written.append(plot_discrepancy_curves(curves, data, plots / "discrepancy_curves.png"))
    cols = [f"test_acc_{m}" for m in modalities]
    if len(results) and cols and all(c in results for c in cols):
        written.append(plot_weak_modality(results, modalities, data,
                                          plots / "weak_modality.png", chance))
    from mmbalance.report import tradeoff

    if tradeoff.has_probes(results, modalities):  # probes off: nothing to put on its x axis
        written.append(tradeoff.plot_accuracy_vs_weak_probe(
            results, modalities, data, plots / tradeoff.FIGURE, chance))
    from mmbalance.report import shares

    curves = shares.share_curves(folder, results, modalities)
    if curves:
        written.append(shares.plot_quota_shares(curves, modalities, data,
                                                plots / shares.FIGURE))
    return written


def _groups(results: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """Rows per (method, sampler), in first-seen order."""
    return list(results.groupby(["method", "sampler"], sort=False))


def _label(method: str, sampler: str) -> str:
    return f"{method}\n{sampler}"


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def plot_accuracy_by_method(
    results: pd.DataFrame, modalities: list[str], best: dict, data: str, out: Path,
    num_classes: int | None = None,
) -> Path:
    """Grouped bars: mean test accuracy (multimodal and per modality) ± std over seeds."""
    groups = _groups(results)
    series = [("test_acc", "multimodal", common.MULTIMODAL_COLOR)]
    series += [(f"test_acc_{m}", m, common.modality_color(i)) for i, m in enumerate(modalities)
               if f"test_acc_{m}" in results]
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(groups) + 3), 4.8))
    for j, (col, label, color) in enumerate(series):
        means = [g[col].mean() for _, g in groups]
        stds = [_std(g[col]) for _, g in groups]
        ax.bar(x + (j - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
               color=color, alpha=0.85 if color != common.MULTIMODAL_COLOR else 0.7, label=label)
    common.bayes_lines(ax, best, modalities)
    common.chance_line(ax, num_classes)
    seeds = results["seed"].nunique() if "seed" in results else 1
    ax.set_xticks(x, [_label(*key) for key, _ in groups], fontsize=8)
    ax.set(title=f"Test accuracy by method — {data} (mean ± std over {seeds} seeds)",
           xlabel="method / sampler", ylabel="test accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return common.save(fig, out)


def _run_group(run_dir: Path) -> tuple[str, str] | None:
    """(method, sampler) of a run folder: from its config, else from its `<m>__<s>__s<n>` name."""
    path = run_dir / "config.json"
    config = common.read_json(path)
    method = common.get(config, path, "train", dict, {}).get("method")
    sampler = common.get(config, path, "sampler", str, None)
    if isinstance(method, str) and method and sampler:
        return method, sampler
    parts = run_dir.name.split("__")
    return (parts[0], parts[1]) if len(parts) == 3 else None


def _discrepancy_by_group(
    runs: Path, order: list[tuple[str, str]]
) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (method, sampler), in `order` then by name: mean and std of D per epoch over seeds."""
    frames: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for run_dir in sorted(runs.glob("*/")) if runs.is_dir() else []:
        epochs = common.read_table(run_dir / "epochs.parquet")
        group = _run_group(run_dir)
        if group is None or "discrepancy" not in epochs or "epoch" not in epochs:
            continue
        common.require_columns(epochs, run_dir / "epochs.parquet", ["epoch", "discrepancy"])
        frames.setdefault(group, []).append(epochs[["epoch", "discrepancy"]])
    rank = {key: i for i, key in reversed(list(enumerate(order)))}
    keys = sorted(frames, key=lambda k: (rank.get(k, len(rank)), k))
    return {
        key: pd.concat(frames[key]).groupby("epoch")["discrepancy"].agg(["mean", "std", "count"])
        for key in keys
    }


def plot_discrepancy_curves(
    curves: dict[tuple[str, str], pd.DataFrame], data: str, out: Path
) -> Path:
    """Mean discrepancy D per epoch for each (method, sampler), shaded ± std over seeds."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    epochs = sorted({e for c in curves.values() for e in c.index})
    series = []
    for i, ((method, sampler), c) in enumerate(curves.items()):
        n = int(c["count"].max())
        std = c["std"].fillna(0.0)
        ax.fill_between(c.index, c["mean"] - std, c["mean"] + std,
                        color=common.modality_color(i), alpha=0.12)
        series.append((f"{method} / {sampler} ({n} seeds)",
                       c["mean"].reindex(epochs).to_numpy(), common.modality_color(i), 1.8))
    common.curves(ax, np.asarray(epochs), series)
    common.integer_x(ax, epochs)
    ax.set(title=f"Discrepancy D over training — {data}", xlabel="epoch",
           ylabel="D (mean over seeds)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return common.save(fig, out)


def plot_weak_modality(
    results: pd.DataFrame, modalities: list[str], data: str, out: Path,
    num_classes: int | None = None,
) -> Path:
    """Per (method, sampler): test accuracy of its weakest modality, seeds as dots, mean as bar."""
    groups = _groups(results)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(groups) + 2), 4.5))
    labels, weakest = [], set()
    for x, ((method, sampler), g) in enumerate(groups):
        means = {m: g[f"test_acc_{m}"].mean() for m in modalities}
        weak = min(means, key=means.get)
        weakest.add(weak)
        color = common.modality_color(modalities.index(weak))
        values = g[f"test_acc_{weak}"].to_numpy(dtype=float)
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(x + jitter, values, color=color, alpha=0.6, s=22, zorder=3)
        ax.hlines(means[weak], x - 0.3, x + 0.3, color=color, linewidth=2.5, zorder=4)
        ax.annotate(f"{means[weak]:.3f}", (x + 0.32, means[weak]), fontsize=7, va="center")
        labels.append(f"{_label(method, sampler)}\n[{weak}]")
    handles = [plt.Line2D([], [], color=common.modality_color(i), marker="o", linestyle="", label=m)
               for i, m in enumerate(modalities) if m in weakest]
    handles.append(plt.Line2D([], [], color="gray", linewidth=2.5, label="mean over seeds"))
    chance = common.chance_line(ax, num_classes)
    if chance is not None:
        handles.append(chance)
    ax.set_xticks(range(len(groups)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set(title=f"Weakest modality's test accuracy — {data}",
           xlabel="method / sampler [weakest modality]", ylabel="test accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=handles, fontsize=8)
    return common.save(fig, out)
