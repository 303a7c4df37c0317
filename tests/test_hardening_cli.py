"""Issue 12, as a hostile or careless user: every bad input to train, compare, learn, sweep and
evaluate (options, YAML, policy files, output folders) exits 2 with exactly one stderr line
naming the option, key or file, before any folder is made and without running a payload."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from mmbalance.cli import main

SMALL = "synthetic:n_train=200,n_val=100,n_test=100,bayes_samples=500"
ROOT = Path(__file__).resolve().parents[1]


def payload(marker: Path) -> str:
    """A YAML value that would run a command if it were ever constructed."""
    return f"!!python/object/apply:os.system ['touch {marker}']"


# ------------------------------------------------------------- values: type, then range
@pytest.mark.parametrize("args, needle", [
    (["--sampler", "dus-h:n_min=abc", "--method", "mla"], "'n_min' expects an integer"),
    (["--sampler", "bss-h:loss_weights=abc"], "'loss_weights'"),
    (["--sampler", "bss-h:rerank=nan"], "'rerank' expects an integer"),
    (["--sampler", "bss-h:t_grow=nan"], "'t_grow' expects a finite number"),
    (["--sampler", "dus-rl:hidden=abc", "--method", "mla"], "'hidden'"),
    (["--set", "hidden=abc"], "'hidden' expects an integer"),
    (["--set", "eval_batch_size=1.5"], "'eval_batch_size' expects an integer"),
    (["--set", "ogm_ge=maybe"], "'ogm_ge' expects true or false"),
    (["--set", "optimizer=5x"], "optimizer"),
    (["--data", "synthetic:n_train=abc"], "'n_train' expects an integer"),
    (["--data", "synthetic:separation=abc/def"], "'separation'"),
    (["--data", "digits:noise=abc"], "'noise' expects a finite number"),
    (["--seed", "-5"], "--seed"),
    (["--data", "synthetic:seed=-1"], "'seed'"),
    (["--data", "digits:seed=-1"], "'seed'"),
])
def test_train_values_are_parsed_by_type_then_range_checked(args, needle, refused, tmp_path):
    refused(["train", *args, "--out", tmp_path / "o"], needle, tmp_path / "o")


@pytest.mark.parametrize("args, needle", [
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--set", "momentum=nan"], "'momentum' expects a finite number"),
    (["train", "--set", "momentum=-inf"], "'momentum'"),
    (["train", "--sampler", "bss-l:loss_weights=1/nan/1"], "'loss_weights'"),
    (["train", "--sampler", "dus-h:strength=inf", "--method", "mla"], "'strength'"),
    (["train", "--sampler", "dus-rl:lr=nan", "--method", "mla"], "'lr'"),
    (["train", "--data", "synthetic:noise=1/inf"], "'noise'"),
    (["compare", "--gpus-per-run", "nan"], "--gpus-per-run"),
    (["compare", "--first-seed", "-3"], "--first-seed"),
])
def test_non_finite_numbers_and_negative_seeds_are_refused_where_read(args, needle, refused,
                                                                      tmp_path):
    refused([*args, "--out", tmp_path / "o"], needle, tmp_path / "o")


# ------------------------------------------------------------- output folders
def test_out_under_a_file_or_a_dangling_link_is_refused(refused, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    refused(["train", "--out", tmp_path / "file" / "run"], "is a file", tmp_path / "file" / "run")
    refused(["train", "--out", tmp_path / "file"], "is a file")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    refused(["train", "--out", link], "link to nothing", tmp_path / "nowhere")
    refused(["compare", "--out", link / "run"], "link to nothing", tmp_path / "nowhere")


def test_failed_compare_validation_leaves_no_folder_to_block_the_rerun(refused, tmp_path):
    out = tmp_path / "cmp"
    common = ["compare", "--data", SMALL, "--seeds", "1", "--epochs", "1", "--parallel", "none",
              "--no-progress", "--out", out]
    refused([*common, "--grid", "mla/dus-h:n_min=500,n_max=10"], "n_min", out)
    if not torch.cuda.is_available():
        refused([*common, "--grid", "joint/uniform", "--device", "cuda"], "cuda", out)
    assert main([*map(str, common), "--grid", "mla/dus-h:n_min=8,n_max=64", "--device", "cpu"]) == 0
    assert (out / "results.parquet").is_file()


# ------------------------------------------------------------- YAML: learn and sweep
def _learn_yaml(tmp_path: Path, **change) -> Path:
    data = yaml.safe_load((ROOT / "tune_configs" / "dus_ppo.yaml").read_text())
    data.update(change)
    path = tmp_path / "learn.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_tags_are_refused_in_one_line_and_never_run(refused, tmp_path):
    marker = tmp_path / "pwned"
    for command, name in (("learn", "dus_ppo.yaml"), ("sweep", "sweep_dus_h.yaml")):
        text = (ROOT / "tune_configs" / name).read_text()
        path = tmp_path / f"tagged_{name}"
        path.write_text(text + f"\nseed_extra: {payload(marker)}\n")
        line = refused([command, path, "--out", tmp_path / "o"], "YAML tags are not allowed",
                       tmp_path / "o", marker)
        assert str(path) in line
    refused(["learn", ROOT / "tune_configs" / "dus_ppo.yaml", "--set", f"seed={payload(marker)}",
             "--out", tmp_path / "o"], "--set seed", tmp_path / "o", marker)


@pytest.mark.parametrize("change, needle", [
    ({"iterations": "abc"}, "'iterations' expects an integer"),
    ({"model": 5}, "'model' expects a mapping"),
    ({"seed": -1}, "seed"),
    ({"training": {"lr": float("nan")}}, "'training.lr' is nan"),
    ({"env_config": {"steps_per_action": "abc"}}, "'steps_per_action' expects an integer"),
])
def test_bad_learn_yaml_values(change, needle, refused, tmp_path):
    refused(["learn", _learn_yaml(tmp_path, **change), "--out", tmp_path / "o"], needle,
            tmp_path / "o")


def test_an_empty_learn_yaml_does_not_run_a_default_ppo(refused, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    refused(["learn", path, "--out", tmp_path / "o"], "missing required key(s) ['algorithm', "
            "'env']", tmp_path / "o")


def _sweep_yaml(tmp_path: Path, **change) -> Path:
    data = {"name": "grid", "trainable": "train",
            "base": {"data": SMALL, "method": "mla", "sampler": "dus-h", "train": {"epochs": 1}},
            "search_space": {"sampler_options.strength": {"grid": [1, 4]}}}
    data.update(change)
    path = tmp_path / f"sweep_{len(list(tmp_path.glob('sweep_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("change, needle", [
    ({"num_samples": "abc"}, "'num_samples' expects an integer"),
    ({"scheduler": ["fifo"]}, "'scheduler' expects a mapping"),
    ({"search_space": [1]}, "'search_space' expects a mapping"),
    ({"base": 5}, "'base' expects a mapping"),
    ({"scheduler": {"type": "asha", "max_t": "abc"}}, "scheduler.max_t"),
    ({"resources": {"cpu": -1}}, "resources.cpu"),
    ({"resources": {"gpu": 1.5}}, "resources.gpu"),
    ({"search_space": {"train.lr": {"grid": [0.01, float("inf")]}}}, "search_space"),
    ({"stop": {"training_iteration": "abc"}}, "stop.training_iteration"),
    ({"base": {"data": SMALL, "seed": -1}}, "seed"),
    ({"base": {"data": SMALL, "train": 5}}, "'train' expects a mapping"),
    ({"base": {"data": "parquet:/no/such/file.parquet", "method": "mla", "sampler": "dus-h"}},
     "/no/such/file.parquet"),
    ({"name": "../../x"}, "plain name"),
    ({"name": "a/b"}, "plain name"),
])
def test_bad_sweep_yaml_is_refused_before_ray_starts(change, needle, refused, tmp_path):
    ray = pytest.importorskip("ray")
    was_running = ray.is_initialized()
    out = tmp_path / "deep" / "er" / "o"
    refused(["sweep", _sweep_yaml(tmp_path, **change), "--out", out], needle, out,
            tmp_path / "x", tmp_path / "deep" / "x")
    assert ray.is_initialized() == was_running  # no Ray started for a refused sweep


def test_a_sweep_never_writes_into_another_sweeps_experiment(refused, tmp_path):
    from mmbalance.tune.sweep import SWEEP_ID, SweepConfig, check_storage
    from mmbalance.tune.sweep.run import _claim

    first = tmp_path / "first"
    first.mkdir()
    cfg = SweepConfig.from_yaml(_sweep_yaml(tmp_path))
    (first / "sweep.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    _claim(cfg, first)  # what `sweep` does before Tune writes <storage>/<name>
    second = tmp_path / "second"
    refused(["sweep", _sweep_yaml(tmp_path, storage=str(first)), "--out", second],
            "already holds the Tune experiment", second)
    # --resume continues a sweep as it was started: options it would ignore are refused
    for extra, needle in ((["--num-samples", "3"], "--num-samples"),
                          (["--set", "num_samples=3"], "--set"),
                          (["--max-concurrent", "1"], "--max-concurrent")):
        refused(["sweep", "--resume", first, *extra], needle)
    check_storage(cfg, first, resume=True)  # its own experiment: resumable
    (first / SWEEP_ID).write_text("another sweep's id\n")
    with pytest.raises(Exception, match="another sweep"):
        check_storage(cfg, first, resume=True)


# ------------------------------------------------------------- policy.json and policy.pt
@pytest.fixture
def policy(tmp_path):
    from test_dus_rl import write_policy

    return write_policy(tmp_path / "policy")


def _edit(path: Path, change) -> None:
    spec = json.loads((path / "policy.json").read_text())
    change(spec)
    (path / "policy.json").write_text(json.dumps(spec))


@pytest.mark.parametrize("change, needle", [
    (lambda s: s["layers"][0].update({"in": 10**12}), "'layers[0].in' must be in"),
    (lambda s: s["layers"][0].update({"in": -5}), "'layers[0].in' must be in"),
    (lambda s: s["layers"][2].update({"in": "wide"}), "'layers[2].in' expects an integer"),
    (lambda s: s["observation_space"].pop("dim"), "'observation_space.dim' is missing"),
    (lambda s: s.pop("action_space"), "'action_space' is missing"),
    (lambda s: s["action_space"].update({"type": "Tuple"}), "'action_space.type' must be one"),
    (lambda s: s["env_config"].update({"action_mode": "continuous"}), "'action_space.type'"),
    (lambda s: s["env_config"].update({"steps_per_action": 0}),
     "'env_config.steps_per_action' must be in"),
    (lambda s: s["layers"].append({"kind": "softmax"}), "'layers[3].kind'"),
    (lambda s: s["layers"][2].update({"out": 3}), "'layers' end with 3 outputs"),
    (lambda s: s.update({"num_classes": 1}), "'num_classes'"),
    (lambda s: s.update({"env": "grid"}), "'env' must be one of"),
])
def test_policy_json_is_validated_whole_before_anything_is_written(change, needle, policy,
                                                                    refused, tmp_path):
    _edit(policy, change)
    out = tmp_path / "o"
    line = refused(["evaluate", policy, "--out", out], needle, out)
    assert str(policy / "policy.json") in line
    refused(["train", "--method", "mla", "--sampler", f"learned:{policy}", "--out", out], needle,
            out)


def test_a_pickle_in_policy_pt_is_one_line_and_never_runs(policy, refused, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"net.0.weight": Payload()}, policy / "policy.pt")
    out = tmp_path / "o"
    line = refused(["evaluate", policy, "--out", out], "not a plain tensor file", out, marker)
    assert str(policy / "policy.pt") in line and "not loaded" in line


def test_an_errored_trial_is_never_ranked_as_the_best(tmp_path):
    """A trial that ended in an error (e.g. DivergedError) keeps its row but is not ranked."""
    from types import SimpleNamespace

    from mmbalance.tune.sweep import SweepConfig, write_results

    cfg = SweepConfig.from_yaml(_sweep_yaml(tmp_path))

    def trial(name, acc, error):
        return SimpleNamespace(metrics={"trial_id": name, "val_acc": acc}, error=error,
                               config={"sampler_options": {"strength": 1}}, path=None,
                               checkpoint=None, metrics_dataframe=None)

    res = write_results(cfg, tmp_path, [trial("a", 0.9, RuntimeError("diverged")),
                                        trial("b", 0.5, None)], 1.0)
    assert res["best"]["trial"] == "b" and len(res["rows"]) == 2
    summary = (tmp_path / "summary.md").read_text()
    assert "1 trial(s) ended in an error" in summary and "| a |" not in summary
