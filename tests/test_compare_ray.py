"""The comparison grid on Ray tasks gives the same results as running it in-process."""

import pytest
import torch

from mmbalance.compare import RunSpec, run_grid, run_one

pytestmark = pytest.mark.ray


def test_ray_grid_matches_sequential(ray_session, small_synthetic, tmp_path):
    specs = [RunSpec("joint", "bss-l", 0, {"epochs": 2}), RunSpec("mla", "dus-h", 1, {"epochs": 2})]
    rows = run_grid(small_synthetic, specs, tmp_path, parallel="ray", progress=False)
    assert ray_session.is_initialized()  # a cluster it did not start is left running
    assert [(r["method"], r["sampler"], r["seed"]) for r in rows] == [
        ("joint", "bss-l", 0), ("mla", "dus-h", 1)]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(s.key for s in specs)
    threads = torch.get_num_threads()
    try:
        local = [run_one(small_synthetic, s, None, threads=1) for s in specs]
    finally:
        torch.set_num_threads(threads)
    for remote_row, local_row in zip(rows, local):
        assert remote_row["test_acc"] == local_row["test_acc"]
        assert remote_row["final_discrepancy"] == pytest.approx(local_row["final_discrepancy"])
