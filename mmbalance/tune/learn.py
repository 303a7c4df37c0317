"""`mmbalance learn CONFIG.yaml`: train a sampling policy with RLlib, checkpoint, export.

Output folder: `learn_config.yaml` (the resolved config), `progress.parquet` (one row per
iteration: env steps, episode return, the MML metrics), TensorBoard events in `tb/`,
checkpoints in `checkpoints/iter_NNNN/` (RLlib's `save_to_path`), and the exported policy in
`policy/` (plain torch + JSON, runnable with `--sampler learned:OUT/policy`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import yaml

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


def run_learn(cfg: LearnConfig, out: str | Path, progress: bool = True) -> dict:
    """Train `cfg.iterations` iterations; return where things were written."""
    import ray
    from tqdm.auto import tqdm

    from mmbalance.envs.common import resolve_dataset
    from mmbalance.tune.algos import build_algorithm_config
    from mmbalance.tune.export import export_policy

    out = new_run_dir(out)
    (out / "learn_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    started = not ray.is_initialized()
    if started:
        ray.init(address=cfg.address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    algo = None
    rows: list[dict] = []
    try:
        algo = build_algorithm_config(cfg).build_algo()
        writer = _tensorboard(out / "tb")
        bar = tqdm(total=cfg.iterations, desc=f"{cfg.algorithm} on {cfg.env}", unit="iter",
                   disable=not progress)
        t0 = time.perf_counter()
        for i in range(1, cfg.iterations + 1):
            result = algo.train()
            row = summary_row(i, result, time.perf_counter() - t0)
            rows.append(row)
            write_table(out / "progress.parquet", rows)  # nothing lost if interrupted
            if writer is not None:
                for key, value in _flatten(result).items():
                    if math.isfinite(value):  # e.g. no episode has ended yet: NaN
                        writer.add_scalar(key, value, i)
            bar.update(1)
            bar.set_postfix(ret=f"{row['episode_return_mean']:.3f}",
                            steps=int(row["env_steps"]) if math.isfinite(row["env_steps"]) else 0)
            if cfg.checkpoint_every and i % cfg.checkpoint_every == 0:
                algo.save_to_path(str((out / "checkpoints" / f"iter_{i:04d}").resolve()))
        bar.close()
        if writer is not None:
            writer.close()
        final_ckpt = (out / "checkpoints" / f"iter_{cfg.iterations:04d}").resolve()
        if not final_ckpt.exists():
            algo.save_to_path(str(final_ckpt))
        env = cfg.env_class()(cfg.env_config)
        if cfg.env == "quota-vector":  # export the single run's policy: a quota policy
            from mmbalance.envs import QuotaEnv

            single = {k: v for k, v in cfg.env_config.items()
                      if k not in ("num_runs", "autoreset_mode")}
            env.close()
            env = QuotaEnv(single)
        env_config = {k: v for k, v in cfg.env_config.items()
                      if k not in ("data", "num_runs", "autoreset_mode")}
        env_config["data"] = cfg.env_config.get("data", "synthetic")
        meta = {
            "env": "quota" if cfg.env == "quota-vector" else cfg.env,
            "env_config": env_config,
            "num_classes": resolve_dataset(env.cfg.data).num_classes,
            "modalities": env.modalities,
            "seed": cfg.seed,
            "iterations": cfg.iterations,
        }
        export_policy(algo.get_module(), env, out / "policy", meta, cfg.algorithm, cfg.seed)
    finally:
        if algo is not None:
            algo.stop()
        if started:
            ray.shutdown()
    return {"out": out, "rows": rows}


def _tensorboard(path: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))
