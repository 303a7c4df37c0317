"""Accuracy benchmark: the `compare` grid on synthetic and digits data over several seeds.

Writes `results/accuracy_<data>.md` (the table, with how it was made) and keeps the raw runs
under `results/raw/` (not committed). Usage: python benchmarks/accuracy.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from _common import RESULTS, header, invocation

from mmbalance.cli import main as cli

DATASETS = {"synthetic": "synthetic", "digits": "digits"}


def run(name: str, spec: str, seeds: int, extra: list[str]) -> None:
    raw = RESULTS / "raw" / f"accuracy-{name}"
    if raw.exists():
        shutil.rmtree(raw)
    t0 = time.perf_counter()
    rc = cli(["compare", "--data", spec, "--seeds", str(seeds), "--out", str(raw), *extra])
    if rc != 0:
        sys.exit(rc)
    minutes = (time.perf_counter() - t0) / 60
    summary = (raw / "summary.md").read_text().strip()
    text = (
        f"{header(invocation())} The grid ran as `mmbalance compare --data {spec} --seeds "
        f"{seeds}` in {minutes:.1f} min. Test metrics (%) of each run's best-validation epoch, "
        f"mean ± std over seeds; final D is the training discrepancy max ŝ - min ŝ at the end.\n\n"
        f"{summary}\n"
    )
    (RESULTS / f"accuracy_{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--data", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args, extra = p.parse_known_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.data:
        run(name, DATASETS[name], args.seeds, extra)
