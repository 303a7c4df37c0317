"""Gains at equal compute, against the baselines a reviewer asks for.

For each data set and budget, one `mmbalance compare` with
- every row at equal compute (the default quota meaning `share`; the ledger flags any row
  that is not) and its learning rate chosen on validation (`--tune-lr`: 0.3x, 1x, 3x);
- the best fixed quota share per quota method, chosen on validation (`--best-fixed`);
- each modality trained alone and the unimodal ensemble (`--unimodal-reference`).
Each sampler row is then set against (a) its method with uniform sampling, (c) its method's
best fixed share and (d) the unimodal ensemble ((b), the tuned learning rate, applies to
every row): the change of multimodal accuracy and of the weak modality's probe accuracy,
mean ± std over seeds of the seed-paired difference. A row *holds* where it is at equal
compute and gains >= one std on the weak probe with accuracy not lower against all three.
A row that holds on seeds 0-4 is confirmed on seeds 5-9, which did not pick it.

Budgets: `converged` (lr 0.01, the default, and enough epochs that uniform's
best-validation epoch lies before the last quarter: checked and shown) and
`under-training` (lr 0.003, 15 epochs: the budget of the earlier tables, in which the weak
modality is still learning at the end; named as such).

Writes `results/equal_compute_<data>_<budget>.md` and `results/equal_compute_claims.md`
(the README's summary); raw runs under `results/raw/` (not committed).
Usage: python benchmarks/equal_compute.py [--data NAME ...] [--budget NAME ...]
       [--seeds 5] [--tables-only]
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import pandas as pd
from _common import RESULTS, header, invocation, run_compare, write_result

from mmbalance.runs import read_json

DATA = {  # name: selector
    "competition": "synthetic:preset=competition,n_train=2000",
    "competition3": "synthetic:preset=competition3,n_train=2000",
    "digits": "digits",
    "digits-cnn": "digits:image=true",
    "synthetic": "synthetic",
}
BUDGETS = {  # name: (compare options, data sets it runs on)
    "converged": (["--lr", "0.01", "--epochs", "30"], list(DATA)),
    "under-training": (["--lr", "0.003", "--epochs", "15"], list(DATA)),
}
GRID = ["joint/uniform", "joint/bss-h", "joint/bss-l",
        "joint-uni/uniform", "joint-uni/dus-h:strength=2", "joint-uni/dus-h",
        "joint-uni/dus-h:strength=8", "joint-uni/dus-h@quota_mode=scaled",
        "mla/uniform", "mla/dus-h:strength=2", "mla/dus-h", "mla/dus-h:strength=8",
        "mla/dus-h@quota_mode=scaled"]
RAW = RESULTS / "raw" / "equal_compute"


def label(r) -> str:
    return f"{r['method']}/{r['sampler']}" + (f"@{r['options']}" if r.get("options") else "")


def weak_modality(res: pd.DataFrame, mods: list[str]) -> str:
    """The modality joint training degrades most: its alone probe minus its joint probe."""
    def probe(method: str, m: str) -> float:
        rows = res[(res["method"] == method) & (res["sampler"] == "uniform")]
        return float(rows[f"test_probe_acc_{m}"].mean()) if len(rows) else math.nan

    return max(mods, key=lambda m: probe(f"alone:{m}", m) - probe("joint", m))


def paired(res: pd.DataFrame, row: pd.DataFrame, base: pd.DataFrame, col: str):
    """Mean and std (points) over seeds of row - base, paired by seed."""
    a = row.set_index("seed")[col]
    b = base.set_index("seed")[col]
    seeds = sorted(set(a.index) & set(b.index))
    d = 100 * (a.loc[seeds].to_numpy() - b.loc[seeds].to_numpy())
    return (float(d.mean()) if len(d) else math.nan,
            float(d.std(ddof=1)) if len(d) > 1 else math.nan)


def verdicts(raw: Path) -> tuple[str, list[dict]]:
    """The table of each sampler row against baselines (a), (c), (d), and its rows."""
    meta = read_json(raw / "compare.json")
    mods = meta["modalities"]
    res = pd.read_parquet(raw / "results.parquet")
    res["options"] = res["options"].fillna("")
    res = res[res["chosen"].fillna(True).astype(bool) | (res["method"] == "ensemble")]
    res = res[~res["diverged"].fillna(False).astype(bool)]
    summary = pd.read_parquet(raw / "summary.parquet")
    flags = {label(r): r["compute_flags"] for _, r in summary.iterrows()}
    chosen = {label(r): r.get("chosen", "") for _, r in summary.iterrows()}
    weak = weak_modality(res, mods)
    probe = f"test_probe_acc_{weak}"
    intro = (f"Weak modality: **{weak}** (joint training degrades it most). Δ = row − "
             "baseline in points, mean ± std of the seed-paired difference; (a) the method "
             "with uniform sampling, (c) its best fixed share, (d) the unimodal ensemble; "
             "every row's learning rate chosen on validation. *holds*: equal compute, Δ "
             f"probe {weak} ≥ its std and Δ acc ≥ 0 against every baseline.")
    head = ("| row | chosen on val | equal compute | Δ acc (a) | Δ probe (a) | Δ acc (c) | "
            "Δ probe (c) | Δ acc (d) | Δ probe (d) | holds |")
    lines = [intro, "", head, "|---|---|---|---|---|---|---|---|---|---|"]
    out = []
    groups = res.groupby(["method", "sampler", "options"], sort=False, dropna=False)
    frames = {(m, s, o or ""): g for (m, s, o), g in groups}
    for (method, sampler, options), g in frames.items():
        if sampler in ("uniform", "fixed:best") or method.startswith("alone:") \
                or method == "ensemble":
            continue
        bases = {"a": frames.get((method, "uniform", "")),
                 "c": frames.get((method, "fixed:best", "")),
                 "d": frames.get(("ensemble", "uniform", ""))}
        name = f"{method}/{sampler}" + (f"@{options}" if options else "")
        cells, ok = [], flags.get(name, "") == ""
        deltas = {}
        for key in ("a", "c", "d"):
            base = bases[key]
            if base is None or not len(base):
                cells += ["-", "-"]
                continue
            da, sa = paired(res, g, base, "test_acc")
            dp, sp = paired(res, g, base, probe)
            deltas[key] = (da, sa, dp, sp)
            cells += [f"{da:+.1f} ± {sa:.1f}", f"{dp:+.1f} ± {sp:.1f}"]
            ok = ok and da >= 0 and math.isfinite(sp) and dp >= sp
        eq = "yes" if flags.get(name, "") == "" else f"no ({flags[name]})"
        lines.append(f"| {name} | {chosen.get(name) or '-'} | {eq} | " + " | ".join(cells)
                     + f" | {'**yes**' if ok else 'no'} |")
        out.append({"row": name, "holds": ok, "equal": flags.get(name, "") == "",
                    "deltas": deltas})
    return "\n".join(lines), out


def converged_note(raw: Path, epochs: int) -> str:
    res = pd.read_parquet(raw / "results.parquet")
    uni = res[(res["sampler"] == "uniform") & res["chosen"].fillna(True).astype(bool)
              & ~res["method"].str.startswith("alone:") & (res["method"] != "ensemble")]
    best = uni.groupby("method")["best_epoch"].mean()
    late = [m for m, e in best.items() if e >= 0.75 * epochs]
    text = ", ".join(f"{m} {e:.1f}" for m, e in best.items())
    return (f"Uniform rows' mean best-validation epoch (of {epochs}): {text}; "
            + (f"**not converged** (last quarter): {', '.join(late)}." if late
               else "all before the last quarter (converged)."))


def run_setting(name: str, budget: str, seeds: int, first: int, tables_only: bool,
                grid: list[str], tag: str = "") -> tuple[str, list[dict]]:
    opts, _ = BUDGETS[budget]
    raw = RAW / f"{name}_{budget}{tag}"
    args = ["compare", "--data", DATA[name], *opts, "--seeds", str(seeds), "--first-seed",
            str(first), "--unimodal-reference", "--tune-lr", "--best-fixed", "--grid", *grid]
    if tables_only:
        table = (raw / "summary.md").read_text().strip()
        command, minutes = "mmbalance " + " ".join(args), math.nan
    else:
        command, minutes, table = run_compare(args, raw, ["--no-progress"])
    text, rows = verdicts(raw)
    epochs = int(opts[opts.index("--epochs") + 1])
    head = (f"The run: `{command}` ({minutes:.1f} min). {converged_note(raw, epochs)}\n\n"
            if math.isfinite(minutes) else
            f"The run: `{command}`. {converged_note(raw, epochs)}\n\n")
    return head + table + "\n\n" + text, rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    p.add_argument("--budget", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tables-only", action="store_true")
    args = p.parse_args()
    claims = []
    for budget in args.budget:
        for name in args.data:
            if name not in BUDGETS[budget][1]:
                continue
            if args.tables_only:  # the result files stay as their runs wrote them
                if not (RAW / f"{name}_{budget}" / "summary.parquet").exists():
                    continue
                _, rows = verdicts(RAW / f"{name}_{budget}")
                held = [r["row"] for r in rows if r["holds"]]
                confirmed = []
                if held and (RAW / f"{name}_{budget}_confirm").exists():
                    _, crows = verdicts(RAW / f"{name}_{budget}_confirm")
                    confirmed = [r["row"] for r in crows if r["holds"] and r["row"] in held]
                claims.append(_claim(name, budget, rows, held, confirmed))
                write_claims(claims)
                continue
            text, rows = run_setting(name, budget, args.seeds, 0, args.tables_only, GRID)
            held = [r["row"] for r in rows if r["holds"]]
            confirmed: list[str] = []
            if held:  # confirmed on fresh seeds that did not pick it
                grid = sorted({*held, *(f"{h.split('/')[0]}/uniform" for h in held)})
                ctext, crows = run_setting(name, budget, args.seeds, args.seeds,
                                           args.tables_only, grid, tag="_confirm")
                confirmed = [r["row"] for r in crows if r["holds"] and r["row"] in held]
                text += ("\n\nConfirmation on fresh seeds "
                         f"{args.seeds}..{2 * args.seeds - 1}:\n\n" + ctext)
            write_result(f"equal_compute_{name}_{budget}",
                         header(invocation()) + "\n\n" + f"### {name}, {budget} budget\n\n"
                         + text + "\n")
            claims.append(_claim(name, budget, rows, held, confirmed))
            write_claims(claims)  # after each setting: a stopped benchmark keeps its claims


def _claim(name: str, budget: str, rows: list[dict], held: list[str],
           confirmed: list[str]) -> dict:
    """One setting's verdict, with its largest accuracy gain over tuned uniform at equal
    compute and what the best fixed share says of that row."""
    equal = [r for r in rows if r["equal"] and "a" in r["deltas"]]
    best = max(equal, key=lambda r: r["deltas"]["a"][0], default=None)
    top = None
    if best is not None:
        da, sa, dp, sp = best["deltas"]["a"]
        top = {"row": best["row"], "acc": da, "acc_std": sa, "probe": dp, "probe_std": sp}
        if "c" in best["deltas"]:
            top["vs_fixed"] = best["deltas"]["c"][0]
            top["vs_fixed_std"] = best["deltas"]["c"][1]
    return {"data": name, "budget": budget, "rows": len(rows), "held": held,
            "confirmed": confirmed, "top": top}


def write_claims(claims: list[dict]) -> None:
    """At most 10 lines for the README: what holds at equal compute against the tuned
    baselines and what does not (this run's settings over those of earlier runs)."""
    import json

    path = RESULTS / "equal_compute_claims.json"
    old = json.loads(path.read_text()) if path.exists() else []
    keep = {(c["data"], c["budget"]): c for c in [*old, *claims]}
    path.write_text(json.dumps(list(keep.values()), indent=1) + "\n")
    held = sorted({f"{r} ({c['data']}, {c['budget']})" for c in keep.values()
                   for r in c["held"]})
    confirmed = sorted({f"{r} ({c['data']}, {c['budget']})" for c in keep.values()
                        for r in c["confirmed"]})
    lines = [f"- Holds at equal compute against every tuned baseline, confirmed on fresh "
             f"seeds: {', '.join(confirmed) if confirmed else '**none**'}"
             + (f"; held on the picking seeds only: {', '.join(held)}" if held and
                not confirmed else "") + "."]
    for data in dict.fromkeys(c["data"] for c in keep.values()):
        parts = []
        for c in (c for c in keep.values() if c["data"] == data):
            t = c.get("top")
            if t is None:
                parts.append(f"{c['budget']}: no row at equal compute")
                continue
            text = (f"{c['budget']}: best over tuned uniform {t['row']} "
                    f"{t['acc']:+.1f} ± {t['acc_std']:.1f} acc, {t['probe']:+.1f} weak probe")
            if "vs_fixed" in t:
                text += f", vs the best fixed share {t['vs_fixed']:+.1f} ± {t['vs_fixed_std']:.1f}"
            parts.append(text)
        lines.append(f"- {data}: " + "; ".join(parts) + ".")
    write_result("equal_compute_claims", "\n".join(lines[:10]) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
