"""A comparison's tables: mean ± std over seeds per row, what each row cost against its
base method with uniform sampling (the compute ledger), the unimodal ensemble, and how much
each base method leaves each modality below its probe trained alone (headroom).

A gain counts only at equal compute: every row's total encoder updates, gradient samples
and no-grad forward samples are divided by its base row's (the same method, sampler
`uniform`, no row options), and a row whose totals differ by more than 2 %, or whose quota
meaning adds updates (`extra-steps`), is flagged.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_softmax

from mmbalance.compare.grid import ALONE, search_cost
from mmbalance.trainers.ledger import PER_ENCODER
from mmbalance.trainers.metrics import classification_metrics
from mmbalance.trainers.quota import ADDS_COMPUTE

ENSEMBLE = "ensemble"  # the unimodal ensemble's method name in the tables
TOLERANCE = 0.02  # a ledger total this far from its base's is flagged


def _group(r: dict) -> tuple[str, str, str]:
    return r["method"], r["sampler"], r.get("options", "") or ""


def _metrics(modalities: list[str]) -> list[str]:
    out = ["test_acc", "test_f1", "test_map", "val_acc"]
    out += [f"test_acc_{m}" for m in modalities] + [f"test_probe_acc_{m}" for m in modalities]
    out.append("final_discrepancy")
    out += [f"ledger_{kind}_{m}" for kind in PER_ENCODER for m in modalities]
    out += ["ledger_optimizer_steps", "ledger_wall_seconds"]
    return out


def summarize(rows: list[dict], modalities: list[str]) -> list[dict]:
    """Mean and std over seeds per row (method, sampler, row options), in first-seen order;
    diverged runs are counted (`diverged`), never averaged in (a cell where all diverged has
    NaN); a row chosen on validation names its choice (`chosen`). Then each row's ledger
    against its base (`ledger_ratios`)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault(_group(r), []).append(r)
    out = []
    for (method, sampler, options), every in groups.items():
        rs = [r for r in every if not r.get("diverged")]
        row = {"method": method, "sampler": sampler, "options": options, "seeds": len(rs),
               "diverged": len(every) - len(rs),
               "seed_list": sorted({int(r["seed"]) for r in rs}),
               "chosen": next((r.get("variant", "") for r in every if r.get("variant")), ""),
               "quota_mode": next((r.get("quota_mode") for r in every), None)}
        # what finding the row cost: every candidate's runs for a row chosen on validation
        # (`choose`), else the row's own runs (a PBT row's carry their population's)
        total = next((r for r in every if "search_runs_total" in r), None)
        runs, steps = ((total["search_runs_total"], total["search_steps_total"]) if total
                       else search_cost(every))
        row["search_runs"], row["search_steps"] = int(runs), float(steps)
        for k in _metrics(modalities):
            v = np.array([r.get(k, np.nan) for r in rs], dtype=np.float64)
            v = v[np.isfinite(v)] if k.startswith("ledger_") else v
            row[f"{k}_mean"] = float(v.mean()) if len(v) else math.nan
            row[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else math.nan
        out.append(row)
    ledger_ratios(out, modalities)
    return out


def _base(summary: list[dict], row: dict) -> dict | None:
    """The row a row's compute is measured against: its method with uniform sampling (for
    the ensemble, joint-uni's, the papers' base model)."""
    method = "joint-uni" if row["method"] == ENSEMBLE else row["method"]
    return next((r for r in summary if r["method"] == method and r["sampler"] == "uniform"
                 and not r["options"]), None)


def ledger_ratios(summary: list[dict], modalities: list[str]) -> None:
    """Each row's updates per modality and its three encoder totals relative to its base,
    and the flags (in place: `upd_ratio_<m>`, `ratio_<kind>`, `compute_flags`)."""
    for row in summary:
        row["compute_flags"] = ""
        base = _base(summary, row)
        if row["method"].startswith(ALONE) or base is None or not row["seeds"]:
            continue
        flags = []
        for m in modalities:
            row[f"upd_ratio_{m}"] = _ratio(row, base, f"ledger_updates_{m}")
        for kind in PER_ENCODER:
            total = sum(row.get(f"ledger_{kind}_{m}_mean", 0.0) for m in modalities)
            ref = sum(base.get(f"ledger_{kind}_{m}_mean", 0.0) for m in modalities)
            ratio = total / ref if ref else math.nan
            row[f"ratio_{kind}"] = ratio
            if math.isfinite(ratio) and abs(ratio - 1) > TOLERANCE:
                flags.append(f"{kind.replace('_', ' ')} x{ratio:.2f}")
        if row.get("quota_mode") in ADDS_COMPUTE and row["sampler"] != "uniform":
            flags.append(f"{row['quota_mode']} adds updates")
        row["compute_flags"] = "; ".join(flags)


def _ratio(row: dict, base: dict, key: str) -> float:
    ref = base.get(f"{key}_mean", math.nan)
    return row.get(f"{key}_mean", math.nan) / ref if ref else math.nan


def ensemble_rows(rows: list[dict], arrays: dict[str, dict], dataset) -> list[dict]:
    """The unimodal ensemble, one row per seed that has every `alone:<m>` run: the runs'
    unimodal logits, each turned into log-probabilities (so each modality's scale counts
    alike), averaged; its probes and each encoder's ledger are its alone run's."""
    modalities = list(dataset.modalities)
    alone = {(r["method"][len(ALONE):], int(r["seed"])): r for r in rows
             if r["method"].startswith(ALONE) and not r.get("diverged")}
    out = []
    for seed in sorted({s for _, s in alone}):
        runs = [alone.get((m, seed)) for m in modalities]
        if any(r is None or r["key"] not in arrays for r in runs):
            continue
        row = {"method": ENSEMBLE, "sampler": "uniform", "options": "", "variant": "",
               "seed": seed, "diverged": False,
               "alone_runs": ",".join(r["key"] for r in runs)}
        for split in ("val", "test"):
            uni = {m: arrays[r["key"]][f"{split}_logits"] for m, r in zip(modalities, runs)}
            logp = [log_softmax(z, axis=1) for z in uni.values()]
            metrics = classification_metrics(np.mean(logp, axis=0), uni,
                                             dataset.splits[split].y, dataset.num_classes)
            row.update({f"{split}_{k}": v for k, v in metrics.items()})
        for m, r in zip(modalities, runs):
            row[f"test_probe_acc_{m}"] = r.get(f"test_probe_acc_{m}", math.nan)
        # each encoder's compute is its own alone run's (an alone run also encodes the
        # other modalities, without training them: not the ensemble's cost)
        for m, r in zip(modalities, runs):
            for kind in PER_ENCODER:
                row[f"ledger_{kind}_{m}"] = r.get(f"ledger_{kind}_{m}", math.nan)
        for key in ("ledger_optimizer_steps", "ledger_wall_seconds", "ledger_train_seconds"):
            row[key] = float(sum(r.get(key, 0.0) for r in runs))
        out.append(row)
    return out


def headroom(rows: list[dict], modalities: list[str]) -> list[dict]:
    """Per base method (sampler uniform, no options) and modality: its probe trained alone
    minus its probe under the method (points), with the std of the seed-paired difference;
    `room` False where the method leaves less than one such std: sampling cannot help that
    modality there."""
    alone = {(r["method"][len(ALONE):], int(r["seed"])): r for r in rows
             if r["method"].startswith(ALONE) and not r.get("diverged")}
    methods = []
    for r in rows:
        if (r["sampler"] == "uniform" and not r.get("options") and r["method"] != ENSEMBLE
                and not r["method"].startswith(ALONE) and r["method"] not in methods):
            methods.append(r["method"])
    out = []
    for method in methods:
        for m in modalities:
            diffs = [100 * (alone[(m, int(r["seed"]))][f"test_probe_acc_{m}"]
                            - r[f"test_probe_acc_{m}"])
                     for r in rows if r["method"] == method and r["sampler"] == "uniform"
                     and not r.get("options") and not r.get("diverged")
                     and (m, int(r["seed"])) in alone and f"test_probe_acc_{m}" in r]
            if not diffs:
                continue
            mean = float(np.mean(diffs))
            std = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan
            room = bool(mean > std) if math.isfinite(std) else bool(mean > 0)
            out.append({"method": method, "modality": m, "headroom": mean, "std": std,
                        "seeds": len(diffs), "room": room})
    return out


def _pm(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    """mean ± std, or ± n/a where one seed gives no spread."""
    if not np.isfinite(mean):
        return "-"
    spread = f"{scale * std:.{digits}f}" if np.isfinite(std) else "n/a"
    return f"{scale * mean:.{digits}f} ± {spread}"


def markdown_table(summary: list[dict], modalities: list[str]) -> str:
    """Mean ± std (in %) of accuracy, macro-F1, mAP, each modality's accuracy and each
    encoder's linear-probe accuracy, and each row's encoder updates per modality against its
    base with uniform sampling (×) with the equal-compute flags. An `alone:<m>` row shows
    modality m's columns only (its other encoders were never trained)."""
    cols = [("acc", "test_acc"), ("macro-F1", "test_f1"), ("mAP", "test_map")]
    cols += [(f"acc {m}", f"test_acc_{m}") for m in modalities]
    cols += [(f"probe {m}", f"test_probe_acc_{m}") for m in modalities]
    diverged = any(r.get("diverged") for r in summary)
    options = any(r.get("options") for r in summary)
    chosen = any(r.get("chosen") for r in summary)
    head = ["method", "sampler", *(["options"] if options else []),
            *(["chosen on val"] if chosen else []), *(c for c, _ in cols), "final D",
            "updates vs base", "equal compute", *(["diverged"] if diverged else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        alone = r["method"][len(ALONE):] if r["method"].startswith(ALONE) else None
        cells = [r["method"], r["sampler"]]
        cells += [r.get("options") or "-"] if options else []
        cells += [r.get("chosen") or "-"] if chosen else []
        for _, k in cols:
            shown = alone is None or k in (f"test_acc_{alone}", f"test_probe_acc_{alone}")
            cells.append(_pm(r.get(k + "_mean", np.nan), r.get(k + "_std", np.nan))
                         if r["seeds"] and shown else "-")
        d = r.get("final_discrepancy_mean", np.nan)
        cells.append(f"{d:.3f}" if r["seeds"] and alone is None and np.isfinite(d) else "-")
        ratios = [f"{m} x{r[f'upd_ratio_{m}']:.2f}" for m in modalities
                  if np.isfinite(r.get(f"upd_ratio_{m}", np.nan))]
        cells.append(", ".join(ratios) if ratios else "-")
        has_base = np.isfinite(r.get("ratio_updates", np.nan))
        cells.append(f"no: {r['compute_flags']}" if r.get("compute_flags")
                     else "yes" if has_base else "-")
        if diverged:
            n = r["seeds"] + r.get("diverged", 0)
            cells.append(f"{r.get('diverged', 0)} of {n} runs diverged")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def search_cost_text(summary: list[dict], learned: dict[str, dict] | None = None) -> str:
    """What each row cost to find, beside what it cost to run: training runs and training
    iterations over every candidate (a row chosen on validation, a PBT population), per
    evaluated seed; `learned` adds, per learned sampler, what learning it cost (env steps,
    episodes, training iterations of those episodes). Empty where every row is one run
    per seed (nothing was searched)."""
    learned = learned or {}
    searched = [r for r in summary if r.get("search_runs", 0) > r.get("seeds", 0)
                + r.get("diverged", 0) or r["sampler"] in learned]
    if not searched:
        return ""
    lines = [("Search cost: the training runs and training iterations spent to find each row's "
             "policy (all candidates, all seeds; a learned policy: its learning episodes, "
             "each also trains a paired reference run), and per evaluated seed."), "",
             ("| method | sampler | training runs | training iterations | runs per seed | "
             "iterations per seed |"), "|---|---|---|---|---|---|"]
    for r in summary:
        n = max(1, r.get("seeds", 0) + r.get("diverged", 0))
        runs, steps = r.get("search_runs", n), r.get("search_steps", 0.0)
        if r["sampler"] in learned:
            cost = learned[r["sampler"]]
            runs += int(cost.get("episodes", 0))
            steps += float(cost.get("iterations", 0))
        lines.append(f"| {r['method']} | {r['sampler']} | {runs} | {steps:.0f} | "
                     f"{runs / n:.1f} | {steps / n:.0f} |")
    return "\n".join(lines)


def headroom_text(rows: list[dict]) -> str:
    """The imbalance diagnosis a user reads first: each modality's headroom per base
    method, and where sampling cannot help."""
    if not rows:
        return ""
    lines = [("Headroom: each modality's probe trained alone minus its probe under the base "
             "method with uniform sampling (points, ± std of the seed-paired difference)."), "",
             "| method | modality | headroom | sampling can help |", "|---|---|---|---|"]
    for h in rows:
        std = f"{h['std']:.1f}" if math.isfinite(h["std"]) else "n/a"
        lines.append(f"| {h['method']} | {h['modality']} | {h['headroom']:+.1f} ± {std} | "
                     f"{'yes' if h['room'] else 'no'} |")
    closed = [f"{h['modality']} under {h['method']}" for h in rows if not h["room"]]
    if closed:
        lines += ["", "Less than one seed-std of headroom, so sampling cannot help: "
                  + ", ".join(closed) + "."]
    return "\n".join(lines)


def reference_line(dataset) -> str:
    if not dataset.best_accuracy:
        return ""
    parts = [f"{k} {100 * v:.1f}%" for k, v in dataset.best_accuracy.items()]
    return "Bayes-optimal accuracy (known for this data): " + ", ".join(parts)
