"""Plots of a run, comparison, sweep or learn folder, written as PNGs into `<folder>/plots/`.

One module per kind of folder (`run.py`, `compare.py`, `sweep.py`, `learn.py`) over what
they share (`common.py`); `make_report` tells the kinds apart.

A run folder (it holds `steps.parquet`) gives `accuracy.png`, `status.png`,
`discrepancy.png`, and, when the sampler makes them vary, `quotas.png` and `subset.png`;
an online policy's run (dus-rl: `rl_*` step columns) adds `policy.png`.
A comparison folder (it holds `compare.json`) gives `accuracy_by_method.png`,
`discrepancy_curves.png`, `weak_modality.png` and (with probe accuracies)
`accuracy_vs_weak_probe.png`. Modality names come from the
`s_hat_<m>` columns of `steps.parquet`; the Bayes accuracies (`best_accuracy`, keyed by
modality and `all` for the fused input) are drawn as dashed lines where known, and chance
(1 / number of classes, where the folder records `num_classes`) as a dotted grey line.

Plots are made for a person: titles name the data, epoch and step axes have integer ticks,
a one-epoch run is a visible point in a sensible x-range, and a curve identical to one drawn
before it is drawn dashed with hollow markers and labelled "(= the other)" instead of
vanishing behind it.
"""

from __future__ import annotations

from pathlib import Path

from mmbalance.errors import UserError
from mmbalance.limits import check_path
from mmbalance.report.common import data_label, discover_modalities

__all__ = ["data_label", "discover_modalities", "make_report"]


def make_report(path: str | Path) -> list[Path]:
    """Write the plots of a run or comparison folder into `<path>/plots/`; return their paths."""
    folder = check_path(path, "report")
    if (folder / "steps.parquet").is_file():
        from mmbalance.report.run import run_report

        return run_report(folder)
    if (folder / "compare.json").is_file():
        from mmbalance.report.compare import compare_report

        return compare_report(folder)
    if (folder / "sweep.yaml").is_file() and (folder / "results.parquet").is_file():
        from mmbalance.report.sweep import sweep_report

        return sweep_report(folder)
    if (folder / "learn_config.yaml").is_file() and (folder / "progress.parquet").is_file():
        from mmbalance.report.learn import learn_report

        return learn_report(folder)
    expected = ("a run folder (with steps.parquet), a comparison folder (with compare.json), "
                "a finished sweep folder (with sweep.yaml and results.parquet) or a learn "
                "folder (with learn_config.yaml and progress.parquet)")
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; expected {expected}")
    raise UserError(f"{folder}: not a run or comparison folder; expected {expected}")
