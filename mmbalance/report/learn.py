"""Plots of a `mmbalance learn` folder: the policy's learning curve against env steps
(episode return, the episodes' final discrepancy D and final validation accuracy), with
fixed-policy levels drawn as lines where the caller has them (the RL benchmark does)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmbalance.errors import UserError
from mmbalance.report import common

# progress.parquet column -> (key in a fixed policy's levels, panel title)
PANELS = (
    ("episode_return_mean", "return", "episode return"),
    ("discrepancy", "final_D", "final discrepancy D"),
    ("final_val_acc", "final_val_acc", "final val accuracy (best epoch)"),
)


def learn_report(folder: Path) -> list[Path]:
    cfg = common.read_yaml(folder / "learn_config.yaml")
    path = folder / "progress.parquet"
    progress = common.read_table(path, required=True)
    if progress.empty:
        raise UserError(f"{path}: holds no rows (no iteration finished); nothing to plot")
    common.require_columns(progress, path, ["env_steps"])
    if not progress["env_steps"].notna().any():  # the x axis falls back on iterations
        common.require_columns(progress, path, ["iteration"])
    common.require_columns(progress, path, [col for col, _, _ in PANELS if col in progress])
    out = common.plots_folder(folder)
    title = f"{cfg.get('algorithm', '?')} on the {cfg.get('env', '?')} env"
    return [plot_learning_curve(progress, title, out / "learning_curve.png")]


def plot_learning_curve(progress: pd.DataFrame, title: str, path: Path,
                        levels: dict[str, dict] | None = None) -> Path:
    """One panel per PANELS entry; `levels` = {policy name: {"return": ..., ...}}."""
    return common.save(learning_curve_figure(progress, title, levels), path, tight=False)


def learning_curve_figure(progress: pd.DataFrame, title: str,
                          levels: dict[str, dict] | None = None) -> plt.Figure:
    x_col = "env_steps" if progress["env_steps"].notna().any() else "iteration"
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4))
    for ax, (col, key, panel) in zip(axes, PANELS):
        if col in progress and progress[col].notna().any():
            ax.plot(progress[x_col], progress[col], marker="o",
                    label="learned policy (mean of recent episodes)")
        else:
            ax.text(0.5, 0.5, "no episode has ended yet", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
        for i, (name, lv) in enumerate((levels or {}).items()):
            if key in lv and np.isfinite(lv[key]):
                ax.axhline(lv[key], linestyle=("--", ":", "-.")[i % 3],
                           color="gray" if name == "uniform" else f"C{i + 3}",
                           label=f"{name} (fixed policy)")
        ax.set_xlabel(x_col.replace("_", " "))
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
