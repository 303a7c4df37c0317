"""Where adaptivity pays: a stationary data family in which no constant quota share is best.

The family is `synthetic:preset=shifting` (mmbalance/data/synthetic.py): an easy audio
modality that fits in about two epochs but is informative on 70% of the samples, and a
mirrored visual one that is informative on all of them and learns slowly. The method is
joint-uni with a fusion-dominated loss (unimodal weight 0.03), under a short budget. Once
audio fits, the fusion loss is small and pushes visual little: a constant share must either
starve audio for the whole run or let it silence visual early. A two-phase schedule that
trains visual (nearly) alone first and both afterwards escapes that trade-off. All rows run
at equal compute (the default quota meaning `share`; the ledger columns are checked).

1. Headroom: joint-uni with uniform sampling at a learning rate chosen on validation
   (0.3x/1x/3x the base) against each modality trained alone (`--unimodal-reference`): the
   visual probe must lie below its probe trained alone by more than one seed-std.
2. Constant shares: `fixed:quotas=a/b` over a grid of visual shares, 5 seeds, at that
   learning rate; the best on validation.
3. Two-phase schedules: `schedule:quotas=...,then=...,at=E` over a grid, chosen on
   validation; the best schedule against the best constant as the seed-paired test
   difference (accuracy and visual probe), then both again on 5 fresh seeds.
The bar: the best schedule beats the best constant on test accuracy by more than one std of
the seed-paired difference, on the picking seeds and on the fresh ones.

Writes results/adaptivity.md and results/adaptivity_curves.png (validation accuracy per
epoch, mean over the picking seeds); raw runs under results/raw/adaptivity (not committed).
Usage: python benchmarks/adaptivity.py [--seeds 5] [--tables-only]
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from _common import RESULTS, header, invocation, run_compare, write_result

from mmbalance.runs import read_json

DATA = "synthetic:preset=shifting"
METHOD = "joint-uni"
STRONG, WEAK = "audio", "visual"
EPOCHS = 10
BASE_LR = 0.01
BATCH = 64
# the fusion-dominated loss: the fusion CE at weight 1, each unimodal CE at 0.03
TRAIN_SET = ["--set", "uni_loss_weights=0.03"]
# visual's share of the iteration's encoder updates (quotas a/b with a + b = 2B)
WEAK_SHARES = (0.5, 0.75, 0.8125, 0.875, 0.90625, 0.9375, 0.96875)
# schedules: visual (almost) alone first, then these quotas from epoch `at`
FIRST = ("1/127",)
THEN = ("64/64", "48/80", "32/96")
AT = (3, 4, 5, 6)
RAW = RESULTS / "raw" / "adaptivity"


def fixed(share: float) -> str:
    weak = round(2 * BATCH * share)
    return f"fixed:quotas={2 * BATCH - weak}/{weak}"


def schedules() -> list[str]:
    return [f"schedule:quotas={a},then={b},at={at}" for a in FIRST for b in THEN for at in AT]


def row_name(sampler: str) -> str:
    return f"{METHOD}/{sampler}"


def load(raw: Path) -> pd.DataFrame:
    res = pd.read_parquet(raw / "results.parquet")
    res["options"] = res["options"].fillna("")
    res = res[res["chosen"].fillna(True).astype(bool)]
    return res[~res["diverged"].fillna(False).astype(bool)]


def by_sampler(res: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rows = res[res["method"] == METHOD]
    return {s: g.set_index("seed").sort_index() for s, g in rows.groupby("sampler", sort=False)}


def paired(a: pd.DataFrame, b: pd.DataFrame, col: str) -> tuple[float, float, int]:
    """Mean and std (points) over the shared seeds of a - b."""
    seeds = sorted(set(a.index) & set(b.index))
    d = 100 * (a.loc[seeds, col].to_numpy() - b.loc[seeds, col].to_numpy())
    return (float(d.mean()) if len(d) else math.nan,
            float(d.std(ddof=1)) if len(d) > 1 else math.nan, len(d))


def pm(values: pd.Series) -> str:
    v = 100 * values.to_numpy(dtype=float)
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"


def ledger(g: pd.DataFrame, mods: list[str]) -> dict[str, float]:
    """Mean totals per encoder: updates, gradient samples and no-grad samples."""
    return {f"{kind}_{m}": float(g[f"ledger_{kind}_{m}"].mean())
            for kind in ("updates", "grad_samples", "nograd_samples") for m in mods}


def step1(seeds: int, tables_only: bool) -> tuple[str, float, dict]:
    """Headroom at the learning rate chosen on validation; returns (text, lr, headroom)."""
    raw = RAW / "headroom"
    args = ["compare", "--data", DATA, "--epochs", str(EPOCHS), "--lr", str(BASE_LR),
            *TRAIN_SET, "--seeds", str(seeds), "--unimodal-reference", "--tune-lr",
            "--grid", row_name("uniform")]
    command, minutes, table = _compare(args, raw, tables_only)
    res = load(raw)
    uni = res[(res["method"] == METHOD) & (res["sampler"] == "uniform")].set_index("seed")
    lr = float(uni["lr"].iloc[0])
    alone = res[res["method"] == f"alone:{WEAK}"].set_index("seed")
    room = paired(alone, uni, f"test_probe_acc_{WEAK}")
    text = (f"#### 1. Headroom\n\nThe run: `{command}`{minutes}.\n\n{table}\n\n"
            f"Learning rate chosen on validation for {METHOD}/uniform: **{lr:g}** (used "
            f"below). {WEAK}'s probe trained alone minus under {METHOD}/uniform: "
            f"**{room[0]:+.1f} ± {room[1]:.1f}** points ({room[2]} seeds): "
            + ("headroom (more than one seed-std)." if room[0] > room[1] else
               "**no headroom** (not more than one seed-std)."))
    return text, lr, {"mean": room[0], "std": room[1]}


def _compare(args: list[str], raw: Path, tables_only: bool) -> tuple[str, str, str]:
    """Run one comparison into `raw`, or with `tables_only` read the one there."""
    if tables_only:
        return "mmbalance " + " ".join(args), "", (raw / "summary.md").read_text().strip()
    command, minutes, table = run_compare(args, raw, ["--no-progress"])
    return command, f" ({minutes:.1f} min)", table


def search_args(lr: float, seeds: int, first: int, grid: list[str]) -> list[str]:
    return ["compare", "--data", DATA, "--epochs", str(EPOCHS), "--lr", f"{lr:g}", *TRAIN_SET,
            "--seeds", str(seeds), "--first-seed", str(first), "--grid",
            *[row_name(s) for s in grid]]


def best_on_val(groups: dict[str, pd.DataFrame], names: list[str]) -> str:
    return max(names, key=lambda s: float(groups[s]["val_acc"].mean()))


def verdict_rows(groups: dict[str, pd.DataFrame], const: str, sched: str,
                 mods: list[str]) -> tuple[list[str], dict]:
    """Table lines of schedule vs constant, and the numbers."""
    acc = paired(groups[sched], groups[const], "test_acc")
    probe = paired(groups[sched], groups[const], f"test_probe_acc_{WEAK}")
    val = paired(groups[sched], groups[const], "val_acc")
    ls, lc = ledger(groups[sched], mods), ledger(groups[const], mods)
    # equal compute: the same total encoder updates and gradient samples (a share moves
    # them between the encoders, so the per-encoder numbers differ by design)
    equal = all(abs(sum(ls[f"{kind}_{m}"] for m in mods) - sum(lc[f"{kind}_{m}"] for m in mods))
                <= 0.02 * sum(lc[f"{kind}_{m}"] for m in mods)
                for kind in ("updates", "grad_samples"))
    lines = [
        ("| row | val acc | test acc | test acc visual | probe visual | probe audio | "
        "updates audio/visual | grad samples audio/visual | no-grad samples audio/visual |"),
        "|---|---|---|---|---|---|---|---|---|"]
    for name, g, led in (("best constant: " + const, groups[const], lc),
                         ("best schedule: " + sched, groups[sched], ls)):
        lines.append(
            f"| {name} | {pm(g['val_acc'])} | {pm(g['test_acc'])} | "
            f"{pm(g[f'test_acc_{WEAK}'])} | {pm(g[f'test_probe_acc_{WEAK}'])} | "
            f"{pm(g[f'test_probe_acc_{STRONG}'])} | "
            f"{led['updates_audio']:.0f}/{led['updates_visual']:.0f} | "
            f"{led['grad_samples_audio']:.0f}/{led['grad_samples_visual']:.0f} | "
            f"{led['nograd_samples_audio']:.0f}/{led['nograd_samples_visual']:.0f} |")
    holds = equal and math.isfinite(acc[1]) and acc[0] > acc[1]
    lines += ["", (f"Schedule − constant, seed-paired over {acc[2]} seeds: test accuracy "
              f"**{acc[0]:+.2f} ± {acc[1]:.2f}**, {WEAK} probe {probe[0]:+.2f} ± "
              f"{probe[1]:.2f}, validation accuracy {val[0]:+.2f} ± {val[1]:.2f}; equal "
              f"total encoder updates and gradient samples: {'yes' if equal else '**no**'}. "
              f"Bar (test gain > one std, equal compute): **{'met' if holds else 'not met'}**.")]
    return lines, {"acc": acc, "probe": probe, "equal": equal, "holds": holds}


def curves(raw: Path, res: pd.DataFrame, names: list[str], path: Path) -> None:
    """Validation accuracy per epoch, mean over seeds, one line per row."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for sampler in names:
        keys = res[(res["method"] == METHOD) & (res["sampler"] == sampler)]["key"]
        per_seed = [pd.read_parquet(raw / "runs" / k / "epochs.parquet")["val_acc"].to_numpy()
                    for k in keys]
        mean = 100 * np.mean(per_seed, axis=0)
        style = "-" if sampler.startswith("schedule") else "--" if sampler != "uniform" else ":"
        ax.plot(np.arange(1, len(mean) + 1), mean, style, label=sampler.split(":", 1)[-1])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%), mean over seeds")
    ax.set_title(f"{DATA}, {METHOD} (unimodal weight 0.03)")
    ax.legend(fontsize=7)
    lo = min(line.get_ydata().min() for line in ax.get_lines())
    ax.set_ylim(max(lo, 60), None)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tables-only", action="store_true",
                   help="rebuild the result file from results/raw/adaptivity")
    p.add_argument("--reuse", action="store_true",
                   help="read each comparison whose folder under results/raw/adaptivity "
                        "is complete instead of running it again")
    args = p.parse_args()
    n = args.seeds

    def done(name: str) -> bool:
        return args.tables_only or (args.reuse and (RAW / name / "summary.md").is_file())

    text1, lr, _ = step1(n, done("headroom"))

    consts = [fixed(s) for s in WEAK_SHARES]
    scheds = schedules()
    raw = RAW / "search"
    command, minutes, _ = _compare(search_args(lr, n, 0, ["uniform", *consts, *scheds]), raw,
                                   done("search"))
    mods = read_json(raw / "compare.json")["modalities"]
    res = load(raw)
    groups = by_sampler(res)
    const = best_on_val(groups, consts)
    sched = best_on_val(groups, scheds)
    table = ["| row | visual share | val acc | test acc | probe visual |", "|---|---|---|---|---|"]
    for s in ["uniform", *consts]:
        g = groups[s]
        share = "0.5" if s == "uniform" else f"{WEAK_SHARES[consts.index(s)]:g}"
        mark = " (best on val)" if s == const else ""
        table.append(f"| {s}{mark} | {share} | {pm(g['val_acc'])} | {pm(g['test_acc'])} | "
                     f"{pm(g[f'test_probe_acc_{WEAK}'])} |")
    stable = ["| schedule | val acc | test acc | probe visual |", "|---|---|---|---|"]
    for s in scheds:
        g = groups[s]
        mark = " (best on val)" if s == sched else ""
        stable.append(f"| {s}{mark} | {pm(g['val_acc'])} | {pm(g['test_acc'])} | "
                      f"{pm(g[f'test_probe_acc_{WEAK}'])} |")
    lines, picked = verdict_rows(groups, const, sched, mods)
    plot = RESULTS / "adaptivity_curves.png"
    curves(raw, res, ["uniform", *consts, sched], plot)

    craw = RAW / "confirm"
    ccommand, cminutes, _ = _compare(search_args(lr, n, n, [const, sched]), craw,
                                     done("confirm"))
    clines, confirmed = verdict_rows(by_sampler(load(craw)), const, sched, mods)

    # the unimodal ensemble (each modality trained alone, logits averaged; equal compute)
    # of step 1, on the same seeds: what no sampling at all gets on this data
    hres = load(RAW / "headroom")
    ens = hres[hres["method"] == "ensemble"].set_index("seed").sort_index()
    vs_ens = paired(groups[sched], ens, "test_acc")
    ens_line = (f"Against the unimodal ensemble of step 1 (seeds 0..{n - 1}, equal compute), "
                f"the best schedule's test accuracy: {vs_ens[0]:+.2f} ± {vs_ens[1]:.2f}.")
    holds = picked["holds"] and confirmed["holds"]
    acc, cacc = picked["acc"], confirmed["acc"]
    summary = (f"- On `{DATA}` ({METHOD}, unimodal weight 0.03, {EPOCHS} epochs, lr {lr:g}, "
               f"equal compute), the best two-phase schedule `{sched}` against the best "
               f"constant share `{const}` (both chosen on validation): test accuracy "
               f"{acc[0]:+.2f} ± {acc[1]:.2f} on the picking seeds 0..{n - 1}, "
               f"{cacc[0]:+.2f} ± {cacc[1]:.2f} on fresh seeds {n}..{2 * n - 1}; "
               + ("the bar (> one std on both) is **met**: no constant share is optimal here."
                  if holds else "the bar (> one std on both) is **not met**."))
    text = "\n".join([
        header(invocation()), "", summary, "",
        text1, "",
        "#### 2. Constant shares and 3. two-phase schedules", "",
        (f"The run: `{command}`{minutes}: {len(consts)} constants and {len(scheds)} "
        f"schedules, {n} seeds each ({(len(consts) + len(scheds) + 1) * n} runs). "
        "Mean ± std over seeds; test metrics of the best-validation epoch."), "",
        *table, "", *stable, "",
        f"![validation accuracy per epoch]({plot.relative_to(RESULTS.parents[1]).as_posix()})",
        "", "Best constant against best schedule, picking seeds:", "", *lines, "", ens_line, "",
        (f"Confirmation on fresh seeds {n}..{2 * n - 1} (they picked nothing): "
        f"`{ccommand}`{cminutes}."), "", *clines, ""])
    write_result("adaptivity", text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
