"""The comparison grid on Ray tasks gives the same results as running it in-process, and
the driver writes every run folder from what the tasks return."""

import pandas as pd
import pytest
import torch

from mmbalance.compare import RunSpec, run_grid, run_one
from mmbalance.tracking import read_scalars

pytestmark = pytest.mark.ray


def test_ray_grid_matches_sequential(ray_session, small_synthetic, tmp_path):
    specs = [RunSpec("joint", "bss-l", 0, {"epochs": 2}), RunSpec("mla", "dus-h", 1, {"epochs": 2})]
    rows = run_grid(small_synthetic, specs, tmp_path, parallel="ray", progress=False)
    assert ray_session.is_initialized()  # a cluster it did not start is left running
    assert [(r["method"], r["sampler"], r["seed"]) for r in rows] == [
        ("joint", "bss-l", 0), ("mla", "dus-h", 1)]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(s.key for s in specs)
    node = ray_session.get_runtime_context().get_node_id()
    assert all(r["ray_node"] == node for r in rows)  # the row says where it trained
    threads = torch.get_num_threads()
    try:
        local = [run_one(small_synthetic, s, threads=1) for s in specs]
    finally:
        torch.set_num_threads(threads)
    for spec, remote_row, (local_row, record) in zip(specs, rows, local):
        assert remote_row["test_acc"] == local_row["test_acc"]
        assert remote_row["final_discrepancy"] == pytest.approx(local_row["final_discrepancy"])
        # the folder the driver wrote holds what the task produced, tables and model alike
        folder = tmp_path / "runs" / spec.key
        assert {p.name for p in folder.iterdir()} == {
            "config.json", "steps.parquet", "epochs.parquet", "metrics.json", "model.pt", "tb"}
        steps = pd.read_parquet(folder / "steps.parquet")
        assert steps.equals(record.steps.to_pandas())
        # TensorBoard events too, written here from what the task returned
        assert read_scalars(folder / "tb")["test/acc"][0][1] == pytest.approx(
            remote_row["test_acc"])
        assert len(pd.read_parquet(folder / "epochs.parquet")) == 2
        model = torch.load(folder / "model.pt", weights_only=True)
        assert model.keys() == record.model.keys()
        assert all(torch.equal(model[k], record.model[k]) for k in model)
