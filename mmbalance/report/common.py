"""What every report plot shares: reading a folder's tables, colours, integer epoch and step
axes, curves that stay visible when they coincide, chance and Bayes lines, and saving.

A report reads files a run wrote, or someone edited: an unreadable table or JSON file, a
required column missing, `plots` taken by a file, is a one-line UserError naming the file
(the CLI exits 2), and every PNG goes through `mmbalance.runs.write_file`, so a `plots` link
out of the folder is refused instead of followed."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa

from mmbalance.errors import UserError, one_line
from mmbalance.runs import make_folder, write_file

MULTIMODAL_COLOR = "black"
DPI = 120


def discover_modalities(columns: list[str]) -> list[str]:
    """Modality names from the `s_hat_<m>` columns, in column order."""
    return [c[len("s_hat_"):] for c in columns if c.startswith("s_hat_")]


def read_table(path: Path, required: bool = False) -> pd.DataFrame:
    """A Parquet table (empty when the file is absent and not `required`); a file that is not
    Parquet is a one-line UserError naming it."""
    if not path.is_file():
        if required:
            raise UserError(f"{path}: missing")
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise UserError(f"{path}: not a readable Parquet table ({one_line(exc)[:200]})") \
            from None


def read_json(path: Path) -> dict:
    """A JSON object ({} when the file is absent); anything else is a one-line UserError."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({one_line(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_yaml(path: Path) -> dict:
    """A YAML mapping, read with the safe loader; anything else is a one-line UserError."""
    from mmbalance.spec import load_yaml_text

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({one_line(exc)[:200]})") from None
    data = load_yaml_text(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    return data


def require_columns(table: pd.DataFrame, path: Path, columns: Iterable[str],
                    numeric: bool = True) -> None:
    """Each column present (and numeric): a table written by hand or cut short is named
    here, not in a KeyError deep inside matplotlib."""
    for col in columns:
        if col not in table:
            raise UserError(f"{path}: column '{col}' is missing ({len(table)} rows, columns "
                            f"{list(table.columns)[:8]})")
        if numeric and not (pd.api.types.is_numeric_dtype(table[col])
                            or table[col].isna().all()):
            raise UserError(f"{path}: column '{col}' holds {table[col].dtype} values, not "
                            "numbers")


def get(meta: dict, path: Path, key: str, kind: type | tuple[type, ...], default):
    """`meta[key]` when it has the type a plot reads, `default` when absent; another type is
    a one-line UserError naming the file and the key."""
    value = meta.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise UserError(f"{path}: '{key}' has the wrong type ({type(value).__name__}: "
                        f"{str(value)[:60]!r})")
    return value


def bayes_values(meta: dict, path: Path) -> dict[str, float]:
    """`best_accuracy` of a config.json or compare.json: names to numbers (or null)."""
    best = get(meta, path, "best_accuracy", dict, {})
    for key, value in best.items():
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, (int, float))):
            raise UserError(f"{path}: 'best_accuracy.{key}' must be a number, got {value!r}")
    return best


def plots_folder(folder: Path) -> Path:
    """`<folder>/plots`, created if missing, inside `folder` (never through a link out)."""
    return make_folder(folder / "plots", folder)


def modality_color(i: int) -> str:
    return f"C{i % 10}"


def window(n: int) -> int:
    """Rolling-mean window: about 2% of the points, at least 1."""
    return max(1, n // 50)


def save(fig: plt.Figure, out: Path, tight: bool = True) -> Path:
    """Write `fig` as the PNG `out` (inside its folder, see `write_file`) and close it."""
    if tight:
        fig.tight_layout()
    try:
        write_file(out, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    finally:
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
