"""The same seeds give the same runs as before the refactors: every number of the stored runs
(`tests/golden_runs.py`, recorded before them) is reproduced.

Floats are compared to a relative 1e-4: the runs were recorded on one CPU model, and another
one (or another BLAS path) rounds differently in the last bits (measured: at most 1.4e-5
relative over every stored number); a change of behaviour moves them by far more within a
few steps. Integers, strings and the set of keys are compared exactly; a key the stored run
lacks (a column added since) is allowed. The weights' hash is compared on the machine and
torch the file was recorded with, their per-tensor sums everywhere."""

import json
import math

import pytest
from golden_runs import PATH, RUNS, machine, record

STORED = json.loads(PATH.read_text())
REL, ABS = 1e-4, 1e-6


def _same(a, b, where: str = "") -> list[str]:
    """Where the stored value `a` and today's `b` differ (NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        missing = sorted(set(a) - set(b))
        if missing:
            return [f"{where}: keys {missing} are gone"]
        return [d for k in a for d in _same(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return [] if math.isnan(a) and math.isnan(b) else [f"{where}: {a!r} != {b!r}"]
        return [] if math.isclose(a, b, rel_tol=REL, abs_tol=ABS) else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} != {b!r}"]


@pytest.fixture(scope="module")
def datasets():
    return {}


@pytest.mark.parametrize("name", list(RUNS))
def test_run_reproduces_the_stored_numbers(name, datasets):
    now = json.loads(json.dumps(record(name, datasets)))  # as stored: through JSON
    stored = dict(STORED["runs"][name])
    recorded_on = STORED.get("recorded_on", {}).get(name, STORED.get("machine"))
    if recorded_on != machine():
        stored.pop("weights")
    diffs = _same(stored, now)
    assert not diffs, f"{len(diffs)} differences, first: {diffs[:5]}"


def test_the_stored_runs_are_not_trivial():
    for name, run in STORED["runs"].items():
        assert len(run["steps"]) >= 9 and len(run["epochs"]) == 3, name
        losses = {round(s["loss"], 6) for s in run["steps"]}
        assert len(losses) > 5, name  # training moved
        assert run.get("weights_sums"), name
    assert any(k.startswith("rl_") for k in STORED["runs"]["mla-dus-rl"]["steps"][-1])
