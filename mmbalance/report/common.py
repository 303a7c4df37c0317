"""What every report plot shares: reading a folder's tables, colours, integer epoch and step
axes, curves that stay visible when they coincide, chance and Bayes lines, and saving."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

MULTIMODAL_COLOR = "black"
DPI = 120


def discover_modalities(columns: list[str]) -> list[str]:
    """Modality names from the `s_hat_<m>` columns, in column order."""
    return [c[len("s_hat_"):] for c in columns if c.startswith("s_hat_")]


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def modality_color(i: int) -> str:
    return f"C{i % 10}"


def window(n: int) -> int:
    """Rolling-mean window: about 2% of the points, at least 1."""
    return max(1, n // 50)


def save(fig: plt.Figure, out: Path) -> Path:
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


def integer_x(ax: plt.Axes, x: pd.Series | np.ndarray) -> None:
    """Integer ticks on an epoch or step axis; one x value gets a unit-wide range around it
    (matplotlib's default for one point is ±0.04, with fractional ticks)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    values = np.unique(np.asarray(x, dtype=float))
    if len(values) == 1:
        ax.set_xlim(values[0] - 0.5, values[0] + 0.5)


def curves(ax: plt.Axes, x: pd.Series | np.ndarray,
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


def chance_line(ax: plt.Axes, num_classes: object) -> plt.Line2D | None:
    """Dotted grey line at 1 / num_classes, where the folder records the class count."""
    if not isinstance(num_classes, int) or num_classes < 2:
        return None
    return ax.axhline(1.0 / num_classes, color="grey", linestyle=":", linewidth=1.2,
                      label=f"chance (1/{num_classes})")


def bayes_lines(ax: plt.Axes, best: dict, modalities: list[str]) -> None:
    """Dashed lines at the known Bayes accuracies (`all` for multimodal), colour-matched."""
    keys = [("all", "multimodal", MULTIMODAL_COLOR)]
    keys += [(m, m, modality_color(i)) for i, m in enumerate(modalities)]
    for key, label, color in keys:
        if key in best and best[key] is not None:
            ax.axhline(float(best[key]), color=color, linestyle="--", linewidth=1, alpha=0.8,
                       label=f"Bayes {label}")
