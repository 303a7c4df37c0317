"""How a quota policy shares training between modalities over a run: one panel per quota
sampler of a comparison (DUS-H, a learned policy, DUS-RL, a fixed share), each modality's
mean quota share against training progress, over seeds. A flat line is a constant policy;
a learned policy worth its machinery should not look like one."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmbalance.report import common

FIGURE = "quota_shares.png"
BINS = 20  # points along training progress
PAIRED_SAMPLERS = ("uniform", "bss-h", "bss-l")


def share_curves(folder: Path, results: pd.DataFrame,
                 modalities: list[str]) -> dict[str, pd.DataFrame]:
    """Per row (`method/sampler`) with a quota sampler: a frame indexed by progress bin
    (0..1) with each modality's mean share (its quota over the quotas' sum) over seeds."""
    if not {"key", "method", "sampler"} <= set(results.columns) or len(modalities) < 2:
        return {}
    rows = results
    if "chosen" in rows:
        rows = rows[rows["chosen"].fillna(True).astype(bool)]
    out = {}
    for (method, sampler), group in rows.groupby(["method", "sampler"], sort=False):
        if sampler.split(":", 1)[0] in PAIRED_SAMPLERS or method.startswith("alone:") \
                or method == "ensemble":
            continue
        per_seed = []
        for key in group["key"].dropna():
            path = folder / "runs" / str(key) / "steps.parquet"
            if not path.is_file():
                continue
            steps = common.read_table(path)
            cols = [f"quota_{m}" for m in modalities]
            if not set(cols) <= set(steps.columns) or not len(steps):
                continue
            q = steps[cols].to_numpy(dtype=np.float64)
            total = q.sum(1, keepdims=True)
            shares = np.divide(q, total, out=np.full_like(q, np.nan), where=total > 0)
            progress = np.arange(len(steps)) / max(1, len(steps) - 1)
            bins = np.minimum((progress * BINS).astype(int), BINS - 1)
            frame = pd.DataFrame(shares, columns=modalities)
            frame["bin"] = bins
            per_seed.append(frame.groupby("bin").mean())
        if per_seed:
            curve = pd.concat(per_seed).groupby(level=0).mean()
            curve.index = (curve.index + 0.5) / BINS
            out[f"{method}/{sampler}"] = curve
    return out


def plot_quota_shares(curves: dict[str, pd.DataFrame], modalities: list[str], data: str,
                      out: Path) -> Path:
    n = len(curves)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (label, curve) in zip(axes.flat, curves.items()):
        for i, m in enumerate(modalities):
            ax.plot(curve.index, curve[m], color=common.modality_color(i), label=m)
        ax.axhline(1 / len(modalities), color="grey", ls="--", lw=0.8, label="uniform")
        ax.set(title=label, xlabel="training progress", ylabel="mean quota share", ylim=(0, 1))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"How each quota policy shares training — {data} (mean over seeds)",
                 fontsize=10)
    fig.tight_layout()
    return common.save(fig, out)
