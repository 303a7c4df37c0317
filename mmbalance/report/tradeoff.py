"""`accuracy_vs_weak_probe.png` of a comparison folder: does a sampler buy the weak
modality's encoder something, and at what cost in accuracy?

One panel per method; each sampler is a point at (its weak modality's linear-probe test
accuracy, its multimodal test accuracy), mean over seeds with ± std error bars on both axes.
The unimodal references (`alone:<m>` rows, from `compare --unimodal-reference`) are lines:
vertical at what the weak modality's encoder learns alone (the probe a rebalancing sampler
tries to reach), horizontal at each modality's alone probe accuracy (what one modality by
itself reaches; the multimodal accuracy should beat them).

The weak modality is the one whose probe under `joint` (else the first method; its uniform
sampler where it has one) lies furthest below its `alone:` probe; without `alone:` rows,
the one with the lowest mean probe over the multimodal runs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from mmbalance.report import common

ALONE = "alone:"  # as in mmbalance/compare.py (the report does not import the trainer side)
FIGURE = "accuracy_vs_weak_probe.png"


def _probe(m: str) -> str:
    return f"test_probe_acc_{m}"


def _std(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if values.notna().sum() > 1 else 0.0


def unimodal_references(results: pd.DataFrame, modalities: list[str]) -> dict[str, float]:
    """Mean probe accuracy of modality m's encoder trained alone (`alone:<m>` rows)."""
    refs = {}
    for m in modalities:
        rows = results[results["method"] == f"{ALONE}{m}"]
        if len(rows) and _probe(m) in rows and rows[_probe(m)].notna().any():
            refs[m] = float(rows[_probe(m)].mean())
    return refs


def weak_modality(results: pd.DataFrame, modalities: list[str]) -> str:
    """See the module docstring."""
    multi = results[~results["method"].str.startswith(ALONE)]
    refs = unimodal_references(results, modalities)
    methods = list(dict.fromkeys(multi["method"]))
    if refs and methods:
        method = "joint" if "joint" in methods else methods[0]
        rows = multi[multi["method"] == method]
        if (rows["sampler"] == "uniform").any():
            rows = rows[rows["sampler"] == "uniform"]
        gaps = {m: refs[m] - float(rows[_probe(m)].mean()) for m in refs
                if rows[_probe(m)].notna().any()}
        if gaps:
            return max(gaps, key=gaps.get)
    means = {m: float(multi[_probe(m)].mean()) for m in modalities
             if multi[_probe(m)].notna().any()}
    return min(means, key=means.get)


def tradeoff_points(results: pd.DataFrame, modalities: list[str]) -> tuple[str, pd.DataFrame]:
    """(weak modality, the plotted points): per multimodal (method, sampler), in first-seen
    order, the seeds and mean ± std of test accuracy and of the weak modality's probe."""
    weak = weak_modality(results, modalities)
    multi = results[~results["method"].str.startswith(ALONE)]
    rows = []
    for (method, sampler), g in multi.groupby(["method", "sampler"], sort=False):
        rows.append({"method": method, "sampler": sampler, "seeds": len(g),
                     "acc_mean": float(g["test_acc"].mean()), "acc_std": _std(g["test_acc"]),
                     "probe_mean": float(g[_probe(weak)].mean()),
                     "probe_std": _std(g[_probe(weak)])})
    return weak, pd.DataFrame(rows)


def has_probes(results: pd.DataFrame, modalities: list[str]) -> bool:
    """Whether the figure can be drawn: multimodal runs with accuracy and every probe."""
    if not len(results) or not modalities or "test_acc" not in results:
        return False
    multi = results[~results["method"].str.startswith(ALONE)]
    return len(multi) > 0 and all(_probe(m) in multi and multi[_probe(m)].notna().any()
                                  for m in modalities)


def plot_accuracy_vs_weak_probe(results: pd.DataFrame, modalities: list[str], data: str,
                                out: Path, num_classes: int | None = None) -> Path:
    """The figure (see the module docstring)."""
    weak, points = tradeoff_points(results, modalities)
    refs = unimodal_references(results, modalities)
    methods = list(dict.fromkeys(points["method"]))
    samplers = list(dict.fromkeys(points["sampler"]))
    cols = min(3, len(methods))
    nrows = -(-len(methods) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols + 1.8, 4.0 * nrows),
                             sharex=True, sharey=True, squeeze=False)
    handles: dict[str, object] = {}  # one legend for every panel, right of them
    for ax, method in zip(axes.flat, methods):
        for _, p in points[points["method"] == method].iterrows():
            color = common.modality_color(samplers.index(p["sampler"]))
            ax.errorbar(p["probe_mean"], p["acc_mean"], xerr=p["probe_std"], yerr=p["acc_std"],
                        fmt="o", color=color, capsize=3, markersize=7,
                        label=f"{p['sampler']} ({p['seeds']} seeds)")
        if weak in refs:
            ax.axvline(refs[weak], color="black", linestyle="--", linewidth=1.2,
                       label=f"{weak} alone: its probe (x)")
        for i, (m, value) in enumerate(refs.items()):
            ax.axhline(value, color=common.modality_color(len(samplers) + i), linestyle=":",
                       linewidth=1.4, label=f"{m} alone: its probe (y)")
        common.chance_line(ax, num_classes)
        ax.set_title(method)
        ax.grid(alpha=0.3)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    for ax in axes.flat[len(methods):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(f"{weak} probe test accuracy (weak modality)")
    for ax in axes[:, 0]:
        ax.set_ylabel("multimodal test accuracy")
    # on the top-right panel, outside it, so tight_layout makes room for it
    axes[0, -1].legend(list(handles.values()), list(handles), fontsize=8, loc="upper left",
                       bbox_to_anchor=(1.02, 1.0))
    seeds = results["seed"].nunique() if "seed" in results else 1
    fig.suptitle(f"Accuracy against the weak modality's probe — {data} "
                 f"(mean ± std over {seeds} seeds)")
    return common.save(fig, out)
