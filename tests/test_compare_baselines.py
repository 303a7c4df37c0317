"""What a comparison must show before a sampler's gain counts: each row's compute against
its base, the unimodal ensemble, the headroom each base method leaves, and rows whose
learning rate or fixed share is chosen on validation."""

import math

import numpy as np
import pandas as pd
import pytest

from mmbalance.compare import run_comparison
from mmbalance.compare.summary import headroom, headroom_text, markdown_table, summarize

DATA = "synthetic:n_train=320,n_val=160,n_test=160,bayes_samples=500"
FAST = {"epochs": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "plain"
    run_comparison(DATA, ["mla/uniform", "mla/dus-h:strength=8",
                          "mla/fixed:quotas=33/33@quota_mode=extra-steps", "joint/uniform"],
                   [0, 1], FAST, out, parallel="none", unimodal_reference=True,
                   progress=False)
    return out


def test_every_row_carries_its_ledger_and_its_compute_against_the_base(plain):
    results = pd.read_parquet(plain / "results.parquet")
    for key in ("ledger_optimizer_steps", "ledger_updates_audio", "ledger_grad_samples_visual",
                "ledger_nograd_samples_audio", "ledger_wall_seconds"):
        assert results[key].notna().all(), key
    summary = pd.read_parquet(plain / "summary.parquet").set_index(["method", "sampler"])
    dus = summary.loc[("mla", "dus-h:strength=8")]
    assert dus["ratio_updates"] == pytest.approx(1.0) and dus["compute_flags"] == ""
    assert dus["ratio_grad_samples"] == pytest.approx(1.0)
    # one sample above B: twice the updates, flagged
    extra = summary.loc[("mla", "fixed:quotas=33/33")]
    assert extra["upd_ratio_audio"] == pytest.approx(2.0)
    assert "updates x2.00" in extra["compute_flags"]
    assert "extra-steps adds updates" in extra["compute_flags"]
    table = (plain / "summary.md").read_text()
    assert "audio x2.00, visual x2.00" in table and "| no: updates x2.00" in table


def test_the_unimodal_ensemble_averages_the_alone_runs_log_probabilities(plain):
    """Recomputed here from the alone runs' logits: the table's ensemble is that average."""
    results = pd.read_parquet(plain / "results.parquet")
    ens = results[results["method"] == "ensemble"].set_index("seed")
    assert sorted(ens.index) == [0, 1]
    from mmbalance.data.registry import load_dataset

    y = load_dataset(DATA).splits["test"].y
    for seed in (0, 1):
        logp = []
        for m in ("audio", "visual"):
            key = results[(results["method"] == f"alone:{m}") & (results["seed"] == seed)]["key"]
            with np.load(plain / "runs" / key.iloc[0] / "arrays.npz") as f:
                z = f["test_logits"]
            logp.append(z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
                        - z.max(1, keepdims=True))
        acc = float((np.mean(logp, axis=0).argmax(1) == y).mean())
        assert ens.loc[seed, "test_acc"] == pytest.approx(acc)
    # each encoder's compute is its own alone run's: the ensemble is at uniform's compute
    summary = pd.read_parquet(plain / "summary.parquet").set_index(["method", "sampler"])
    assert summary.loc[("ensemble", "uniform"), "compute_flags"] == ""


def test_headroom_says_where_sampling_cannot_help():
    def run(method, seed, audio, visual):
        return {"method": method, "sampler": "uniform", "options": "", "seed": seed,
                "diverged": False, "test_probe_acc_audio": audio, "test_probe_acc_visual": visual}

    rows = [run("alone:audio", s, 0.80, 0.0) for s in range(3)]
    rows += [run("alone:visual", s, 0.0, v) for s, v in enumerate((0.70, 0.72, 0.71))]
    rows += [run("joint", s, 0.80, v) for s, v in enumerate((0.40, 0.45, 0.42))]
    rows += [run("mla", s, 0.80, v) for s, v in enumerate((0.70, 0.71, 0.71))]
    out = {(h["method"], h["modality"]): h for h in headroom(rows, ["audio", "visual"])}
    assert out[("joint", "visual")]["headroom"] == pytest.approx(28.67, abs=0.01)
    assert out[("joint", "visual")]["room"]
    assert not out[("mla", "visual")]["room"]  # 0.3 points, std 0.6: within the noise
    assert not out[("joint", "audio")]["room"]
    text = headroom_text(list(out.values()))
    assert "sampling cannot help" in text and "visual under mla" in text
    assert "visual under joint" not in text


def test_one_seed_shows_no_spread_rather_than_zero():
    rows = [{"method": "mla", "sampler": "uniform", "options": "", "seed": 0, "diverged": False,
             "test_acc": 0.5, "test_f1": 0.5, "test_map": 0.5}]
    table = markdown_table(summarize(rows, []), [])
    assert "50.0 ± n/a" in table and "± 0.0" not in table


def test_learning_rates_and_fixed_shares_are_chosen_on_validation(ray_session, tmp_path):
    """--tune-lr gives every row three learning rates and keeps the best on validation;
    --best-fixed adds the best constant share; every candidate's run is kept."""
    out = tmp_path / "tuned"
    run_comparison(DATA, ["mla/uniform", "mla/dus-h"], [0], {"epochs": 1, "batch_size": 32},
                   out, parallel="ray", progress=False, tune_lr=True, best_fixed=True)
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 3 * (1 + 1 + 5)
    assert set(results["lr"].round(6)) == {0.003, 0.01, 0.03}
    assert len(list((out / "runs").iterdir())) == len(results)
    for (method, sampler), group in results.groupby(["method", "sampler"]):
        scores = group.groupby("variant")["val_acc"].mean()
        chosen = group[group["chosen"]]["variant"].unique()
        assert len(chosen) == 1 and scores[chosen[0]] == scores.max(), (method, sampler)
    fixed = results[results["sampler"] == "fixed:best"]
    assert fixed["run_sampler"].nunique() == 5
    summary = pd.read_parquet(out / "summary.parquet")
    assert set(summary["sampler"]) == {"uniform", "dus-h", "fixed:best"}
    assert all(isinstance(c, str) and c for c in summary["chosen"])
    assert not math.isnan(summary.set_index("sampler").loc["fixed:best", "ratio_updates"])


def test_the_share_figure_shows_each_quota_policy_over_training(plain):
    """A constant policy is a flat line at its share; uniform sampling has no panel."""
    from mmbalance.report import make_report
    from mmbalance.report.shares import share_curves

    results = pd.read_parquet(plain / "results.parquet")
    curves = share_curves(plain, results, ["audio", "visual"])
    assert set(curves) == {"mla/dus-h:strength=8", "mla/fixed:quotas=33/33"}
    fixed = curves["mla/fixed:quotas=33/33"]
    assert np.allclose(fixed["audio"], 0.5) and np.allclose(fixed["visual"], 0.5)
    assert fixed.index.min() > 0 and fixed.index.max() < 1
    assert (plain / "plots" / "quota_shares.png") in [p for p in make_report(plain)]
