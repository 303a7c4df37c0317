"""Plots of a run folder (it holds `steps.parquet`): `accuracy.png`, `status.png`,
`discrepancy.png`, and, when the sampler makes them vary, `quotas.png` and `subset.png`; an
online policy's run (dus-rl: `rl_*` step columns) adds `policy.png`."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmbalance.report import common


def run_report(folder: Path) -> list[Path]:
    """All plots of one run folder."""
    config_path = folder / "config.json"
    config = common.read_json(config_path)
    steps_path, epochs_path = folder / "steps.parquet", folder / "epochs.parquet"
    steps = common.read_table(steps_path, required=True)
    epochs = common.read_table(epochs_path)
    modalities = common.discover_modalities(list(steps.columns))
    if len(steps):  # the columns a plot draws: present and numeric
        common.require_columns(steps, steps_path, [
            "step", *(c for c in steps.columns if c.startswith(("s_", "quota_")))])
    if "val_acc" in epochs:
        common.require_columns(epochs, epochs_path, ["epoch", "val_acc"])
    train = common.get(config, config_path, "train", dict, {})
    method = train.get("method", "?")
    data = common.data_label(common.get(config, config_path, "data", str, "?"))
    title = f"{data} — {method} / {common.get(config, config_path, 'sampler', str, '?')}"
    best = common.bayes_values(config, config_path)
    plots = common.plots_folder(folder)

    written = []
    if "val_acc" in epochs:
        written.append(plot_run_accuracy(epochs, modalities, best, title, plots / "accuracy.png",
                                         config.get("num_classes")))
    if len(steps) and modalities:
        written.append(plot_status(steps, modalities, title, plots / "status.png"))
    if "discrepancy" in steps:
        common.require_columns(steps, steps_path, ["step", "discrepancy"])
        written.append(plot_discrepancy(steps, title, plots / "discrepancy.png"))
    if quotas_vary(steps, modalities):
        written.append(plot_quotas(steps, modalities, title, plots / "quotas.png"))
    if "sampler_subset_size" in epochs and epochs["sampler_subset_size"].nunique() > 1:
        written.append(plot_subset(epochs, title, plots / "subset.png"))
    if "rl_reward" in steps and modalities:
        written.append(plot_policy(steps, modalities, title, plots / "policy.png"))
    return written


def quotas_vary(steps: pd.DataFrame, modalities: list[str]) -> bool:
    """True when some step feeds the modalities different numbers of samples."""
    cols = [f"quota_{m}" for m in modalities]
    if not modalities or not all(c in steps for c in cols) or steps.empty:
        return False
    q = steps[cols].to_numpy(dtype=float)
    return bool((q != q[:, :1]).any())


def plot_run_accuracy(
    epochs: pd.DataFrame, modalities: list[str], best: dict, title: str, out: Path,
    num_classes: int | None = None,
) -> Path:
    """Validation accuracy per epoch: multimodal and each modality, Bayes accuracy dashed,
    chance dotted."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [("multimodal", epochs["val_acc"], common.MULTIMODAL_COLOR, 2.0)]
    series += [(m, epochs[f"val_acc_{m}"], common.modality_color(i), 1.5)
               for i, m in enumerate(modalities)
               if f"val_acc_{m}" in epochs]
    common.curves(ax, epochs["epoch"], series)
    common.bayes_lines(ax, best, modalities)
    common.chance_line(ax, num_classes)
    common.integer_x(ax, epochs["epoch"])
    ax.set(title=f"Validation accuracy — {title}", xlabel="epoch", ylabel="accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return common.save(fig, out)


def plot_status(steps: pd.DataFrame, modalities: list[str], title: str, out: Path) -> Path:
    """Cumulative score ŝ per modality (solid) over the batch score s (faint, smoothed)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    window = common.window(len(steps))
    for i, m in enumerate(modalities):
        if f"s_{m}" in steps:
            s = steps[f"s_{m}"]
            ax.plot(steps["step"], s, color=common.modality_color(i), alpha=0.12, linewidth=0.8)
            ax.plot(steps["step"], s.rolling(window, min_periods=1).mean(),
                    color=common.modality_color(i), alpha=0.45, linewidth=1,
                    label=f"s {m} (rolling mean)")
        ax.plot(steps["step"], steps[f"s_hat_{m}"], color=common.modality_color(i), linewidth=2,
                label=f"ŝ {m}")
    common.integer_x(ax, steps["step"])
    ax.set(title=f"Learning status — {title}", xlabel="step", ylabel="true-class score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return common.save(fig, out)


def plot_discrepancy(steps: pd.DataFrame, title: str, out: Path) -> Path:
    """Discrepancy D (spread of ŝ across modalities) over steps."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps["step"], steps["discrepancy"], color="C3", linewidth=1.5,
            marker="o" if len(steps) == 1 else None)
    common.integer_x(ax, steps["step"])
    ax.set(title=f"Discrepancy D — {title}", xlabel="step", ylabel="D = max ŝ − min ŝ")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return common.save(fig, out)


def plot_quotas(steps: pd.DataFrame, modalities: list[str], title: str, out: Path) -> Path:
    """Samples fed to each modality per step (rolling mean, raw values faint)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    window = common.window(len(steps))
    for i, m in enumerate(modalities):
        q = steps[f"quota_{m}"].astype(float)
        ax.plot(steps["step"], q, color=common.modality_color(i), alpha=0.15, linewidth=0.8)
        ax.plot(steps["step"], q.rolling(window, min_periods=1).mean(),
                color=common.modality_color(i), linewidth=2, label=m)
    common.integer_x(ax, steps["step"])
    smoothed = f" (rolling mean over {window} steps)" if window > 1 else ""
    ax.set(title=f"Per-modality quota — {title}", xlabel="step",
           ylabel=f"samples per step{smoothed}")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return common.save(fig, out)


def plot_subset(epochs: pd.DataFrame, title: str, out: Path) -> Path:
    """Size of the BSS training subset per epoch."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(epochs["epoch"], epochs["sampler_subset_size"], where="post", color="C2",
            linewidth=2)
    ax.plot(epochs["epoch"], epochs["sampler_subset_size"], "o", color="C2", markersize=3)
    common.integer_x(ax, epochs["epoch"])
    ax.set(title=f"BSS subset size — {title}", xlabel="epoch", ylabel="samples in subset")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return common.save(fig, out)


def plot_policy(steps: pd.DataFrame, modalities: list[str], title: str, out: Path) -> Path:
    """How an online policy (dus-rl) moved: its expected quota per modality (the quota at the
    mean action if continuous), its probability of each batch size (discrete), and the reward
    of each decision against the moving-average baseline."""
    grids = {m: sorted(int(c.rsplit("_", 1)[1]) for c in steps.columns
                       if c.startswith(f"rl_p_{m}_") and c.rsplit("_", 1)[1].isdigit())
             for m in modalities}
    discrete = all(grids.values())
    rows = 2 + (len(modalities) if discrete else 0)
    fig, axes = plt.subplots(rows, 1, figsize=(7, 2.6 * rows), sharex=True)
    ax = axes[0]
    for i, m in enumerate(modalities):
        if f"rl_mean_{m}" not in steps:
            continue
        mean = steps[f"rl_mean_{m}"].astype(float)
        ax.plot(steps["step"], mean, color=common.modality_color(i), linewidth=1.8, label=m)
        if f"quota_{m}" in steps:
            ax.plot(steps["step"], steps[f"quota_{m}"], color=common.modality_color(i), alpha=0.15,
                    linewidth=0.8)
    ax.set(title=f"Policy — {title}", ylabel="expected quota\n(faint: sampled)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if discrete:
        for j, m in enumerate(modalities):
            ax = axes[1 + j]
            probs = [steps[f"rl_p_{m}_{n}"].astype(float) for n in grids[m]]
            colors = plt.cm.viridis(np.linspace(0.1, 0.9, len(grids[m])))
            ax.stackplot(steps["step"], probs, labels=[str(n) for n in grids[m]], colors=colors)
            ax.set(ylabel=f"P(quota) {m}")
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7, title="batch size", title_fontsize=7, loc="upper left",
                      bbox_to_anchor=(1.01, 1.0))
    ax = axes[-1]
    decisions = steps.dropna(subset=["rl_reward"])
    if "rl_updates" in decisions:
        decisions = decisions.drop_duplicates("rl_updates")
    ax.plot(decisions["step"], decisions["rl_reward"], ".", color="C7", markersize=3,
            alpha=0.6, label="reward")
    if "rl_baseline" in decisions:
        ax.plot(decisions["step"], decisions["rl_baseline"], color="C3", linewidth=1.8,
                label="baseline")
    ax.axhline(0.0, color="black", linewidth=0.6)
    common.integer_x(ax, steps["step"])
    ax.set(xlabel="step", ylabel="reward per decision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return common.save(fig, out)
