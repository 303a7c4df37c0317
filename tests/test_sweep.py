"""Tune sweeps: the YAML DSL's checks, real sweeps, resume after SIGKILL, faults, two nodes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from mmbalance.errors import ConfigError
from mmbalance.tune.sweep import SweepConfig, expand_grid

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
TINY = "synthetic:n_train=240,n_val=80,n_test=80,bayes_samples=500"


def tiny_sweep(**over) -> dict:
    cfg = {
        "name": "tiny",
        "trainable": "train",
        "base": {"data": TINY, "method": "mla", "sampler": "dus-h",
                 "train": {"epochs": 3, "batch_size": 40}},
        "search_space": {"sampler_options.strength": {"grid": [1, 8]},
                         "train.lr": {"grid": [0.01, 0.03]}},
        "metric": "val_acc",
        "mode": "max",
        "max_concurrent": 2,
    }
    cfg.update(over)
    return cfg


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"search_space": {"train.lr": {"logunif": [0.1, 1]}}}, "allowed"),
        ({"search_space": {"train.lr": {"uniform": [0.1, 0.01]}}}, "low < high"),
        ({"search_space": {"train.lr": {"loguniform": [0, 0.1]}}}, "0 < low"),
        ({"search_space": {"train.lr": {"grid": [0.01, -1]}}}, "lr"),
        ({"search_space": {"sampler_options.strenght": {"grid": [1]}}}, "strength"),
        ({"scheduler": {"type": "hyperband"}}, "allowed"),
        ({"scheduler": {"type": "asha", "max_iters": 3}}, "max_t"),
        ({"search": {"type": "optuna"}}, "grid"),
        ({"trials": 3}, "unknown key"),
        ({"keep_checkpoints": 1}, "keep_checkpoints"),
        ({"keep_checkpoints": "all"}, "keep_checkpoints"),
        ({"trainable": "learn", "base": {"algorithm": "A2C", "env": "quota"}}, "allowed"),
        ({"trainable": "learn", "base": {"algorithm": "PPO"}}, "env"),
    ],
)
def test_bad_sweep_configs_are_refused_before_any_trial(change, needle):
    with pytest.raises(ConfigError, match=needle):
        SweepConfig.from_dict(tiny_sweep(**change))


def test_shipped_sweeps_validate():
    for name in ("sweep_dus_h.yaml", "sweep_ppo_asha.yaml", "sweep_ppo_pbt.yaml"):
        cfg = SweepConfig.from_yaml(ROOT / "tune_configs" / name)
        assert cfg.search_space
    assert len(expand_grid(SweepConfig.from_yaml(ROOT / "tune_configs/sweep_dus_h.yaml"))) == 18


def test_grid_sweep_runs_every_point_and_picks_the_best(ray_session, tmp_path, capsys):
    from mmbalance.cli import main

    cfg_path = tmp_path / "sweep.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_sweep()))
    out = tmp_path / "out"
    assert main(["sweep", str(cfg_path), "--out", str(out), "--no-progress"]) == 0
    results = pd.read_parquet(out / "results.parquet")
    points = {(r["config/sampler_options.strength"], r["config/train.lr"])
              for _, r in results.iterrows()}
    assert points == {(1, 0.01), (1, 0.03), (8, 0.01), (8, 0.03)}
    assert (results["training_iteration"] == 3).all()
    best = results.loc[results["val_acc"].idxmax()]
    assert f"Best trial: {best['trial']}" in (out / "summary.md").read_text()
    assert best["trial"] in capsys.readouterr().out
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 4 * 3
    from mmbalance.report import make_report

    names = {p.name for p in make_report(out)}
    assert {"sweep_metric_vs_params.png", "sweep_curves.png"} <= names


def test_asha_stops_weak_trials_early(ray_session, tmp_path):
    from mmbalance.tune.sweep import run_sweep

    cfg = SweepConfig.from_dict(tiny_sweep(
        base={"data": TINY, "method": "joint", "sampler": "uniform",
              "train": {"epochs": 6, "batch_size": 40}},
        search_space={"train.lr": {"grid": [0.1, 0.03, 3e-5, 1e-5]}},  # good ones first
        scheduler={"type": "asha", "max_t": 6, "grace_period": 1, "reduction_factor": 2},
        max_concurrent=1,
    ))
    res = run_sweep(cfg, tmp_path, progress=False)
    iters = sorted(r["training_iteration"] for r in res["rows"])
    assert iters[-1] == 6 and iters[0] < 6  # some ran to the end, some were cut


def test_pbt_on_the_plain_trainer_exploits_checkpoints(ray_session, tmp_path):
    from mmbalance.tune.sweep import run_sweep

    cfg = SweepConfig.from_dict(tiny_sweep(
        base={"data": TINY, "method": "joint", "sampler": "bss-l",
              "train": {"epochs": 4, "batch_size": 40}},
        search_space={"train.lr": {"choice": [1e-5, 0.05]}},
        scheduler={"type": "pbt", "perturbation_interval": 1},
        num_samples=2, max_concurrent=2,
    ))
    res = run_sweep(cfg, tmp_path, progress=False)
    assert len(res["rows"]) == 2
    assert all(r["epoch"] == 4 for r in res["rows"])  # both trials ran their whole budget
    assert all(r["status"] == "TERMINATED" for r in res["rows"])


def test_crashed_trial_is_retried_from_its_checkpoint(ray_session, tmp_path):
    from mmbalance.tune.sweep import run_sweep

    marker = tmp_path / "crashed"
    base = {"data": TINY, "method": "joint", "sampler": "uniform",
            "train": {"epochs": 4, "batch_size": 40}, "fault": {"epoch": 2, "marker": str(marker)}}
    cfg = SweepConfig.from_dict(tiny_sweep(base=base,
                                           search_space={"train.lr": {"grid": [0.01]}},
                                           max_failures=1))
    res = run_sweep(cfg, tmp_path, progress=False)
    assert marker.exists()  # the fault did happen
    assert res["rows"][0]["status"] == "TERMINATED"
    assert res["rows"][0]["training_iteration"] == 4
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert sorted(trials["training_iteration"]) == [1, 2, 3, 4]  # resumed, not restarted


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        parent = psutil.Process(proc.pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)


def test_sweep_resumes_after_the_driver_is_killed(ray_session, tmp_path):
    cfg = tiny_sweep(base={"data": TINY, "method": "joint", "sampler": "uniform",
                           "train": {"epochs": 6, "batch_size": 40}},
                     search_space={"train.lr": {"grid": [0.005, 0.01, 0.02, 0.04]}},
                     max_concurrent=1)
    cfg_path = tmp_path / "sweep.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmbalance.cli", "sweep", str(cfg_path), "--out", str(out),
         "--address", "local", "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # kill once one trial is done and another is running
            lines = [len(p.read_text().splitlines()) for p in out.glob("tiny/*/result.json")]
            if sum(lines) >= 8:
                break
            if proc.poll() is not None:
                pytest.fail("the sweep ended before it could be killed")
            time.sleep(0.2)
        else:
            pytest.fail("the sweep made no progress")
    finally:
        _kill_tree(proc)
    assert not (out / "results.parquet").exists()
    import pickle

    from mmbalance.cli import main

    # Tune's files are read only as the sweep signed them: payloads put there never run
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (out / "tiny" / "tuner.pkl").write_bytes(pickle.dumps(Payload()))
    (out / "tiny" / "searcher-state-planted.pkl").write_bytes(pickle.dumps(Payload()))
    signed_before = sorted(p.name for p in (out / "tune_state").glob("experiment_state-*"))
    assert main(["sweep", "--resume", str(out), "--no-progress"]) == 0
    assert not marker.exists()
    signed_after = sorted(p.name for p in (out / "tune_state").glob("experiment_state-*"))
    assert len(signed_after) > len(signed_before)  # the resumed session signs its state too
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 4 and (results["training_iteration"] == 6).all()
    trials = pd.read_parquet(out / "trials.parquet")
    for _, rows in trials.groupby("trial"):  # every epoch reported exactly once
        assert sorted(rows["training_iteration"]) == [1, 2, 3, 4, 5, 6]
    # every epoch's checkpoint is kept, so the (periodic) experiment state never names a
    # checkpoint that is gone by the time it is restored
    for trial_dir in (out / "tiny").glob("plain_trial_*"):
        assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == [
            f"checkpoint_{i:06d}" for i in range(6)]


def test_trials_land_on_both_nodes_of_a_two_node_cluster(tmp_path):
    cfg = tiny_sweep(search_space={"train.lr": {"grid": [0.01, 0.02, 0.03, 0.04]}},
                     max_concurrent=2)
    cfg_path = tmp_path / "sweep.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run(
        [sys.executable, str(ROOT / "tests/scripts/two_node_sweep.py"), str(cfg_path),
         str(tmp_path / "out")], capture_output=True, text=True, timeout=600, env=env,
        check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0 and len(report["nodes"]) == 2
    assert report["trial_nodes"] == report["nodes"]  # trials ran on both nodes
    assert report["reports"] == 4 * 3  # every result came back to the driver


def test_rllib_sweep_with_pbt_over_rl_and_env_hyperparameters(ray_session, tmp_path):
    from mmbalance.tune.sweep import run_sweep

    cfg = SweepConfig.from_dict({
        "name": "tinyrl",
        "trainable": "learn",
        "base": {
            "algorithm": "PPO",
            "env": "quota",
            "env_config": {"data": TINY, "method": "mla",
                           "train": {"epochs": 2, "batch_size": 40}, "steps_per_action": 2},
            "model": {"fcnet_hiddens": [16], "fcnet_activation": "tanh"},
            "training": {"train_batch_size_per_learner": 32, "minibatch_size": 16,
                         "num_epochs": 1},
        },
        "search_space": {"training.lr": {"loguniform": [1e-4, 1e-3]},
                         "env_config.steps_per_action": {"choice": [2, 4]}},
        "scheduler": {"type": "pbt", "perturbation_interval": 1},
        "metric": "env_runners/episode_return_mean",
        "mode": "max",
        "num_samples": 2,
        "max_concurrent": 2,
        "stop": {"training_iteration": 2},
    })
    res = run_sweep(cfg, tmp_path, progress=False)
    assert len(res["rows"]) == 2
    assert all(r["training_iteration"] == 2 for r in res["rows"])
    assert all(r["config/env_config.steps_per_action"] in (2, 4) for r in res["rows"])
    # PBT may have perturbed lr by x0.8 or x1.2 at each of its two chances
    assert all(1e-4 * 0.8**2 <= r["config/training.lr"] <= 1e-3 * 1.2**2 for r in res["rows"])
    assert res["best"] is not None
    trial_dirs = [p for p in (tmp_path / "tinyrl").iterdir() if p.is_dir()]
    assert len(trial_dirs) == 2
    from mmbalance.manifest import read_run_id, verify_folder

    sweep_id = read_run_id(tmp_path, "sweep_id")
    for trial_dir in trial_dirs:  # learn trials checkpoint every iteration too
        assert len(list(trial_dir.glob("checkpoint_*"))) >= 2, trial_dir
        for ckpt in trial_dir.glob("checkpoint_*"):  # each signed, for this sweep
            verify_folder(ckpt, run=sweep_id)


def test_a_trial_whose_checkpoint_is_gone_keeps_its_reported_history(tmp_path):
    """results are written from result.json when a trial's last checkpoint cannot be read
    (one lost checkpoint must not lose the whole sweep's tables)."""
    import json
    from types import SimpleNamespace

    from ray.tune import Checkpoint

    from mmbalance.tune.sweep.results import _epoch_history, _trial_history

    trial = tmp_path / "trial"
    trial.mkdir()
    # iterations 2-3 ran, the trial was restored from its iteration-1 checkpoint and re-ran them
    reports = [{"training_iteration": i, "val_acc": v}
               for i, v in [(1, 0.1), (2, 0.2), (3, 0.3), (2, 0.25), (3, 0.35), (4, 0.4)]]
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in reports))
    result = SimpleNamespace(checkpoint=Checkpoint.from_directory(str(tmp_path / "gone")),
                             path=str(trial), metrics_dataframe=None)
    assert _epoch_history(result) is None
    history = _trial_history(result)  # each iteration once, as the run that went on had it
    assert history["training_iteration"].tolist() == [1, 2, 3, 4]
    assert history["val_acc"].tolist() == pytest.approx([0.1, 0.25, 0.35, 0.4])
