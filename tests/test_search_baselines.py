"""The time-varying baselines a learned sampling policy must beat, each with what finding it
cost: the best two-phase schedule (`--best-schedule`) and Population Based Training over
the share (`--pbt`), beside the best constant."""

import math

import pandas as pd
import pytest

from mmbalance.compare import run_comparison
from mmbalance.compare.select import schedule_candidates, share_candidates
from mmbalance.errors import ConfigError
from mmbalance.policies.registry import make_sampler
from mmbalance.trainers.ledger import encoder_totals

DATA = "synthetic:n_train=320,n_val=160,n_test=160,bayes_samples=500"
MODS = ["audio", "visual"]


def test_schedule_candidates_are_real_two_phase_schedules():
    """Every ordered pair of distinct shares at each switch epoch, no constant among them,
    each a valid `schedule` sampler switching inside the run."""
    cands = schedule_candidates(2, 32, 6)
    assert len(cands) == len(set(cands)) == 3 * 2 * 2
    for c in cands:
        s = make_sampler(c)
        assert s.first != s.second and s.at in (2, 4)
    assert len(schedule_candidates(3, 16, 3)) == 4 * 3 * 2  # uniform or one fed 3x
    assert {make_sampler(c).at for c in schedule_candidates(2, 32, 2)} == {1}
    with pytest.raises(ConfigError, match="at least 2 epochs"):
        schedule_candidates(2, 32, 1)


@pytest.fixture(scope="module")
def searched(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "cmp"
    run_comparison(DATA, ["mla/uniform", "mla/dus-h"], [0], {"epochs": 2, "batch_size": 32},
                   out, parallel="ray", progress=False, best_schedule=True, pbt=True)
    return out


def test_the_best_schedule_is_chosen_on_validation_from_its_grid(searched):
    results = pd.read_parquet(searched / "results.parquet")
    sched = results[results["sampler"] == "schedule:best"]
    assert sched["run_sampler"].nunique() == len(schedule_candidates(2, 32, 2))
    scores = sched.groupby("variant")["val_acc"].mean()
    chosen = sched[sched["chosen"]]["variant"].unique()
    assert len(chosen) == 1 and scores[chosen[0]] == scores.max()
    summary = pd.read_parquet(searched / "summary.parquet").set_index("sampler")
    # its search cost is the whole grid; a plain row's is its own run
    assert summary.loc["schedule:best", "search_runs"] == len(sched)
    assert summary.loc["schedule:best", "search_steps"] == sched["steps"].sum()
    assert summary.loc["uniform", "search_runs"] == 1


def test_pbt_trains_a_population_at_uniforms_compute_and_keeps_its_best_member(searched):
    results = pd.read_parquet(searched / "results.parquet")
    uniform = results[results["sampler"] == "uniform"].iloc[0]
    pbt = results[results["sampler"] == "pbt:share"]
    assert len(pbt) == 1 and bool(pbt["chosen"].iloc[0])
    row = pbt.iloc[0]
    # the member rebuilt from its last checkpoint carries its training's ledger only
    # (no final evaluation passes): the totals of a uniform run
    mine = encoder_totals({k[len("ledger_"):]: v for k, v in row.items()
                           if k.startswith("ledger_")}, MODS)
    base = encoder_totals({k[len("ledger_"):]: v for k, v in uniform.items()
                           if k.startswith("ledger_")}, MODS)
    assert mine == base
    assert row["pbt_final_quotas"] in {c.split("=", 1)[1] for c in share_candidates(2, 32)}
    # a population of 4: each member trains its first epoch before any perturbation, and
    # every epoch trained counts (a clone may retrain or skip epochs of its donor's)
    per_epoch = row["steps"] / 2
    assert row["search_runs"] == 4
    assert row["search_steps"] % per_epoch == 0
    assert row["search_steps"] >= row["steps"] + 3 * per_epoch
    summary = pd.read_parquet(searched / "summary.parquet").set_index("sampler")
    assert not summary.loc["pbt:share", "compute_flags"]
    assert math.isfinite(summary.loc["pbt:share", "test_acc_mean"])
    # its run is a normal record: the shares it trained with are in its step table
    steps = pd.read_parquet(searched / "runs" / row["key"] / "steps.parquet")
    assert {"quota_audio", "quota_visual"} <= set(steps.columns) and len(steps) == row["steps"]
    text = (searched / "summary.md").read_text()
    assert "Search cost" in text and "| mla | pbt:share | 4 |" in text


def test_a_restored_sampler_trains_on_with_its_own_options(tmp_path):
    """PBT clones a checkpoint into a trial with mutated sampler options: DUS-H's strength
    is the trial's own after the restore, not the donor's."""
    from mmbalance.data.registry import load_dataset
    from mmbalance.tune.trainables import build_trainer

    ds = load_dataset(DATA)

    def trainer(strength: float):
        return build_trainer({"method": "mla", "seed": 0, "sampler": "dus-h",
                              "sampler_options": {"strength": strength},
                              "train": {"epochs": 2, "batch_size": 32}}, ds)

    donor = trainer(8.0)
    while donor.step(stop_at_epoch_end=True) is not None:
        pass
    donor.save(tmp_path / "t.pt")
    clone = trainer(0.0)
    clone.restore(tmp_path / "t.pt")
    assert clone.sampler.strength == 0.0
    clone.step()
    # strength 0 feeds both modalities alike, whatever the donor's status says
    assert len(set(clone.sampler.quotas)) == 1
