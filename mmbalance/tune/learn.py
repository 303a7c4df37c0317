"""`mmbalance learn CONFIG.yaml`: train a sampling policy with RLlib, checkpoint, export.

Output folder: `learn_config.yaml` (the resolved config), `progress.parquet` (one row per
iteration: env steps, episode return, the MML metrics), TensorBoard events in `tb/`,
checkpoints in `checkpoints/iter_NNNN/` (RLlib's `save_to_path`), and the exported policy in
`policy/` (plain torch + JSON, runnable with `--sampler learned:OUT/policy`). With `tracking:
mlflow` each iteration's row also goes to MLflow (`mmbalance/tracking.py`: `LearnRun`).

`mmbalance learn --resume OUT [--iterations N]` continues an interrupted (or finished) run
from its newest complete checkpoint: RLlib restores the algorithm (policy, optimizer, env
runner and metric state), iterations after that checkpoint are run again and their rows in
`progress.parquet` replaced, so every iteration appears once. A checkpoint is written under
a temporary name, signed (`mmbalance/manifest.py`: every file's SHA-256 under an HMAC key
kept outside the run folder) and renamed when complete, so a kill mid-save never leaves one
that looks whole. RLlib checkpoints are pickles: a resume verifies the checkpoint against its
signed manifest before loading anything and refuses a missing, changed, added or unsigned
file (`trust_unsigned` skips the signature, never the check that RLlib's components are
there, so a run never silently continues from fresh weights). Where a run runs is not part
of it: `learn_config.yaml` keeps no cluster address, and `--resume DIR --address A`
continues it on another cluster (or, without one, on `RAY_ADDRESS` or a new local cluster).
"""

from __future__ import annotations

import math
import pickle
import shutil
import time
from pathlib import Path

import yaml

from mmbalance.errors import UserError
from mmbalance.manifest import new_run_id, read_run_id, sign_folder, verify_folder
from mmbalance.runs import new_run_dir, write_table
from mmbalance.tune.learn_config import LearnConfig


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def summary_row(iteration: int, result: dict, seconds: float) -> dict:
    flat = _flatten(result)
    row = {"iteration": iteration, "seconds": seconds}
    picks = {  # first key present wins (a restarted env runner can drop its own counters)
        "env_steps": ["num_env_steps_sampled_lifetime",
                      "env_runners/num_env_steps_sampled_lifetime"],
        "episodes": ["env_runners/num_episodes_lifetime"],
        "episode_return_mean": ["env_runners/episode_return_mean"],
        "episode_len_mean": ["env_runners/episode_len_mean"],
    }
    for name, keys in picks.items():
        row[name] = next((flat[k] for k in keys if k in flat), math.nan)
    for key, value in flat.items():
        if key.startswith("env_runners/mml/"):
            row[key[len("env_runners/mml/"):]] = value
    return row


def export_learned(module, cfg: LearnConfig, out: Path, iterations: int,
                   rows: list[dict]) -> Path:
    """Export a learned module as a policy folder (`policy.json` + `policy.pt`) with what
    it replays with: its env config, what a quota meant while it learned and how quotas
    shared an iteration's budget (the env's defaults unless given), and what learning
    cost (`rows`: the progress rows, the last one's counters)."""
    env = cfg.env_class()(cfg.env_config)
    quota = hasattr(env.cfg, "budget")
    mode = ({"train": {**env.cfg.train,
                       "quota_mode": env.cfg.train_config(0).quota_mode},
             "budget": env.cfg.budget} if quota else {})
    if cfg.env == "quota-vector":  # export the single run's policy: a quota policy
        from mmbalance.envs import QuotaEnv

        single = {k: v for k, v in cfg.env_config.items()
                  if k not in ("num_runs", "autoreset_mode")}
        env.close()
        env = QuotaEnv({**single, **mode})
    env_config = {k: v for k, v in cfg.env_config.items()  # the fault drill stays here
                  if k not in ("data", "num_runs", "autoreset_mode", "fault")}
    env_config.update(mode)
    env_config["data"] = cfg.env_config.get("data", "synthetic")
    meta = {
        "env": "quota" if cfg.env == "quota-vector" else cfg.env,
        "env_config": env_config,
        "num_classes": env.dataset.num_classes,
        "modalities": env.modalities,
        "seed": cfg.seed,
        "iterations": iterations,
        "learned_with": learning_cost(rows, env),
    }
    from mmbalance.tune.export import export_policy

    return export_policy(module, env, out, meta, cfg.algorithm, cfg.seed)


def learning_cost(rows: list[dict], env) -> dict:
    """What learning cost in training: env steps and episodes sampled, and the training
    iterations those env steps trained (a quota env step covers `steps_per_action`
    iterations, a sequence env step `epochs_per_action` epochs of ceil(N / B))."""
    last = rows[-1] if rows else {}
    steps = float(last.get("env_steps", 0.0))
    steps = steps if math.isfinite(steps) else 0.0
    episodes = float(last.get("episodes", 0.0))
    if hasattr(env.cfg, "steps_per_action"):
        per_step = env.cfg.steps_per_action
    else:
        n, b = len(env.dataset.splits["train"]), env.cfg.train_config(0).batch_size
        per_step = env.cfg.epochs_per_action * math.ceil(n / b)
    return {"env_steps": int(steps), "episodes": int(episodes) if math.isfinite(episodes) else 0,
            "iterations": int(steps * per_step)}


def latest_checkpoint(out: Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint of a learn folder, as (iteration, path)."""
    found = []
    for path in (out / "checkpoints").glob("iter_*"):
        digits = path.name[len("iter_"):]
        if path.is_dir() and digits.isdigit():
            found.append((int(digits), path))
    return max(found) if found else None


# the run's config as the checkpoint was made with it, signed with the checkpoint: a
# resume after learn_config.yaml was edited (another network shape) is refused by name
CONFIG_COPY = "mmbalance_learn_config.yaml"
# what may change between a run and its resume (the budget; the cluster is not the run's)
RESUMABLE_KEYS = ("iterations", "address", "tracking", "tracking_uri")


def _save(algo, out: Path, i: int, cfg: LearnConfig) -> None:
    final = out / "checkpoints" / f"iter_{i:04d}"
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    algo.save_to_path(str(tmp.resolve()))
    (tmp / CONFIG_COPY).write_text(yaml.safe_dump(_stored(cfg), sort_keys=False))
    sign_folder(tmp, run=read_run_id(out))
    if final.exists():  # the same iteration again after a resume
        shutil.rmtree(final)
    tmp.rename(final)


# what RLlib restores an algorithm from; without one it would carry on with fresh state
CHECKPOINT_PARTS = ("rllib_checkpoint.json", "algorithm_state.pkl", "learner_group")


def _stored(cfg: LearnConfig) -> dict:
    return {**cfg.to_dict(), "address": None}  # where it ran is not what the run is


def check_checkpoint(path: Path, trust_unsigned: bool = False, run: str | None = None,
                     cfg: LearnConfig | None = None) -> None:
    """Refuse a checkpoint that is unsigned, changed, incomplete or (`run`: this run's id)
    another run's, or (`cfg`) made with another config than the run's, before RLlib
    unpickles any of it (one line naming the file or the keys)."""
    verify_folder(path, trust_unsigned, run=None if trust_unsigned else run)
    for part in CHECKPOINT_PARTS:
        if not (path / part).exists():
            raise UserError(f"{path / part}: missing; the checkpoint is incomplete and a resume "
                            "would start from fresh weights, so it was not loaded")
    if cfg is not None and (path / CONFIG_COPY).is_file():
        from mmbalance.spec import load_yaml_mapping

        made = load_yaml_mapping(path / CONFIG_COPY, str(path / CONFIG_COPY))
        now = _stored(cfg)
        changed = sorted(k for k in set(made) | set(now)
                         if k not in RESUMABLE_KEYS and made.get(k) != now.get(k))
        if changed:
            raise UserError(f"--resume: learn_config.yaml differs in {changed} from the config "
                            f"its checkpoint {path.name} was made with (edited since?); only "
                            "--iterations may change on a resume: undo the edit, or start a new "
                            "run with the new config")


def resume_learn(out: str | Path, iterations: int | None = None,
                 progress: bool = True, trust_unsigned: bool = False,
                 address: str | None = None) -> dict:
    """Continue the learn run in `out` from its newest checkpoint (to `iterations` if given,
    else the run's own budget), once that checkpoint matches its signed manifest, on the
    cluster at `address` (see `run_learn`)."""
    cfg, ckpt, rows = plan_resume(out, iterations, trust_unsigned)
    return run_learn(cfg, out, progress, start=ckpt, rows=rows, address=address)


def plan_resume(out: str | Path, iterations: int | None = None, trust_unsigned: bool = False
                ) -> tuple[LearnConfig, tuple[int, Path], list[dict]]:
    """What `resume_learn` continues from: the run's config (without the cluster address
    it ran on: that is the resume's choice), its newest checkpoint, verified against its
    signed manifest, and the rows up to it. Checked before any cluster is joined."""
    import pandas as pd

    out = Path(out)
    saved = out / "learn_config.yaml"
    if not saved.is_file():
        raise UserError(f"--resume: {out} is not a `mmbalance learn` output folder "
                        "(no learn_config.yaml)")
    data = LearnConfig.from_yaml(saved).to_dict()
    ckpt = latest_checkpoint(out)
    if ckpt is None:
        raise UserError(f"--resume: {out} has no complete checkpoint to continue from")
    if iterations is not None:
        if iterations < ckpt[0]:
            raise UserError(f"--iterations {iterations}: the run already has a checkpoint at "
                            f"iteration {ckpt[0]}; give at least that")
        data["iterations"] = iterations
    data["address"] = None  # folders of earlier versions stored the cluster they ran on
    cfg = LearnConfig.from_dict(data)
    check_checkpoint(ckpt[1], trust_unsigned, run=read_run_id(out), cfg=cfg)
    rows: list[dict] = []
    if (out / "progress.parquet").is_file():
        rows = [r for r in pd.read_parquet(out / "progress.parquet").to_dict("records")
                if r["iteration"] <= ckpt[0]]
    if ckpt[0] >= cfg.iterations:
        print(f"--resume: {out} already has a checkpoint at iteration {ckpt[0]} >= "
              f"{cfg.iterations}; exporting the policy from it")
    return cfg, ckpt, rows


def run_learn(cfg: LearnConfig, out: str | Path, progress: bool = True,
              start: tuple[int, Path] | None = None, rows: list[dict] | None = None,
              address: str | None = None) -> dict:
    """Train to `cfg.iterations` iterations; return where things were written. `start`
    (iteration, checkpoint) continues a run in `out` (see `resume_learn`). Ray: `address`
    (`--address`), else the config's `address:`, else `RAY_ADDRESS`, else a local cluster;
    connected before anything is written."""
    from mmbalance.ray_session import ray_session

    where, origin = (address, "--address") if address else (cfg.address, "address:")
    cfg = check_learn(cfg, out, where)
    with ray_session(where, origin=origin):
        check_learn_resources(cfg)  # the cluster joined: what it has
        return _train(cfg, out, progress, start, list(rows or []))


def check_learn(cfg: LearnConfig, out: str | Path, address: str | None) -> LearnConfig:
    """What a learn run would refuse once Ray has started, checked before it starts (and so
    before its folder is made): the fault drill's marker inside `out`, the data (loaded: a
    missing file is named now), the device, RLlib's own validation of the algorithm config,
    and the resources it asks for against the cluster when that is known here (a new local
    cluster: this machine). Returns the config with the marker made absolute."""
    import dataclasses

    from mmbalance.envs.env_config import Episodes, fault_inside
    from mmbalance.errors import ConfigError
    from mmbalance.ray_session import known_resources

    fault = cfg.env_config.get("fault")
    if fault:
        env_config = {**cfg.env_config,
                      "fault": fault_inside("env_config.fault", fault, out)}
        cfg = dataclasses.replace(cfg, env_config=env_config)
    env_cfg = cfg.env_class().cfg_class.from_dict(cfg.env_config)
    Episodes(env_cfg).first()  # loads (and caches) the data the spaces come from
    runners = int(cfg.env_runners.get("num_env_runners", 0) or 0)
    device = env_cfg.train.get("device", "auto")
    if device == "cuda":
        if runners == 0:  # the env trains in this process
            from mmbalance.trainers.trainer import resolve_device

            try:
                resolve_device("cuda")
            except ConfigError:
                raise ConfigError("env_config.train.device: 'cuda', but the env trains in this "
                                  "process (num_env_runners 0) and torch sees no CUDA GPU here; "
                                  "use auto or cpu") from None
        elif not cfg.env_runners.get("num_gpus_per_env_runner"):
            raise ConfigError("env_config.train.device: 'cuda' needs "
                              "env_runners.num_gpus_per_env_runner > 0 (Ray hides the GPUs from "
                              "an env runner that asks for none)")
    if cfg.learners.get("num_gpus_per_learner") and not cfg.learners.get("num_learners"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("learners.num_gpus_per_learner: the learner runs in this process "
                              "(num_learners 0) and torch sees no CUDA GPU here; use 0, or "
                              "num_learners >= 1 on a cluster with GPUs")
    have = known_resources(address)
    if have is not None:
        check_learn_resources(cfg, have)
    return cfg


def algorithm_request(cfg: LearnConfig):
    """RLlib's validated config and the resource bundles it asks Ray for (the first is the
    algorithm's own; a Tune trial asks for all, `learn` runs the first in this process)."""
    import logging

    from mmbalance.errors import ConfigError
    from mmbalance.tune.algos import build_algorithm_config

    rllib = logging.getLogger("ray.rllib")
    level = rllib.level
    rllib.setLevel(logging.ERROR)  # its API-stack notice is not the user's concern here
    try:
        config = build_algorithm_config(cfg)
        request = config.algo_class.default_resource_request(config)  # validates the config
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"learn config: {cfg.algorithm} refuses it: {first}") from None
    finally:
        rllib.setLevel(level)
    return config, [dict(b) for b in request.bundles]


def check_learn_resources(cfg: LearnConfig, have: dict | None = None,
                          in_trial: bool = False) -> None:
    """Refuse what the cluster can never grant (env runners, learners, their GPUs)."""
    from mmbalance.ray_session import require_resources

    _, bundles = algorithm_request(cfg)
    if in_trial and cfg.env_config.get("train", {}).get("device") == "cuda":
        from mmbalance.errors import ConfigError

        runners = int(cfg.env_runners.get("num_env_runners", 0) or 0)
        if runners == 0 and not bundles[0].get("GPU"):  # the env trains in the trial
            raise ConfigError("env_config.train.device: 'cuda', but the env trains in the "
                              "trial (num_env_runners 0), which asks Ray for no GPU (Ray hides "
                              "them); give learners.num_gpus_per_learner, or use auto or cpu")
        if runners and not cfg.env_runners.get("num_gpus_per_env_runner"):
            raise ConfigError("env_config.train.device: 'cuda' needs "
                              "env_runners.num_gpus_per_env_runner > 0 (Ray hides the GPUs "
                              "from an env runner that asks for none)")
    remote = bundles if in_trial else bundles[1:]
    what = ("learners / env_runners" if not in_trial else "a learn trial (its learners and env "
            "runners)")
    per = "trial" if in_trial else "learn run"
    for bundle in remote:
        require_resources(what, bundle, have, per=per)
    total = {k: sum(b.get(k, 0) for b in remote) for k in ("CPU", "GPU")}
    require_resources(what, total, have, one_node=False, per=per)


def _train(cfg: LearnConfig, out: str | Path, progress: bool,
           start: tuple[int, Path] | None, rows: list[dict]) -> dict:
    from tqdm.auto import tqdm

    from mmbalance.tune.algos import build_algorithm_config

    if start is None:
        out = new_run_dir(out)
        (out / "run_id").write_text(new_run_id() + "\n")
    out = Path(out)
    stored = _stored(cfg)
    (out / "learn_config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    first = start[0] + 1 if start is not None else 1
    algo = None
    tracked = None
    if cfg.tracking == "mlflow":
        from mmbalance.tracking import LearnRun

        tracked = LearnRun(out, cfg.tracking_uri, stored)
    ok = False
    try:
        algo = build_algorithm_config(cfg).build_algo()
        if start is not None:
            try:
                algo.restore_from_path(str(start[1].resolve()))
            except (pickle.UnpicklingError, EOFError) as exc:  # only with --trust-unsigned
                raise UserError(f"{start[1]}: a checkpoint file does not load "
                                f"({type(exc).__name__}: {exc})") from None
            except (RuntimeError, ValueError, KeyError) as exc:
                # a checkpoint older than its signed config copy, restored into an edited
                # config (another network shape): torch's or RLlib's error, as one line
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise UserError(f"{start[1]}: does not load into this run's config (edited "
                                f"learn_config.yaml?): {type(exc).__name__}: {first}") from None
        writer = _tensorboard(out / "tb")
        bar = tqdm(total=cfg.iterations, initial=first - 1, unit="iter",
                   desc=f"{cfg.algorithm} on {cfg.env}", disable=not progress)
        t0 = time.perf_counter() - (rows[-1]["seconds"] if rows else 0.0)
        for i in range(first, cfg.iterations + 1):
            result = algo.train()
            row = summary_row(i, result, time.perf_counter() - t0)
            rows.append(row)
            write_table(out / "progress.parquet", rows)  # nothing lost if interrupted
            if tracked is not None:
                tracked.log_row(row)
            if writer is not None:
                for key, value in _flatten(result).items():
                    if math.isfinite(value):  # e.g. no episode has ended yet: NaN
                        writer.add_scalar(key, value, i)
            bar.update(1)
            bar.set_postfix(ret=f"{row['episode_return_mean']:.3f}",
                            steps=int(row["env_steps"]) if math.isfinite(row["env_steps"]) else 0)
            if cfg.checkpoint_every and i % cfg.checkpoint_every == 0:
                _save(algo, out, i, cfg)
        bar.close()
        if writer is not None:
            writer.close()
        last = max(cfg.iterations, first - 1)
        if not (out / "checkpoints" / f"iter_{last:04d}").exists():
            _save(algo, out, last, cfg)
        export_learned(algo.get_module(), cfg, out / "policy", last, rows)
        ok = True
    finally:
        if algo is not None:
            algo.stop()
        if tracked is not None:
            tracked.finish(ok)
    return {"out": out, "rows": rows, "config": cfg}


def _tensorboard(path: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))
