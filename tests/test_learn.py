"""RLlib policy learning from the shipped YAMLs (one tiny iteration each), export, replay."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmbalance.errors import ConfigError, UserError
from mmbalance.tune.learn_config import LearnConfig, apply_overrides

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
TINY = "synthetic:n_train=256,n_val=100,n_test=100,bayes_samples=1000"
SHRINK = [
    f"env_config.data={TINY}",
    "env_config.train.epochs=2",
    "env_config.train.batch_size=32",
    "iterations=1",
    "checkpoint_every=1",
]
PER_ALGO = {
    "PPO": ["training.train_batch_size_per_learner=32", "training.minibatch_size=16",
            "training.num_epochs=1"],
    "SAC": ["training.train_batch_size_per_learner=16",
            "training.num_steps_sampled_before_learning_starts=16",
            "reporting.min_sample_timesteps_per_iteration=32"],
    "DQN": ["training.train_batch_size_per_learner=16",
            "training.num_steps_sampled_before_learning_starts=16",
            "reporting.min_sample_timesteps_per_iteration=32"],
    # asynchronous algorithms: a remote env runner takes seconds to start and the first
    # iteration would return before it sent anything; the local runner samples at once
    "APPO": ["training.train_batch_size_per_learner=32", "env_runners.num_env_runners=0",
             "reporting.min_time_s_per_iteration=1"],
    "IMPALA": ["training.train_batch_size_per_learner=32", "env_runners.num_env_runners=0",
               "reporting.min_time_s_per_iteration=1"],
}


def tiny_config(name: str) -> LearnConfig:
    base = LearnConfig.from_yaml(ROOT / "tune_configs" / name).to_dict()
    extra = [*SHRINK, *PER_ALGO[base["algorithm"]]]
    if base["env"].startswith("quota"):
        extra.append("env_config.steps_per_action=2")
    if base["env"] == "quota-vector":
        extra.append("env_config.num_runs=2")
    return LearnConfig.from_dict(apply_overrides(base, extra))


@pytest.fixture(scope="module")
def ppo_run(ray_session, tmp_path_factory):
    from mmbalance.tune.learn import run_learn

    out = tmp_path_factory.mktemp("learn") / "dus_ppo"
    return run_learn(tiny_config("dus_ppo.yaml"), out, progress=False)


def test_dus_ppo_learns_checkpoints_exports_and_logs_mml_metrics(ppo_run):
    out = ppo_run["out"]
    progress = pd.read_parquet(out / "progress.parquet")
    assert len(progress) == 1 and progress["env_steps"].iloc[0] >= 32
    # the MML metrics are RLlib custom metrics of the episodes that ended
    assert {"final_val_acc", "final_val_acc_visual", "discrepancy"} <= set(progress.columns)
    # and the runs' compute: under `share` whatever the policy chose, uniform's updates
    updates = progress["final_ledger_updates_audio"] + progress["final_ledger_updates_visual"]
    assert updates.iloc[0] == pytest.approx(2 * 2 * 256 / 32)
    assert (out / "checkpoints" / "iter_0001").is_dir()
    assert list((out / "tb").iterdir())
    spec = json.loads((out / "policy" / "policy.json").read_text())
    assert spec["algorithm"] == "PPO" and spec["action_space"]["type"] == "MultiDiscrete"
    # what learning cost: the env steps sampled, each 2 training iterations (steps_per_action)
    cost = spec["learned_with"]
    assert cost["env_steps"] == progress["env_steps"].iloc[0]
    assert cost["iterations"] == 2 * cost["env_steps"] and cost["episodes"] >= 1


@pytest.mark.parametrize("name", ["dus_sac.yaml", "dus_dqn.yaml", "dus_appo.yaml",
                                  "dus_impala.yaml", "bss_ppo.yaml", "dus_ppo_vector.yaml"])
def test_each_shipped_config_runs_one_iteration(name, ray_session, tmp_path):
    """Every advertised algorithm (PPO: `ppo_run` and the tests on it) learns an iteration
    from its YAML, exports a policy, and `evaluate` runs that policy."""
    from mmbalance.cli import main
    from mmbalance.policies.policy_file import load_policy
    from mmbalance.tune.learn import run_learn

    cfg = tiny_config(name)
    res = run_learn(cfg, tmp_path / "run", progress=False)
    assert len(res["rows"]) == 1
    row = res["rows"][0]
    assert row["env_steps"] >= 32 and row["episodes"] >= 1  # it sampled whole episodes
    if cfg.env.startswith("quota"):  # whatever it chose, each run had uniform's updates
        updates = row["final_ledger_updates_audio"] + row["final_ledger_updates_visual"]
        assert updates == pytest.approx(2 * 2 * 256 / 32)  # 2 encoders x 2 epochs of 8
    policy = load_policy(res["out"] / "policy")
    assert policy.spec["algorithm"] == cfg.algorithm
    assert policy.spec["env"] == cfg.env.replace("quota-vector", "quota")
    if cfg.env.startswith("quota"):  # the policy replays with the quota meaning it learned:
        # the default, `share`, for every env (the vectorised one has no default of its own)
        assert policy.spec["env_config"]["train"]["quota_mode"] == "share"
    low = np.asarray(policy.spec["observation_space"]["low"], dtype=np.float32)
    action = policy.act(low)
    if cfg.algorithm == "DQN":
        assert np.ndim(action) == 0
    elif cfg.algorithm == "SAC":  # a squashed Gaussian: the replay squashes its mean too
        assert np.all(np.abs(action) <= 1.0)
    assert policy.spec["action_space"].get("squash", False) == (cfg.algorithm == "SAC")
    out = tmp_path / "eval"
    rc = main(["evaluate", str(res["out"] / "policy"), "--seeds", "1", "--epochs", "1",
               "--parallel", "none", "--out", str(out), "--no-progress"])
    assert rc == 0
    results = pd.read_parquet(out / "results.parquet")
    learned = results[results["sampler"].str.startswith("learned:")]
    assert len(learned) == 1 and learned["test_acc"].between(0, 1).all()
    assert {"uniform"} <= set(results["sampler"])  # beside the baselines


def test_learned_sampler_replays_the_env_exactly(ppo_run):
    """The exported policy inside the plain trainer makes the env's decisions, step for step."""
    from mmbalance.data.registry import load_dataset
    from mmbalance.envs import QuotaEnv
    from mmbalance.policies.policy_file import load_policy
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    path = ppo_run["out"] / "policy"
    policy = load_policy(path)
    env = QuotaEnv(policy.spec["env_config"])
    obs, _ = env.reset(seed=1234)
    env_quotas, done = [], False
    while not done:
        obs, _, term, trunc, info = env.step(policy.act(obs))
        env_quotas.append((info["quota_audio"], info["quota_visual"]))
        done = term or trunc
    train = policy.spec["env_config"]["train"]
    method = policy.spec["env_config"]["method"]
    tr = Trainer(load_dataset(TINY), TrainConfig(method=method, seed=1234, **train),
                 make_sampler(f"learned:{path}"))
    tr.fit()
    k = policy.spec["env_config"]["steps_per_action"]
    fed = [(s["quota_audio"], s["quota_visual"]) for s in tr.history.steps][::k]
    assert fed == env_quotas
    assert tr.final_metrics()["test"] == pytest.approx(
        {k[len("final_test_"):]: v for k, v in info.items() if k.startswith("final_test_")})


def test_tampered_or_mismatched_policy_files_are_refused(ppo_run, tmp_path):
    import shutil

    from mmbalance.policies.policy_file import load_policy
    from mmbalance.policies.registry import make_sampler
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    src = ppo_run["out"] / "policy"
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, bad / "policy.pt")
    with pytest.raises(UserError, match="not a plain tensor file"):
        load_policy(bad)
    spec = json.loads((src / "policy.json").read_text())
    spec["layers"][0]["out"] += 1  # the chain no longer fits: refused by the schema
    shutil.copy(src / "policy.pt", bad / "policy.pt")
    (bad / "policy.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match=r"layers\[2\]\.in"):
        load_policy(bad)
    shutil.copy(src / "policy.json", bad / "policy.json")
    tensors = torch.load(src / "policy.pt", weights_only=True)
    tensors["net.0.weight"] = tensors["net.0.weight"][:, :-1]
    torch.save(tensors, bad / "policy.pt")
    with pytest.raises(UserError, match="do not match"):
        load_policy(bad)
    # a 2-modality policy on 3-modality data: a clean error, not a crash
    from mmbalance.data.synthetic import SyntheticConfig, make_synthetic

    three = make_synthetic(SyntheticConfig(names=["a", "b", "c"], dim=[4, 4, 4],
                                           separation=[2, 2, 2], noise=[1, 1, 1],
                                           informative=[1, 1, 1], n_train=64, n_val=32,
                                           n_test=32, bayes_samples=500))
    with pytest.raises(UserError, match="modalities"):
        Trainer(three, TrainConfig(method="mla", epochs=1), make_sampler(f"learned:{src}"))


def test_evaluate_command_compares_on_held_out_seeds(ppo_run, tmp_path):
    from mmbalance.cli import main

    out = tmp_path / "eval"
    rc = main(["evaluate", str(ppo_run["out"] / "policy"), "--seeds", "2", "--out", str(out),
               "--no-progress", "--parallel", "none"])
    assert rc == 0
    results = pd.read_parquet(out / "results.parquet")
    assert set(results["seed"]) == {1000, 1001}
    kinds = {s.split(":")[0] for s in results["sampler"]}
    assert kinds == {"learned", "dus-rl", "uniform", "dus-h"}
    assert (out / "plots" / "accuracy_by_method.png").exists()
    # the learned row's search cost is its learning: its episodes beside its 2 replays
    cost = json.loads((ppo_run["out"] / "policy" / "policy.json").read_text())["learned_with"]
    table = (out / "summary.md").read_text().split("Search cost", 1)[1]
    line = next(v for v in table.splitlines() if v.startswith("| joint-uni | learned:"))
    assert line.split(" | ")[2] == str(2 + cost["episodes"])


def test_evaluate_on_data_the_policy_never_saw(ppo_run, tmp_path, refused):
    """A policy learned on one data set runs on another (other classes, other scale): the
    observation reads that data's class count, as an env on it would."""
    import shutil

    from mmbalance.cli import main

    policy = ppo_run["out"] / "policy"
    out = tmp_path / "eval"
    other = "synthetic:n_train=200,n_val=100,n_test=100,num_classes=3,bayes_samples=500"
    rc = main(["evaluate", str(policy), "--data", other, "--seeds", "1", "--epochs", "1",
               "--out", str(out), "--no-progress", "--parallel", "none"])
    assert rc == 0
    assert json.loads((out / "compare.json").read_text())["data"] == other
    results = pd.read_parquet(out / "results.parquet")
    assert results["sampler"].str.startswith("learned:").any()
    # learned on a family: the data to evaluate on must be named
    family = tmp_path / "family_policy"
    shutil.copytree(policy, family)
    spec = json.loads((family / "policy.json").read_text())
    spec["env_config"]["data"] = [TINY, "digits"]
    (family / "policy.json").write_text(json.dumps(spec))
    refused(["evaluate", family, "--out", tmp_path / "e2"], "--data", tmp_path / "e2")


def test_config_errors_name_the_key():
    base = LearnConfig.from_yaml(ROOT / "tune_configs" / "dus_ppo.yaml").to_dict()
    with pytest.raises(ConfigError, match="allowed"):
        LearnConfig.from_dict({**base, "algorithm": "A3C"})
    with pytest.raises(ConfigError, match="lrr"):
        LearnConfig.from_dict(apply_overrides(base, ["training.lrr=0.1"]))
    with pytest.raises(ConfigError, match="unknown key"):
        LearnConfig.from_dict({**base, "iters": 3})
    with pytest.raises(ConfigError, match="continuous"):
        LearnConfig.from_dict({**base, "algorithm": "SAC", "training": {}})
    with pytest.raises(ConfigError, match="flat"):
        LearnConfig.from_dict({**base, "algorithm": "DQN", "training": {}})
    with pytest.raises(ConfigError, match="env_config"):
        LearnConfig.from_dict(apply_overrides(base, ["env_config.steps=3"]))


def test_env_runner_crash_is_restarted_and_learning_completes(ray_session, tmp_path):
    """A fault injected into an env step kills a remote env runner; RLlib restarts it."""
    from mmbalance.tune.learn import run_learn

    marker = tmp_path / "run" / "crashed"  # the drill's marker lies in the run folder
    base = tiny_config("dus_ppo.yaml").to_dict()
    cfg = LearnConfig.from_dict(apply_overrides(base, [
        "iterations=2", "checkpoint_every=0",
        "env_runners.num_env_runners=1",
        "fault_tolerance.restart_failed_env_runners=true",
        f"env_config.fault={{at_step: 3, marker: '{marker}'}}",
    ]))
    res = run_learn(cfg, tmp_path / "run", progress=False)
    assert marker.exists()  # the env did crash once
    assert len(res["rows"]) == 2  # and learning went on to the end of its budget
    assert (res["out"] / "policy" / "policy.pt").is_file()


def test_learn_resumes_from_its_newest_checkpoint(ppo_run, tmp_path, capsys):
    """`learn --resume` restores the algorithm from the checkpoint (its policy weights and its
    lifetime counters), runs only the missing iterations and keeps one row per iteration."""
    import shutil

    from mmbalance.cli import main
    from mmbalance.tune.learn import resume_learn

    run = tmp_path / "run"
    shutil.copytree(ppo_run["out"], run)
    # with no iteration left to run, the exported policy is the checkpoint's own
    res = resume_learn(run, progress=False)
    assert len(res["rows"]) == 1
    original = torch.load(ppo_run["out"] / "policy" / "policy.pt", weights_only=True)
    again = torch.load(run / "policy" / "policy.pt", weights_only=True)
    assert all(torch.equal(original[k], again[k]) for k in original)

    (run / "checkpoints" / "iter_0002.partial").mkdir()  # a save killed midway: ignored
    assert main(["learn", "--resume", str(run), "--iterations", "3", "--no-progress"]) == 0
    progress = pd.read_parquet(run / "progress.parquet")
    assert progress["iteration"].tolist() == [1, 2, 3]
    steps = progress["env_steps"].tolist()
    assert steps[1] >= steps[0] + 32 and steps[2] >= steps[1] + 32  # counters continued
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "iter_0001", "iter_0002", "iter_0003"]
    assert json.loads((run / "policy" / "policy.json").read_text())["iterations"] == 3

    assert main(["learn", "--resume", str(run), "--iterations", "2"]) == 2
    assert main(["learn", "--resume", str(tmp_path)]) == 2
    assert "learn_config.yaml" in capsys.readouterr().err


def test_a_resumed_run_moves_to_another_cluster(ppo_run, token_cluster, tmp_path):
    """The cluster is where a run runs, not what it is: the run folder keeps no address, and
    `learn --resume DIR --address A` continues it on another cluster (here the two-node one
    with token auth, for a run that trained on the session's local cluster)."""
    import shutil
    import subprocess
    import sys

    import yaml

    run = tmp_path / "run"
    shutil.copytree(ppo_run["out"], run)
    saved = yaml.safe_load((run / "learn_config.yaml").read_text())
    assert saved["address"] is None
    # folders of earlier versions named the cluster they ran on: not where a resume goes
    (run / "learn_config.yaml").write_text(yaml.safe_dump({**saved, "address": "127.0.0.1:9"}))
    res = subprocess.run(
        [sys.executable, "-m", "mmbalance.cli", "learn", "--resume", str(run), "--address",
         token_cluster.address, "--iterations", "2", "--no-progress"],
        env=token_cluster.env(), capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"Ray: cluster at {token_cluster.address}: 2 nodes" in res.stdout
    progress = pd.read_parquet(run / "progress.parquet")
    assert progress["iteration"].tolist() == [1, 2]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter_0001", "iter_0002"]
    assert yaml.safe_load((run / "learn_config.yaml").read_text())["address"] is None


def test_report_plots_a_learn_folder(ppo_run, tmp_path):
    import shutil

    from mmbalance.report import make_report
    from mmbalance.report.learn import PANELS

    run = tmp_path / "run"
    shutil.copytree(ppo_run["out"], run)
    paths = make_report(run)
    assert [p.name for p in paths] == ["learning_curve.png"]
    from PIL import Image

    with Image.open(paths[0]) as img:  # one panel per tracked quantity, side by side
        assert img.size[0] > img.size[1] * (len(PANELS) - 1)


def test_an_algorithm_that_no_code_names_learns_and_exports(ray_session, tmp_path):
    """An algorithm is a name in RLlib's registry: APPO needs no line of mmbalance code. Its
    action mode follows from what its RLModule can act in (here the env's default)."""
    from mmbalance.policies.policy_file import load_policy
    from mmbalance.tune.learn import run_learn

    base = tiny_config("dus_ppo.yaml").to_dict()
    base["env_config"].pop("action_mode")
    cfg = LearnConfig.from_dict({**base, "algorithm": "APPO",
                                 "training": {"train_batch_size_per_learner": 32},
                                 "reporting": {"min_time_s_per_iteration": 1}})
    assert cfg.env_config["action_mode"] == "discrete"
    res = run_learn(cfg, tmp_path / "run", progress=False)
    assert len(res["rows"]) == 1
    policy = load_policy(res["out"] / "policy")
    assert policy.spec["algorithm"] == "APPO"
    assert policy.spec["action_space"]["type"] == "MultiDiscrete"
    assert policy.act(np.zeros(policy.obs_dim, dtype=np.float32)).shape == (2,)
