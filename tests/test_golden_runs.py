"""The same seeds give the same runs as before the refactor: every number of the stored runs
(`tests/golden_runs.py`, recorded before it) is reproduced exactly."""

import json
import math

import pytest
from golden_runs import PATH, RUNS, record

STORED = json.loads(PATH.read_text())


def _same(a, b, where: str = "") -> list[str]:
    """Where two nested JSON values differ (NaN equals NaN; floats compared exactly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _same(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} != {b!r}"]


@pytest.fixture(scope="module")
def datasets():
    return {}


@pytest.mark.parametrize("name", list(RUNS))
def test_run_reproduces_the_stored_numbers(name, datasets):
    now = json.loads(json.dumps(record(name, datasets)))  # as stored: through JSON
    diffs = _same(STORED["runs"][name], now)
    assert not diffs, f"{len(diffs)} differences, first: {diffs[:5]}"


def test_the_stored_runs_are_not_trivial():
    for name, run in STORED["runs"].items():
        assert len(run["steps"]) >= 9 and len(run["epochs"]) == 3, name
        losses = {round(s["loss"], 6) for s in run["steps"]}
        assert len(losses) > 5, name  # training moved
    assert any(k.startswith("rl_") for k in STORED["runs"]["mla-dus-rl"]["steps"][-1])
