"""Plots of a finished sweep folder: the metric against each swept hyperparameter, and every
trial's learning curve."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmbalance.report import common


def sweep_report(folder: Path) -> list[Path]:
    cfg_path, results_path = folder / "sweep.yaml", folder / "results.parquet"
    cfg = common.read_yaml(cfg_path)
    metric = common.get(cfg, cfg_path, "metric", str, "val_acc")
    name = str(cfg.get("name", ""))
    results = common.read_table(results_path, required=True)
    out = common.plots_folder(folder)
    paths = []
    params = [c for c in results.columns if c.startswith("config/")]
    if params and metric in results:
        common.require_columns(results, results_path, [metric])
        paths.append(plot_metric_vs_params(results, params, metric, name, out))
    trials = folder / "trials.parquet"
    if trials.is_file():
        history = common.read_table(trials)
        if metric in history and "training_iteration" in history:
            common.require_columns(history, trials, [metric, "training_iteration"])
            common.require_columns(history, trials, ["trial"], numeric=False)
            paths.append(plot_curves(history, metric, name, out))
    return paths


def plot_metric_vs_params(results: pd.DataFrame, params: list[str], metric: str, name: str,
                          out: Path) -> Path:
    fig, axes = plt.subplots(1, len(params), figsize=(4.5 * len(params), 3.8), squeeze=False)
    for ax, col in zip(axes[0], params):
        x = results[col]
        numeric = pd.api.types.is_numeric_dtype(x)
        if numeric:
            ax.scatter(x, results[metric], alpha=0.8)
            values = x[x > 0]
            if len(values) and values.min() > 0 and values.max() / values.min() >= 20:
                ax.set_xscale("log")
        else:
            labels = sorted(map(str, x.unique()))
            pos = {v: i for i, v in enumerate(labels)}
            ax.scatter([pos[str(v)] for v in x], results[metric], alpha=0.8)
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(col[len("config/"):])
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"sweep {name}: {metric} of each trial (last report)")
    return common.save(fig, out / "sweep_metric_vs_params.png")


def plot_curves(history: pd.DataFrame, metric: str, name: str, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    trials = list(history["trial"].unique())
    colors = plt.cm.viridis(np.linspace(0, 1, max(2, len(trials))))
    for color, trial in zip(colors, trials):
        rows = history[history["trial"] == trial].sort_values("training_iteration")
        ax.plot(rows["training_iteration"], rows[metric], color=color, alpha=0.8,
                label=str(trial) if len(trials) <= 10 else None)
    ax.set_xlabel("training iteration")
    ax.set_ylabel(metric)
    ax.set_title(f"sweep {name}: learning curves ({len(trials)} trials)")
    ax.grid(alpha=0.3)
    if len(trials) <= 10:
        ax.legend(fontsize=7)
    return common.save(fig, out / "sweep_curves.png")
