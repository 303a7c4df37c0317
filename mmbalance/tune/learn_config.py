"""The YAML of `mmbalance learn`: what is learned, with which RLlib algorithm, on what.

```yaml
algorithm: PPO            # any algorithm of RLlib's registry: PPO, APPO, IMPALA, SAC, DQN, ...
env: quota                # quota (DUS) | quota-vector (DUS, K runs in one batched update,
                          #   env_config.num_runs) | sequence (BSS)
env_config: {...}         # QuotaEnvConfig / SequenceEnvConfig fields
iterations: 20            # algo.train() calls
checkpoint_every: 5       # 0 = only the final checkpoint
seed: 0
address: null             # where a new run starts (--address wins; null: RAY_ADDRESS, else
                          #   a local cluster); not kept with the run: --resume takes --address
model: {fcnet_hiddens: [64, 64], fcnet_activation: tanh}
training: {...}           # keyword arguments of the algorithm's .training()
env_runners: {...}        # of .env_runners(), e.g. num_env_runners, num_gpus_per_env_runner
learners: {...}           # of .learners(), e.g. num_learners, num_gpus_per_learner
reporting: {...}          # of .reporting(), e.g. min_time_s_per_iteration
fault_tolerance: {...}    # of .fault_tolerance(), e.g. restart_failed_env_runners
tracking: null            # mlflow: log each iteration to MLflow too (docs/tracking.md)
tracking_uri: null        # default: the file store OUT/mlruns
```

Loaded with a safe YAML loader; `algorithm` and `env` are required (an empty file is an
error, not a default PPO); every value is parsed as its key's type; unknown keys, unknown
algorithms, non-finite numbers and keyword arguments the algorithm does not take are errors
that name the key and the allowed values, before Ray starts.

An algorithm is a name in RLlib's registry (`ray.rllib.algorithms.registry.ALGORITHMS`):
its config class comes from there, so any algorithm RLlib registers runs without code here.
Which action modes it can learn follows from its default RLModule: the env's action space
of each mode is offered to it, and the modes whose space it builds an action distribution
for are the ones it can use. Without `env_config.action_mode` the env's default is taken if
the algorithm can act in it, else the first mode it can.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field, fields

import yaml

from mmbalance.errors import ConfigError
from mmbalance.spec import YamlConfig, load_yaml_text, set_dotted

ENVS = ("quota", "quota-vector", "sequence")
SECTIONS = ("training", "env_runners", "learners", "reporting", "fault_tolerance")


def algorithm_config_class(name: str):
    """The AlgorithmConfig class of the algorithm RLlib registers under `name`."""
    from ray.rllib.algorithms.registry import ALGORITHMS

    if name not in ALGORITHMS:
        raise ConfigError(f"algorithm: unknown {name!r}; allowed: {sorted(ALGORITHMS)}")
    try:
        algo_class = ALGORITHMS[name]()[0]
    except ImportError as exc:  # an algorithm whose own dependencies are not installed
        raise ConfigError(f"algorithm {name}: cannot be imported ({exc})") from None
    return type(algo_class.get_default_config())


def _sample_space(kind: str):
    """A small action space of the kind an env's action mode gives (its size is not what
    decides whether an algorithm can act in it)."""
    import gymnasium as gym
    import numpy as np

    return {"Discrete": gym.spaces.Discrete(4), "MultiDiscrete": gym.spaces.MultiDiscrete([3, 3]),
            "Box": gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)}[kind]


def action_distribution(config_cls, space_kind: str, model: dict):
    """The action distribution class the algorithm's default RLModule builds for an action
    space of `space_kind`; None when it cannot act in such a space."""
    import logging

    import gymnasium as gym
    import numpy as np
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    config = config_cls()
    spec = config.get_default_rl_module_spec()
    spec.observation_space = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
    spec.action_space = _sample_space(space_kind)
    spec.model_config = {**asdict(DefaultModelConfig(**model)),
                         **config._model_config_auto_includes}
    # RLlib warns (catalogs, deprecations) while it tries a space: not the user's business
    quiet = [logging.getLogger(name) for name in ("ray", "ray.rllib")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        return spec.build().get_inference_action_dist_cls()
    except Exception:  # noqa: BLE001 - RLlib refuses a space in many ways
        return None
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def allowed_kwargs(config_cls, method: str) -> list[str]:
    """Keyword arguments `config_cls().<method>()` accepts, along its class hierarchy."""
    names: set[str] = set()
    for klass in inspect.getmro(config_cls):
        fn = klass.__dict__.get(method)
        if fn is None:
            continue
        for p in inspect.signature(fn).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self":
                names.add(p.name)
    return sorted(names)


@dataclass
class LearnConfig(YamlConfig):
    config_name = "learn config"
    required = ("algorithm", "env")

    algorithm: str = "PPO"
    env: str = "quota"
    env_config: dict = field(default_factory=dict)
    iterations: int = 10
    checkpoint_every: int = 5
    seed: int = 0
    address: str | None = None
    model: dict = field(default_factory=lambda: {"fcnet_hiddens": [64, 64],
                                                 "fcnet_activation": "tanh"})
    training: dict = field(default_factory=dict)
    env_runners: dict = field(default_factory=lambda: {"num_env_runners": 0})
    learners: dict = field(default_factory=dict)
    reporting: dict = field(default_factory=dict)
    fault_tolerance: dict = field(default_factory=dict)
    tracking: str | None = None  # mlflow: log to MLflow too (mmbalance/tracking.py)
    tracking_uri: str | None = None  # default: <out>/mlruns

    def check(self) -> None:
        cls = algorithm_config_class(self.algorithm)
        from mmbalance.tracking import check_tracking_key

        check_tracking_key(self.tracking, self.tracking_uri)
        if self.env not in ENVS:
            raise ConfigError(f"env: unknown {self.env!r}; allowed: {list(ENVS)}")
        if self.iterations < 1 or self.checkpoint_every < 0 or self.seed < 0:
            raise ConfigError(f"iterations must be >= 1, checkpoint_every >= 0 and seed >= 0; "
                              f"got {self.iterations}, {self.checkpoint_every}, {self.seed}")
        for section in SECTIONS:
            value = getattr(self, section)
            if not isinstance(value, dict):
                raise ConfigError(f"{section}: must be a mapping, got {type(value).__name__}")
            allowed = allowed_kwargs(cls, section)
            bad = sorted(set(value) - set(allowed))
            if bad:
                raise ConfigError(
                    f"{section}: {self.algorithm} does not take {bad}; allowed: {allowed}"
                )
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

        model_keys = [f.name for f in fields(DefaultModelConfig)]
        bad = sorted(set(self.model) - set(model_keys))
        if bad:
            raise ConfigError(f"model: unknown key(s) {bad}; allowed: {model_keys}")
        env_cfg = self.env_class().cfg_class.from_dict(self.env_config)  # validate it now
        self._choose_action_mode(cls, env_cfg.action_mode)

    def _choose_action_mode(self, cls, default: str) -> None:
        """The action modes the algorithm can act in (see the module docstring): the given
        one must be among them; without one, the env's default or the first of them."""
        from mmbalance.policies.policy_file import SPACES

        spaces = SPACES["sequence" if self.env == "sequence" else "quota"]
        given = self.env_config.get("action_mode")
        order = [given or default, *(m for m in spaces if m != (given or default))]
        can = [m for m in order if action_distribution(cls, spaces[m], self.model) is not None]
        if given is not None and given not in can:
            raise ConfigError(f"algorithm {self.algorithm} cannot act with "
                              f"env_config.action_mode {given!r} (a {spaces[given]} space); "
                              f"it can with {can}")
        if not can:
            raise ConfigError(f"algorithm {self.algorithm} cannot act in any of the {self.env} "
                              f"env's action spaces {sorted(spaces.values())}")
        self.env_config = {**self.env_config, "action_mode": can[0]}

    def env_class(self):
        from mmbalance.envs import ENVS as env_classes

        if self.env == "quota-vector":
            from mmbalance.envs.vector_quota_env import VectorQuotaEnv

            return VectorQuotaEnv
        return env_classes[self.env]

    def to_dict(self) -> dict:
        return asdict(self)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`key.sub=value` strings (YAML-parsed values) applied onto a nested mapping."""
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for item in overrides:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. env_config.levels=3")
        set_dotted(out, key, load_yaml_text(raw, f"--set {key}"), f"--set {item!r}")
    return out
