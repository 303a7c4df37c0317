"""A finished (or interrupted) sweep's tables: `results.parquet` (one row per trial: its
config and last metrics), `trials.parquet` (every reported row of every trial) and
`summary.md` (best trial first; an errored trial is never ranked)."""

from __future__ import annotations

import math
from pathlib import Path

from mmbalance.errors import UserError
from mmbalance.tune.sweep.config import SweepConfig


def _config_columns(config: dict, cfg: SweepConfig) -> dict:
    out = {}
    for key in cfg.search_space:
        node = config
        path = key.split(".")
        if cfg.trainable == "learn" and path[0] == "training":
            path = path[1:]
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        out[f"config/{key}"] = node if not isinstance(node, dict) else None
    return out


def write_results(cfg: SweepConfig, out: Path, results, seconds: float,
                  unfinished: int = 0) -> dict:
    """The tables; `unfinished` trials (an interrupted sweep) make the summary say that it is
    partial, that its best is only the best so far, and how to continue it."""
    import pandas as pd

    from mmbalance.runs import write_table

    rows, history = [], []
    for r in results:
        metrics = {k: v for k, v in (r.metrics or {}).items() if k != "config"}
        trial_id = str(metrics.get("trial_id") or (Path(r.path).name if r.path else "?"))
        row = {"trial": trial_id, "status": "ERROR" if r.error else "TERMINATED"}
        row.update(_config_columns(r.config or {}, cfg))
        row.update({k: v for k, v in _flat(metrics).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
        rows.append(row)
        df = _epoch_history(r) if cfg.trainable == "train" else None
        if df is None:
            df = _trial_history(r)
        if df is not None:
            df.insert(0, "trial", trial_id)
            history.append(df)
    write_table(out / "results.parquet", rows)
    if history:
        hist = pd.concat(history, ignore_index=True)
        keep = [c for c in hist.columns if c == "trial" or pd.api.types.is_numeric_dtype(hist[c])]
        hist[keep].to_parquet(out / "trials.parquet")
    metric = cfg.metric
    # a trial that ended in an error (e.g. its loss diverged) is not a result: not ranked
    ok = [r for r in rows if r["status"] != "ERROR" and isinstance(r.get(metric), (int, float))
          and math.isfinite(r[metric])]
    ok.sort(key=lambda r: r[metric], reverse=cfg.mode == "max")
    cols = [c for c in rows[0] if c.startswith("config/")] if rows else []
    head = (f"Sweep `{cfg.name}`: {len(rows)} trials in {seconds / 60:.1f} min, "
            f"metric `{metric}` ({cfg.mode}).")
    errored = sum(r["status"] == "ERROR" for r in rows)
    if errored:
        head += f" {errored} trial(s) ended in an error (e.g. a diverged loss) and are not ranked."
    if unfinished:
        head += (f" PARTIAL: interrupted with {unfinished} of {len(rows)} trial(s) unfinished; "
                 f"continue it with `mmbalance sweep --resume {out}`.")
    lines = [head, ""]
    if ok:
        best = ok[0]
        lines += [("Best trial so far: " if unfinished else "Best trial: ") + best["trial"] + ", " + ", ".join(
            f"{c[len('config/'):]}={best[c]}" for c in cols) + f" -> {metric} = {best[metric]:.4f}",
            ""]
    lines += ["| trial | " + " | ".join(c[len("config/"):] for c in cols) + f" | {metric} |",
              "|" + "---|" * (len(cols) + 2)]
    for r in ok:
        lines.append(f"| {r['trial']} | " + " | ".join(str(r[c]) for c in cols)
                     + f" | {r[metric]:.4f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return {"rows": rows, "best": ok[0] if ok else None, "summary": "\n".join(lines)}


def _epoch_history(result):
    """A plain-trainer trial's epochs from its last checkpoint: the trainer's own history,
    restored with it across crashes and resumes, so every epoch appears exactly once."""
    import pandas as pd

    from mmbalance.manifest import verify_folder
    from mmbalance.trainers.state import load_file

    if result.checkpoint is None:
        return None
    try:
        with result.checkpoint.as_directory() as d:
            verify_folder(d)
            epochs = load_file(Path(d) / "trainer.pt")["history"]["epochs"]
    except (UserError, OSError):  # checkpoint gone (e.g. deleted): fall back to result.json
        return None
    df = pd.DataFrame(epochs)
    df.insert(0, "training_iteration", df["epoch"] + 1)
    return df


def _trial_history(result):
    """Every report of a trial, from its result.json (complete across retries and restores;
    progress.csv can lose the rows before a retry), read through pyarrow's filesystems so
    URI storage works too."""
    import json

    import pandas as pd
    from pyarrow import fs

    if result.path:
        try:
            filesystem, base = fs.FileSystem.from_uri(result.path)
        except (ValueError, TypeError):
            filesystem, base = fs.LocalFileSystem(), result.path
        try:
            with filesystem.open_input_stream(f"{base}/result.json") as f:
                lines = f.read().decode().splitlines()
            rows = [_flat({k: v for k, v in json.loads(ln).items() if k != "config"})
                    for ln in lines if ln.strip()]
            if rows:  # an iteration re-run after a restore: its last report counts
                df = pd.DataFrame(rows)
                if "training_iteration" in df:
                    df = df.drop_duplicates("training_iteration", keep="last")
                return df.reset_index(drop=True)
        except (OSError, json.JSONDecodeError):
            pass
    return result.metrics_dataframe.copy() if result.metrics_dataframe is not None else None


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out
