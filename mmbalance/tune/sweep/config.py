"""The sweep YAML (`SweepConfig`): its keys, and every check made before Ray starts (each value
a key of the search space can take must give a valid base config). The format is described
in `mmbalance/tune/sweep/__init__.py`."""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import asdict, dataclass, field

from mmbalance.errors import ConfigError
from mmbalance.spec import YamlConfig, typed_value
from mmbalance.tune import search_space as dsl

TRAINABLES = ("train", "learn")
SCHEDULERS = {
    "fifo": [],
    "asha": ["max_t", "grace_period", "reduction_factor", "brackets"],
    "pbt": ["perturbation_interval", "resample_probability", "quantile_fraction"],
}
SEARCHERS = ("optuna",)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
TRAIN_BASE_TYPES = {"data": str, "method": str, "sampler": str, "sampler_options": dict,
                    "train": dict, "seed": int, "fault": dict}
TRAIN_BASE_KEYS = tuple(TRAIN_BASE_TYPES)


@dataclass
class SweepConfig(YamlConfig):
    config_name = "sweep config"

    name: str = "sweep"
    trainable: str = "train"
    base: dict = field(default_factory=dict)
    search_space: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=lambda: {"type": "fifo"})
    search: dict | None = None
    metric: str = "val_acc"
    mode: str = "max"
    num_samples: int = 1
    max_concurrent: int = 0
    resources: dict = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    stop: dict = field(default_factory=dict)
    storage: str | None = None
    max_failures: int = 1
    keep_checkpoints: int | None = None
    tracking: str | None = None  # mlflow: Tune's MLflowLoggerCallback (mmbalance/tracking.py)
    tracking_uri: str | None = None  # default: <out>/mlruns
    # the watchdog: trials waiting and none running this long ends the sweep (one line)
    max_wait_s: float = 600.0

    def to_dict(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        if not NAME.fullmatch(self.name) or ".." in self.name:
            raise ConfigError(f"name: {self.name!r} must be a plain name (letters, digits, "
                              "'.', '_', '-'; no '/' and no '..'): Tune writes <storage>/<name>")
        if self.trainable not in TRAINABLES:
            raise ConfigError(f"trainable: got {self.trainable!r}, allowed {list(TRAINABLES)}")
        if self.mode not in ("max", "min"):
            raise ConfigError(f"mode: got {self.mode!r}, allowed ['max', 'min']")
        if self.num_samples < 1 or self.max_concurrent < 0 or self.max_failures < 0:
            raise ConfigError("num_samples >= 1, max_concurrent >= 0, max_failures >= 0 required")
        if self.keep_checkpoints is not None and (
                not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 2):
            raise ConfigError(f"keep_checkpoints: got {self.keep_checkpoints!r}, allowed null "
                              "(keep all) or an integer >= 2")
        if not self.max_wait_s > 0:
            raise ConfigError(f"max_wait_s: must be > 0 seconds, got {self.max_wait_s}")
        drills = [k for k in self.search_space if k.split(".")[0] == "fault"
                  or k.startswith("env_config.fault")]
        if drills:
            raise ConfigError(f"search_space: {drills[0]!r}: the fault drill is not swept")
        kind = (self.scheduler or {}).get("type", "fifo")
        if kind not in SCHEDULERS:
            raise ConfigError(f"scheduler.type: got {kind!r}, allowed {list(SCHEDULERS)}")
        bad = sorted(set(self.scheduler) - {"type", *SCHEDULERS[kind]})
        if bad:
            raise ConfigError(f"scheduler: {kind} does not take {bad}; allowed: "
                              f"{SCHEDULERS[kind]}")
        for key, value in self.scheduler.items():
            if key != "type" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value > 0):
                raise ConfigError(f"scheduler.{key}: must be a number > 0, got {value!r}")
        if self.search is not None:
            if self.search.get("type") not in SEARCHERS:
                raise ConfigError(f"search.type: got {self.search.get('type')!r}, allowed "
                                  f"{list(SEARCHERS)}")
            if any("grid" in spec for spec in self.search_space.values()):
                raise ConfigError("search: a search algorithm cannot take 'grid' entries; "
                                  "use choice")
        if kind == "pbt" and any("grid" in spec for spec in self.search_space.values()):
            raise ConfigError("scheduler pbt: mutations cannot be 'grid' entries; use choice")
        self.check_resources()
        from mmbalance.tracking import check_tracking_key

        check_tracking_key(self.tracking, self.tracking_uri)
        for key, value in self.stop.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"stop.{key}: must be a number (stop when the metric reaches "
                                  f"it), got {value!r}")
        if not self.search_space:
            raise ConfigError("search_space: empty; give at least one key to sweep")
        for key, spec in self.search_space.items():
            dsl.check_entry(key, spec)
        # every value each key can take must give a valid base config
        for key, spec in self.search_space.items():
            for value in dsl.all_values(spec):
                trial = self.sample_base()
                dsl.set_path(trial, key, value)
                self.check_base(trial, key)

    def check_resources(self) -> None:
        """Per-trial resources, checked here rather than by Ray after it has started."""
        bad = sorted(set(self.resources) - {"cpu", "gpu"}, key=str)
        if bad:
            raise ConfigError(f"resources: unknown {bad}; allowed: ['cpu', 'gpu']")
        for key, value in self.resources.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0):
                raise ConfigError(f"resources.{key}: must be a number >= 0, got {value!r}")
            if value > 1 and not float(value).is_integer():
                raise ConfigError(f"resources.{key}: a fraction must be at most 1 (Ray shares "
                                  f"one unit), more must be whole, got {value}")
        if not any(self.resources.get(k, d) for k, d in (("cpu", 1), ("gpu", 0))):
            raise ConfigError("resources: a trial needs some cpu or gpu, got none")

    def sample_base(self) -> dict:
        base = copy.deepcopy(self.base)
        for key, spec in self.search_space.items():
            dsl.set_path(base, key, dsl.representative(spec))
        return base

    def check_base(self, base: dict, key: str = "") -> None:
        where = f" (with search_space.{key})" if key else ""
        try:
            if self.trainable == "learn":
                from mmbalance.tune.learn_config import LearnConfig

                LearnConfig.from_dict(base)
                return
            unknown = sorted(set(base) - set(TRAIN_BASE_KEYS))
            if unknown:
                raise ConfigError(f"base: unknown key(s) {unknown}; allowed: "
                                  f"{list(TRAIN_BASE_KEYS)}")
            from mmbalance.policies.registry import build_sampler
            from mmbalance.trainers.config import TrainConfig
            from mmbalance.trainers.methods import check_method_sampler

            for k, v in base.items():
                typed_value("base", k, v, TRAIN_BASE_TYPES[k])
            from mmbalance.envs.env_config import check_fault

            check_fault("base.fault", base.get("fault") or {}, "epoch")
            if base.get("train", {}).get("device") == "cuda" and not self.resources.get("gpu"):
                raise ConfigError("base.train.device: 'cuda' needs resources.gpu > 0 (Ray "
                                  "hides the GPUs from a trial that asks for none)")

            train = TrainConfig.from_dict({**base.get("train", {}),
                                           "method": base.get("method", "joint"),
                                           "seed": base.get("seed", 0)})
            sampler = build_sampler(base.get("sampler", "uniform"),
                                    base.get("sampler_options", {}))
            check_method_sampler(train.method, sampler)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{where}") from None


def expand_grid(cfg: SweepConfig) -> list[dict]:
    """The grid's points (for documentation and tests); ranges are left out."""
    grids = {k: s["grid"] for k, s in cfg.search_space.items() if "grid" in s}
    return [dict(zip(grids, values)) for values in itertools.product(*grids.values())]
