"""Build an RLlib AlgorithmConfig (current API stack) from a LearnConfig."""

from __future__ import annotations

from mmbalance.tune.learn_config import LearnConfig, algorithm_config_class


def build_algorithm_config(cfg: LearnConfig, env_config: dict | None = None):
    """The config object; swapping the algorithm is the YAML's `algorithm` line."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from mmbalance.tune.callbacks import MMLMetricsCallback

    config = (
        algorithm_config_class(cfg.algorithm)()
        .environment(cfg.env_class(), env_config=env_config or cfg.env_config)
        .env_runners(**{"num_env_runners": 0, **_vector_runner_options(cfg), **cfg.env_runners})
        .learners(**cfg.learners)
        .training(**cfg.training)
        .rl_module(model_config=DefaultModelConfig(**cfg.model))
        .callbacks(MMLMetricsCallback)
        .debugging(seed=cfg.seed)
    )
    if cfg.reporting:
        config = config.reporting(**cfg.reporting)
    if cfg.fault_tolerance:
        config = config.fault_tolerance(**cfg.fault_tolerance)
    return config


def _vector_runner_options(cfg: LearnConfig) -> dict:
    """The vectorised quota env is one gymnasium VectorEnv of `num_runs` training runs."""
    if cfg.env != "quota-vector":
        return {}
    return {"gym_env_vectorize_mode": "vector_entry_point",
            "num_envs_per_env_runner": int(cfg.env_config.get("num_runs", 4))}
