"""Plots of a run folder or a comparison folder, written as PNGs into `<folder>/plots/`.

A run folder (it holds `steps.parquet`) gives `accuracy.png`, `status.png`,
`discrepancy.png`, and, when the sampler makes them vary, `quotas.png` and `subset.png`;
an online policy's run (dus-rl: `rl_*` step columns) adds `policy.png`.
A comparison folder (it holds `compare.json`) gives `accuracy_by_method.png`,
`discrepancy_curves.png` and `weak_modality.png`. Modality names come from the
`s_hat_<m>` columns of `steps.parquet`; the Bayes accuracies (`best_accuracy`, keyed by
modality and `all` for the fused input) are drawn as dashed lines where known, and chance
(1 / number of classes, where the folder records `num_classes`) as a dotted grey line.

Plots are made for a person: titles name the data, epoch and step axes have integer ticks,
a one-epoch run is a visible point in a sensible x-range, and a curve identical to one drawn
before it is drawn dashed with hollow markers and labelled "(= the other)" instead of
vanishing behind it.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmbalance.errors import UserError

MULTIMODAL_COLOR = "black"
DPI = 120


def make_report(path: str | Path) -> list[Path]:
    """Write the plots of a run or comparison folder into `<path>/plots/`; return their paths."""
    folder = Path(path)
    if (folder / "steps.parquet").is_file():
        return run_report(folder)
    if (folder / "compare.json").is_file():
        return compare_report(folder)
    if (folder / "sweep.yaml").is_file() and (folder / "results.parquet").is_file():
        from mmbalance.report_sweep import sweep_report

        return sweep_report(folder)
    if (folder / "learn_config.yaml").is_file() and (folder / "progress.parquet").is_file():
        from mmbalance.report_learn import learn_report

        return learn_report(folder)
    expected = ("a run folder (with steps.parquet), a comparison folder (with compare.json), "
                "a finished sweep folder (with sweep.yaml and results.parquet) or a learn "
                "folder (with learn_config.yaml and progress.parquet)")
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; expected {expected}")
    raise UserError(f"{folder}: not a run or comparison folder; expected {expected}")


# ---------------------------------------------------------------------------- helpers
def discover_modalities(columns: list[str]) -> list[str]:
    """Modality names from the `s_hat_<m>` columns, in column order."""
    return [c[len("s_hat_"):] for c in columns if c.startswith("s_hat_")]


def _read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _color(i: int) -> str:
    return f"C{i % 10}"


def _window(n: int) -> int:
    """Rolling-mean window: about 2% of the points, at least 1."""
    return max(1, n // 50)


def _save(fig: plt.Figure, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def data_label(spec: str, width: int = 40) -> str:
    """A `--data` spec short enough for a title: `cremad:…/prepared (+2 options)`."""
    spec = str(spec)
    if len(spec) <= width:
        return spec
    name, _, rest = spec.partition(":")
    first, *options = rest.split(",")
    label = f"{name}:…/{Path(first).name}" if "/" in first else f"{name}:{first[:width]}"
    return label + (f" (+{len(options)} options)" if options else "")


def _integer_x(ax: plt.Axes, x: pd.Series | np.ndarray) -> None:
    """Integer ticks on an epoch or step axis; one x value gets a unit-wide range around it
    (matplotlib's default for one point is ±0.04, with fractional ticks)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    values = np.unique(np.asarray(x, dtype=float))
    if len(values) == 1:
        ax.set_xlim(values[0] - 0.5, values[0] + 0.5)


def _curves(ax: plt.Axes, x: pd.Series | np.ndarray,
            series: list[tuple[str, pd.Series | np.ndarray, str, float]]) -> None:
    """Draw (label, y, colour, line width) curves; one equal to a curve drawn before it is
    dashed, with larger hollow markers, and its label says which it equals."""
    drawn: list[tuple[str, np.ndarray]] = []
    marker = 7 if len(x) == 1 else 3
    for label, y, color, width in series:
        values = np.asarray(y, dtype=float)
        same = next((name for name, other in drawn
                     if other.shape == values.shape and np.allclose(other, values,
                                                                    equal_nan=True)), None)
        if same is None:
            ax.plot(x, values, color=color, marker="o", markersize=marker, linewidth=width,
                    label=label)
        else:
            ax.plot(x, values, color=color, marker="o", markersize=marker + 4,
                    markerfacecolor="none", linestyle="--", linewidth=max(width, 1.5),
                    label=f"{label} (= {same})")
        drawn.append((label, values))


def _chance_line(ax: plt.Axes, num_classes: object) -> plt.Line2D | None:
    """Dotted grey line at 1 / num_classes, where the folder records the class count."""
    if not isinstance(num_classes, int) or num_classes < 2:
        return None
    return ax.axhline(1.0 / num_classes, color="grey", linestyle=":", linewidth=1.2,
                      label=f"chance (1/{num_classes})")


def _bayes_lines(ax: plt.Axes, best: dict, modalities: list[str]) -> None:
    """Dashed lines at the known Bayes accuracies (`all` for multimodal), colour-matched."""
    keys = [("all", "multimodal", MULTIMODAL_COLOR)]
    keys += [(m, m, _color(i)) for i, m in enumerate(modalities)]
    for key, label, color in keys:
        if key in best and best[key] is not None:
            ax.axhline(float(best[key]), color=color, linestyle="--", linewidth=1, alpha=0.8,
                       label=f"Bayes {label}")


# ------------------------------------------------------------------------ run folder
def run_report(folder: Path) -> list[Path]:
    """All plots of one run folder."""
    config = _read_json(folder / "config.json")
    steps = _read_table(folder / "steps.parquet")
    epochs = _read_table(folder / "epochs.parquet")
    modalities = discover_modalities(list(steps.columns))
    method = config.get("train", {}).get("method", "?")
    title = f"{data_label(config.get('data', '?'))} — {method} / {config.get('sampler', '?')}"
    best = config.get("best_accuracy") or {}
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)

    written = []
    if "val_acc" in epochs:
        written.append(plot_run_accuracy(epochs, modalities, best, title, plots / "accuracy.png",
                                         config.get("num_classes")))
    if len(steps) and modalities:
        written.append(plot_status(steps, modalities, title, plots / "status.png"))
    if "discrepancy" in steps:
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
    series = [("multimodal", epochs["val_acc"], MULTIMODAL_COLOR, 2.0)]
    series += [(m, epochs[f"val_acc_{m}"], _color(i), 1.5) for i, m in enumerate(modalities)
               if f"val_acc_{m}" in epochs]
    _curves(ax, epochs["epoch"], series)
    _bayes_lines(ax, best, modalities)
    _chance_line(ax, num_classes)
    _integer_x(ax, epochs["epoch"])
    ax.set(title=f"Validation accuracy — {title}", xlabel="epoch", ylabel="accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, out)


def plot_status(steps: pd.DataFrame, modalities: list[str], title: str, out: Path) -> Path:
    """Cumulative score ŝ per modality (solid) over the batch score s (faint, smoothed)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    window = _window(len(steps))
    for i, m in enumerate(modalities):
        if f"s_{m}" in steps:
            s = steps[f"s_{m}"]
            ax.plot(steps["step"], s, color=_color(i), alpha=0.12, linewidth=0.8)
            ax.plot(steps["step"], s.rolling(window, min_periods=1).mean(), color=_color(i),
                    alpha=0.45, linewidth=1, label=f"s {m} (rolling mean)")
        ax.plot(steps["step"], steps[f"s_hat_{m}"], color=_color(i), linewidth=2,
                label=f"ŝ {m}")
    _integer_x(ax, steps["step"])
    ax.set(title=f"Learning status — {title}", xlabel="step", ylabel="true-class score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, out)


def plot_discrepancy(steps: pd.DataFrame, title: str, out: Path) -> Path:
    """Discrepancy D (spread of ŝ across modalities) over steps."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps["step"], steps["discrepancy"], color="C3", linewidth=1.5,
            marker="o" if len(steps) == 1 else None)
    _integer_x(ax, steps["step"])
    ax.set(title=f"Discrepancy D — {title}", xlabel="step", ylabel="D = max ŝ − min ŝ")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_quotas(steps: pd.DataFrame, modalities: list[str], title: str, out: Path) -> Path:
    """Samples fed to each modality per step (rolling mean, raw values faint)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    window = _window(len(steps))
    for i, m in enumerate(modalities):
        q = steps[f"quota_{m}"].astype(float)
        ax.plot(steps["step"], q, color=_color(i), alpha=0.15, linewidth=0.8)
        ax.plot(steps["step"], q.rolling(window, min_periods=1).mean(), color=_color(i),
                linewidth=2, label=m)
    _integer_x(ax, steps["step"])
    smoothed = f" (rolling mean over {window} steps)" if window > 1 else ""
    ax.set(title=f"Per-modality quota — {title}", xlabel="step",
           ylabel=f"samples per step{smoothed}")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_subset(epochs: pd.DataFrame, title: str, out: Path) -> Path:
    """Size of the BSS training subset per epoch."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(epochs["epoch"], epochs["sampler_subset_size"], where="post", color="C2",
            linewidth=2)
    ax.plot(epochs["epoch"], epochs["sampler_subset_size"], "o", color="C2", markersize=3)
    _integer_x(ax, epochs["epoch"])
    ax.set(title=f"BSS subset size — {title}", xlabel="epoch", ylabel="samples in subset")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return _save(fig, out)


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
        ax.plot(steps["step"], mean, color=_color(i), linewidth=1.8, label=m)
        if f"quota_{m}" in steps:
            ax.plot(steps["step"], steps[f"quota_{m}"], color=_color(i), alpha=0.15,
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
    _integer_x(ax, steps["step"])
    ax.set(xlabel="step", ylabel="reward per decision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


# ----------------------------------------------------------------- comparison folder
def compare_report(folder: Path) -> list[Path]:
    """All plots of one comparison folder."""
    meta = _read_json(folder / "compare.json")
    results = _read_table(folder / "results.parquet")
    if "diverged" in results:  # a diverged run has no result to plot (compare.py)
        results = results[~results["diverged"].astype(bool)].reset_index(drop=True)
    modalities = list(meta.get("modalities") or [])
    if not modalities:
        modalities = [c[len("test_acc_"):] for c in results.columns if c.startswith("test_acc_")]
    best = meta.get("best_accuracy") or {}
    data = data_label(meta.get("data", "?"))
    chance = meta.get("num_classes")
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)

    written = []
    if len(results) and "test_acc" in results:
        written.append(plot_accuracy_by_method(results, modalities, best, data,
                                               plots / "accuracy_by_method.png", chance))
    order = [tuple(g) for g in meta.get("grid") or []]
    if {"method", "sampler"} <= set(results.columns):
        order += list(zip(results["method"], results["sampler"]))
    curves = _discrepancy_by_group(folder / "runs", order)
    if curves:
        written.append(plot_discrepancy_curves(curves, data, plots / "discrepancy_curves.png"))
    cols = [f"test_acc_{m}" for m in modalities]
    if len(results) and cols and all(c in results for c in cols):
        written.append(plot_weak_modality(results, modalities, data,
                                          plots / "weak_modality.png", chance))
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
    series = [("test_acc", "multimodal", MULTIMODAL_COLOR)]
    series += [(f"test_acc_{m}", m, _color(i)) for i, m in enumerate(modalities)
               if f"test_acc_{m}" in results]
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(groups) + 3), 4.8))
    for j, (col, label, color) in enumerate(series):
        means = [g[col].mean() for _, g in groups]
        stds = [_std(g[col]) for _, g in groups]
        ax.bar(x + (j - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
               color=color, alpha=0.85 if color != MULTIMODAL_COLOR else 0.7, label=label)
    _bayes_lines(ax, best, modalities)
    _chance_line(ax, num_classes)
    seeds = results["seed"].nunique() if "seed" in results else 1
    ax.set_xticks(x, [_label(*key) for key, _ in groups], fontsize=8)
    ax.set(title=f"Test accuracy by method — {data} (mean ± std over {seeds} seeds)",
           xlabel="method / sampler", ylabel="test accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out)


def _run_group(run_dir: Path) -> tuple[str, str] | None:
    """(method, sampler) of a run folder: from its config, else from its `<m>__<s>__s<n>` name."""
    config = _read_json(run_dir / "config.json")
    method = config.get("train", {}).get("method")
    sampler = config.get("sampler")
    if method and sampler:
        return method, sampler
    parts = run_dir.name.split("__")
    return (parts[0], parts[1]) if len(parts) == 3 else None


def _discrepancy_by_group(
    runs: Path, order: list[tuple[str, str]]
) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (method, sampler), in `order` then by name: mean and std of D per epoch over seeds."""
    frames: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for run_dir in sorted(runs.glob("*/")) if runs.is_dir() else []:
        epochs = _read_table(run_dir / "epochs.parquet")
        group = _run_group(run_dir)
        if group is None or "discrepancy" not in epochs or "epoch" not in epochs:
            continue
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
        ax.fill_between(c.index, c["mean"] - std, c["mean"] + std, color=_color(i), alpha=0.12)
        series.append((f"{method} / {sampler} ({n} seeds)",
                       c["mean"].reindex(epochs).to_numpy(), _color(i), 1.8))
    _curves(ax, np.asarray(epochs), series)
    _integer_x(ax, epochs)
    ax.set(title=f"Discrepancy D over training — {data}", xlabel="epoch",
           ylabel="D (mean over seeds)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


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
        color = _color(modalities.index(weak))
        values = g[f"test_acc_{weak}"].to_numpy(dtype=float)
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(x + jitter, values, color=color, alpha=0.6, s=22, zorder=3)
        ax.hlines(means[weak], x - 0.3, x + 0.3, color=color, linewidth=2.5, zorder=4)
        ax.annotate(f"{means[weak]:.3f}", (x + 0.32, means[weak]), fontsize=7, va="center")
        labels.append(f"{_label(method, sampler)}\n[{weak}]")
    handles = [plt.Line2D([], [], color=_color(i), marker="o", linestyle="", label=m)
               for i, m in enumerate(modalities) if m in weakest]
    handles.append(plt.Line2D([], [], color="gray", linewidth=2.5, label="mean over seeds"))
    chance = _chance_line(ax, num_classes)
    if chance is not None:
        handles.append(chance)
    ax.set_xticks(range(len(groups)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set(title=f"Weakest modality's test accuracy — {data}",
           xlabel="method / sampler [weakest modality]", ylabel="test accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=handles, fontsize=8)
    return _save(fig, out)
