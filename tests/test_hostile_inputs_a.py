"""Issue 20 (part a), as a hostile user: nothing hangs, nothing runs code from a file, nothing
is written outside its folder, and every such input is one line on stderr with exit 2
before any output folder exists. Grouped as the issue is: hangs, the fault drill, code from
a file, silent surprises, tracebacks. Hangs are run in subprocesses under a timeout; most
checks fail before Ray starts, the few that need Ray share the session's cluster."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from mmbalance.errors import ConfigError, UntrustedError, UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = "synthetic:n_train=200,n_val=80,n_test=80,bayes_samples=500"
HANG_LIMIT_S = 30  # every refusal below returns in seconds; a hang would run past this
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without GPUs")


class Payload:
    """Unpickling it creates `marker` (what a payload put in a pickle would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def payload(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def learn_yaml(tmp_path: Path, text: str | None = None, **change) -> Path:
    data = yaml.safe_load((ROOT / "tune_configs" / "dus_ppo.yaml").read_text())
    data.update(change)
    path = tmp_path / f"learn_{len(list(tmp_path.glob('learn_*.yaml')))}.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data))
    return path


def sweep_yaml(tmp_path: Path, **change) -> Path:
    data = {"name": "grid", "trainable": "train",
            "base": {"data": TINY, "method": "joint", "sampler": "uniform",
                     "train": {"epochs": 1, "batch_size": 40}},
            "search_space": {"train.lr": {"grid": [0.01]}}}
    data.update(change)
    path = tmp_path / f"sweep_{len(list(tmp_path.glob('sweep_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args, timeout: float = HANG_LIMIT_S) -> subprocess.CompletedProcess:
    """The command in its own process, killed (a test failure) past `timeout`."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "mmbalance.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


def one_line(res: subprocess.CompletedProcess, needle: str) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(lines) == 1 and needle in lines[0], res.stderr[-2000:]
    return lines[0]


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        rows.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(rows) + "\n"


# ================================================================ 1. nothing hangs
def test_an_alias_bomb_is_refused_at_once_naming_the_anchor(tmp_path, refused):
    bomb = alias_bomb()
    path = learn_yaml(tmp_path, text=bomb + "algorithm: PPO\nenv: quota\n")
    t0 = time.monotonic()
    res = cli("learn", path, "--out", tmp_path / "o")  # was: hung walking 9**9 nodes
    line = one_line(res, "more than 100000")
    assert "alias *a8" in line and time.monotonic() - t0 < HANG_LIMIT_S
    sweep = tmp_path / "bomb_sweep.yaml"
    sweep.write_text(bomb + sweep_yaml(tmp_path).read_text())
    refused(["sweep", sweep, "--out", tmp_path / "s"], "alias *a8", tmp_path / "s")


@no_gpu
def test_a_sweep_asking_for_a_gpu_the_machine_lacks_is_refused(refused, tmp_path):
    # was: "No trial is running" once a minute, forever
    refused(["sweep", sweep_yaml(tmp_path, resources={"cpu": 1, "gpu": 1}),
             "--out", tmp_path / "o"], "resources: asks for 1 GPU(s) per trial", tmp_path / "o")


@no_gpu
@pytest.mark.parametrize("section, value, needle", [
    ("learners", {"num_learners": 1, "num_gpus_per_learner": 1}, "asks for 1 GPU(s) per trial"),
    ("env_config", {"train": {"device": "cuda"}}, "asks Ray for no GPU"),
])
def test_a_learn_sweep_whose_trials_want_a_gpu_is_refused(section, value, needle, refused,
                                                          tmp_path):
    base = yaml.safe_load((ROOT / "tune_configs" / "dus_ppo.yaml").read_text())
    base[section] = {**base.get(section, {}), **value}
    path = sweep_yaml(tmp_path, trainable="learn", base=base,
                      search_space={"training.lr": {"grid": [0.001]}},
                      metric="env_runners/episode_return_mean")
    refused(["sweep", path, "--out", tmp_path / "o"], needle, tmp_path / "o")


@no_gpu
def test_compare_with_gpus_per_run_and_no_gpu_is_refused(refused, tmp_path):
    # was: a silent hang that left compare.json behind
    refused(["compare", "--data", TINY, "--parallel", "ray", "--gpus-per-run", "0.5",
             "--grid", "joint/uniform", "--seeds", "1", "--out", tmp_path / "o"],
            "--gpus-per-run: asks for 0.5 GPU(s)", tmp_path / "o")


@no_gpu
@pytest.mark.parametrize("settings, needle", [
    (["learners.num_gpus_per_learner=1"], "learners.num_gpus_per_learner"),
    (["env_runners.num_env_runners=1000"], "asks for 1000 CPU(s) per learn run"),
    (["env_runners.num_env_runners=1", "env_runners.num_gpus_per_env_runner=1"],
     "asks for 1 GPU(s) per learn run"),
])
def test_learn_resources_the_cluster_lacks_are_refused(settings, needle, refused, tmp_path):
    sets = [part for s in settings for part in ("--set", s)]
    refused(["learn", ROOT / "tune_configs" / "dus_ppo.yaml", *sets, "--out", tmp_path / "o"],
            needle, tmp_path / "o")


def test_the_watchdog_ends_a_sweep_whose_trials_cannot_start(ray_session, tmp_path):
    """The cluster could hold the trial, but something else holds its CPUs: the sweep ends
    after max_wait_s with one line naming what the trial asks for."""
    from ray.util.placement_group import placement_group, remove_placement_group

    from mmbalance.tune.sweep import SweepConfig, run_sweep
    from mmbalance.tune.sweep.guard import SweepStalled

    ray = ray_session
    hog = placement_group([{"CPU": ray.cluster_resources()["CPU"]}])  # every CPU, held
    ray.get(hog.ready(), timeout=HANG_LIMIT_S)
    try:
        cfg = SweepConfig.from_yaml(sweep_yaml(tmp_path, max_wait_s=2))
        t0 = time.monotonic()
        with pytest.raises(SweepStalled, match=r"no trial could start for 2 s .*CPU: 1"):
            run_sweep(cfg, tmp_path, progress=False)
        assert time.monotonic() - t0 < HANG_LIMIT_S
    finally:
        remove_placement_group(hog)


# ================================================================ 2. the fault drill
def test_a_fault_marker_outside_the_folder_is_refused(refused, tmp_path):
    outside = tmp_path / "outside"
    base = {"data": TINY, "method": "joint", "sampler": "uniform", "train": {"epochs": 1},
            "fault": {"epoch": 0, "marker": str(outside)}}
    refused(["sweep", sweep_yaml(tmp_path, base=base), "--out", tmp_path / "s"],
            "base.fault.marker", tmp_path / "s", outside)
    refused(["learn", ROOT / "tune_configs" / "dus_ppo.yaml", "--out", tmp_path / "l",
             "--set", "env_config.fault={at_step: 1, marker: ../outside}"],
            "lies outside the run folder", tmp_path / "l", outside)
    refused(["learn", ROOT / "tune_configs" / "dus_ppo.yaml", "--out", tmp_path / "l",
             "--set", "env_config.fault={at_step: 1, marker: x, shell: y}"],
            "env_config.fault", tmp_path / "l")


def test_a_relative_marker_lands_in_the_run_folder_and_never_follows_a_link(tmp_path):
    from mmbalance.envs.env_config import fault_inside, write_fault_marker

    fault = fault_inside("f", {"at_step": 1, "marker": "crashed"}, tmp_path / "run")
    assert fault["marker"] == str((tmp_path / "run" / "crashed").resolve())
    (tmp_path / "run").mkdir()
    link = tmp_path / "run" / "link"
    link.symlink_to(tmp_path / "target")
    assert not write_fault_marker(link) and not (tmp_path / "target").exists()


def test_the_vector_env_honours_the_fault_drill(tmp_path):
    from mmbalance.envs import VectorQuotaEnv

    marker = tmp_path / "crashed"
    env = VectorQuotaEnv({"data": TINY, "train": {"epochs": 1, "batch_size": 40},
                          "steps_per_action": 1, "num_runs": 2,
                          "fault": {"at_step": 1, "marker": str(marker)}})
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="fault drill"):
        env.step(env.action_space.sample())
    assert marker.exists()
    env.step(env.action_space.sample())  # once only: the marker remembers it


# ================================================================ 3. no code from a file
def _fake_sweep(tmp_path: Path) -> tuple[Path, Path]:
    """A sweep folder as `sweep` leaves it (sweep.yaml, sweep_id, Tune's experiment)."""
    from mmbalance.tune.sweep import SweepConfig
    from mmbalance.tune.sweep.run import _claim

    out = tmp_path / "sweep"
    out.mkdir()
    cfg = SweepConfig.from_yaml(sweep_yaml(tmp_path))
    (out / "sweep.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    _claim(cfg, out)
    return out, out / cfg.name


def test_sweep_resume_never_unpickles_an_unsigned_tuner_pkl(refused, tmp_path):
    out, experiment = _fake_sweep(tmp_path)
    marker = tmp_path / "pwned"
    (experiment / "tuner.pkl").write_bytes(payload(marker))
    refused(["sweep", "--resume", out], "no signed Tune state", marker)


def test_sweep_resume_restores_only_the_signed_state(refused, tmp_path):
    from mmbalance.manifest import read_run_id
    from mmbalance.tune.sweep.guard import STATE, restore_signed_state, snapshot

    out, experiment = _fake_sweep(tmp_path)
    staging = tmp_path / "staging"  # what Tune wrote when it last saved its state
    staging.mkdir()
    (staging / "experiment_state-1.json").write_text('{"trial_data": []}')
    (experiment / "tuner.pkl").write_bytes(pickle.dumps({"honest": True}))
    run = read_run_id(out, "sweep_id")
    snapshot(out, staging, str(out), "grid", run)
    marker = tmp_path / "pwned"
    # after the last signature: Tune's files replaced by payloads, one more added
    (experiment / "tuner.pkl").write_bytes(payload(marker))
    (experiment / "searcher-state-2.pkl").write_bytes(payload(marker))
    restore_signed_state(out, str(out), "grid", run)
    assert pickle.loads((experiment / "tuner.pkl").read_bytes()) == {"honest": True}
    assert not (experiment / "searcher-state-2.pkl").exists()
    assert not marker.exists()
    # a payload in the signed snapshot itself, or an edited sweep.yaml: refused
    (out / STATE / "tuner.pkl").write_bytes(payload(marker))
    refused(["sweep", "--resume", out], "changed since it was signed", marker)
    snapshot(out, staging, str(out), "grid", run)
    (out / "sweep.yaml").write_text((out / "sweep.yaml").read_text() + "\nmax_failures: 5\n")
    refused(["sweep", "--resume", out], "sweep.yaml: changed since the sweep signed it")


def test_a_learn_trial_checkpoint_is_verified_before_tune_reads_it(tmp_path):
    from mmbalance.tune.trainables import verified_algorithm

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "checkpoint_000000"
    ckpt.mkdir()
    (ckpt / "dict_checkpoint.pkl").write_bytes(payload(marker))  # Tune unpickles this one
    algo = verified_algorithm("PPO")
    with pytest.raises(UntrustedError, match="not signed"):
        algo.restore(object(), str(ckpt))  # refused before the base class reads anything
    assert not marker.exists()


def _learn_folder(tmp_path: Path, run: str, signed_run: str, model: dict | None = None,
                  marker: Path | None = None) -> Path:
    """A learn folder whose checkpoint was signed for `signed_run` (RLlib's files faked)."""
    from mmbalance.manifest import sign_folder
    from mmbalance.tune.learn import CONFIG_COPY
    from mmbalance.tune.learn_config import LearnConfig

    out = tmp_path / f"learn_{run}_{signed_run}"
    cfg = LearnConfig.from_yaml(ROOT / "tune_configs" / "dus_ppo.yaml").to_dict()
    cfg["address"] = None
    (out / "checkpoints" / "iter_0001" / "learner_group").mkdir(parents=True)
    (out / "learn_config.yaml").write_text(yaml.safe_dump(cfg))
    (out / "run_id").write_text(run + "\n")
    ckpt = out / "checkpoints" / "iter_0001"
    (ckpt / "rllib_checkpoint.json").write_text("{}")
    (ckpt / "algorithm_state.pkl").write_bytes(payload(marker or tmp_path / "pwned"))
    (ckpt / "learner_group" / "state.pkl").write_bytes(b"")
    (ckpt / CONFIG_COPY).write_text(yaml.safe_dump({**cfg, "model": model or cfg["model"]}))
    sign_folder(ckpt, run=signed_run)
    return out


def test_learn_resume_refuses_another_runs_validly_signed_checkpoint(refused, tmp_path):
    marker = tmp_path / "pwned"
    out = _learn_folder(tmp_path, run="this", signed_run="other", marker=marker)
    refused(["learn", "--resume", out], "belongs to another run", marker)


def test_the_signing_key_may_not_live_in_an_output_folder(tmp_path, monkeypatch):
    from mmbalance.manifest import signing_key

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "learn_config.yaml").write_text("algorithm: PPO\n")
    monkeypatch.delenv("MMBALANCE_SIGNING_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(run / "checkpoints" / "cfg"))
    with pytest.raises(UserError, match="may not live in a run, learn, sweep or compare"):
        signing_key()
    assert not (run / "checkpoints" / "cfg").exists()
    (tmp_path / "sweep.yaml").write_text("name: x\n")  # a config kept here is no run folder
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert len(signing_key()) >= 16  # outside every output folder: made as before


# ================================================================ 4. silent surprises
def test_duplicate_yaml_keys_are_named_with_their_line(refused, tmp_path):
    text = (ROOT / "tune_configs" / "dus_ppo.yaml").read_text() + "\niterations: 3\n"
    path = learn_yaml(tmp_path, text=text.replace("iterations:", "iterations:", 1))
    line = refused(["learn", path, "--out", tmp_path / "o"], "duplicate key 'iterations'",
                   tmp_path / "o")
    assert "line" in line


@pytest.mark.parametrize("args, needle", [
    (["train", "--set", "seed=7"], "use --seed"),
    (["train", "--set", "method=mla"], "use --method"),
    (["train", "--set", "epochs=2"], "use --epochs"),
    (["compare", "--set", "seed=7"], "use --seeds/--first-seed"),
    (["compare", "--set", "method=mla"], "use --grid"),
    (["learn", ROOT / "tune_configs" / "dus_ppo.yaml", "--set", "iterations=3"],
     "use --iterations"),
    (["sweep", ROOT / "tune_configs" / "sweep_dus_h.yaml", "--set", "num_samples=3"],
     "use --num-samples"),
    (["prepare", "cremad", "--root", "r", "--set", "tokenizer=x"], "use --tokenizer"),
])
def test_set_of_a_key_with_its_own_flag_names_the_flag(args, needle, refused, tmp_path):
    refused([*args, "--out", tmp_path / "o"], needle, tmp_path / "o")


def test_an_interrupted_sweep_says_it_is_partial_and_exits_non_zero(ray_session, tmp_path,
                                                                     capsys):
    from mmbalance.cli import main

    out = tmp_path / "out"
    path = sweep_yaml(tmp_path, base={"data": TINY, "method": "joint", "sampler": "uniform",
                                      "train": {"epochs": 5000, "batch_size": 40}})

    def interrupt_after_the_first_result() -> None:  # Ctrl-C, as Tune sees it
        deadline = time.monotonic() + HANG_LIMIT_S
        while time.monotonic() < deadline and not any(out.glob("grid/*/checkpoint_000001")):
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # at the deadline anyway: the test never hangs

    watcher = threading.Thread(target=interrupt_after_the_first_result, daemon=True)
    watcher.start()
    rc = main(["sweep", str(path), "--out", str(out), "--no-progress"])
    watcher.join()
    err = capsys.readouterr().err
    assert rc == 130
    assert f"mmbalance sweep --resume {out}" in err
    assert "PARTIAL" in (out / "summary.md").read_text()
    assert "Best trial:" not in (out / "summary.md").read_text()


# ================================================================ 5. tracebacks -> one line
def test_a_recursive_alias_is_one_line(refused, tmp_path):
    path = learn_yaml(tmp_path, text="algorithm: PPO\nenv: quota\nmodel: &m {a: *m}\n")
    refused(["learn", path, "--out", tmp_path / "o"], "recursive alias *m", tmp_path / "o")


def test_learn_resume_after_the_network_shape_was_edited_is_one_line(refused, tmp_path):
    marker = tmp_path / "pwned"
    out = _learn_folder(tmp_path, run="r", signed_run="r", marker=marker,
                        model={"fcnet_hiddens": [8], "fcnet_activation": "tanh"})
    refused(["learn", "--resume", out], "differs in ['model']", marker)


@pytest.mark.parametrize("setting, needle", [
    ("training.minibatch_size=100000", "PPO refuses it: `minibatch_size`"),
    ("env_config.data=parquet:/no/such.parquet", "/no/such.parquet"),
])
def test_learn_yaml_errors_come_before_ray_and_leave_no_folder(setting, needle, tmp_path):
    res = cli("learn", ROOT / "tune_configs" / "dus_ppo.yaml", "--set", setting,
              "--out", tmp_path / "o")
    one_line(res, needle)  # no RLlib warnings above it: Ray never started
    assert not (tmp_path / "o").exists()


def test_sweep_on_cuda_without_gpus_for_its_trials_is_one_line(refused, tmp_path):
    # was: 93 lines of trial tracebacks, then exit 0 with an empty table
    refused(["sweep", ROOT / "tune_configs" / "sweep_dus_h.yaml", "--set",
             "base.train.device=cuda", "--out", tmp_path / "o"],
            "'cuda' needs resources.gpu > 0", tmp_path / "o")


def test_yaml_size_is_bounded_before_reading(tmp_path):
    from mmbalance.spec import MAX_YAML_BYTES, load_yaml_mapping

    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * MAX_YAML_BYTES + "\n")
    with pytest.raises(ConfigError, match="not a config"):
        load_yaml_mapping(path, "learn config")
