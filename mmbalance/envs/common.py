"""What both environments share: config checking, dataset resolution, the trainer they wrap."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbalance.data.dataset import MultimodalDataset
from mmbalance.errors import ConfigError
from mmbalance.spec import typed_fields
from mmbalance.trainers.config import TrainConfig

_DATA_CACHE: dict[str, MultimodalDataset] = {}
# Episodes reset without a seed train with run seeds from this range; `mmbalance evaluate`
# uses seeds below it, so evaluation runs are never runs a policy was trained on.
RUN_SEEDS = (10_000, 2**31 - 1)


def resolve_dataset(data: Any) -> MultimodalDataset:
    """A selector string (cached per process), a dataset, or a Ray ObjectRef to one."""
    if isinstance(data, MultimodalDataset):
        return data
    if isinstance(data, str):
        if data not in _DATA_CACHE:
            from mmbalance.data.registry import load_dataset

            _DATA_CACHE[data] = load_dataset(data)
        return _DATA_CACHE[data]
    if type(data).__name__ == "ObjectRef":  # shipped by the driver with ray.put
        import ray

        return resolve_dataset(ray.get(data))
    raise ConfigError(
        f"data: expected a selector string, a MultimodalDataset or a Ray ObjectRef, "
        f"got {type(data).__name__}"
    )


@dataclass
class EnvConfigBase:
    data: Any = "synthetic"
    method: str = "mla"
    train: dict = field(default_factory=dict)
    reward: dict = field(default_factory=dict)
    max_env_steps: int = 0  # 0 = no cap; a cap truncates the episode
    max_seconds: float = 0.0  # wall-clock cap per episode; 0 = none
    # fault drill: {at_step: N, marker: PATH} raises once in the N-th env step of an episode
    # (the marker file remembers it across processes), to test runner restarts
    fault: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict | None):
        data = dict(data or {})
        cfg = cls(**typed_fields("env_config", data, cls))
        cfg.check()
        return cfg

    def check(self) -> None:
        if "seed" in self.train or "method" in self.train:
            raise ConfigError("env_config.train: 'seed' and 'method' are set by the env, not here")
        self.train_config(0)
        if self.max_env_steps < 0 or self.max_seconds < 0 or not math.isfinite(self.max_seconds):
            raise ConfigError("env_config: max_env_steps and max_seconds must be >= 0")

    def maybe_fail(self, env_step: int) -> None:
        if not self.fault or env_step != int(self.fault.get("at_step", -1)):
            return
        marker = Path(self.fault["marker"])
        if not marker.exists():
            marker.write_text("crashed once\n")
            raise RuntimeError(f"injected env fault at step {env_step} (fault drill)")

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig.from_dict({**self.train, "method": self.method, "seed": seed})


class SavableEpisode:
    """`save(path)` / `restore(path)` for an environment mid-episode, so a resumed trial
    continues its episode rather than restarting it: the trainer's full state (model,
    optimizer, sampler with its epoch plan, learning status, every random stream; between
    epochs or within one), the episode's clock and reward baseline, and the env's own random
    stream. The env must have been built with the same config (checked). Subclasses
    provide `_new_run(run_seed)` (a fresh sampler and trainer) and list in `episode_keys`
    the plain attributes that belong to the episode."""

    episode_keys: tuple[str, ...] = ()

    def _start_episode(self, seed: int | None) -> int:
        """What every env's `reset` does first: seed the env's own stream, start a fresh run
        (its seed drawn from RUN_SEEDS unless given), restart the clock and take the reward's
        validation baseline. Returns the run seed."""
        super().reset(seed=seed)  # gymnasium.Env.reset, next in the env's MRO
        run_seed = int(seed) if seed is not None else int(self.np_random.integers(*RUN_SEEDS))
        self._new_run(run_seed)
        self.clock.reset()
        self.val0 = self.trainer.evaluate("val")["acc"] if self.reward_cfg.val_acc else 0.0
        return run_seed

    def state_dict(self) -> dict:
        from mmbalance.trainers.state import to_saveable

        if self.trainer is None:
            raise RuntimeError("call reset() before saving an episode")
        return {
            "config": _comparable(self.cfg),
            "run_seed": self.run_seed,
            "trainer": self.trainer.state_dict(),
            "episode": {k: to_saveable(getattr(self, k)) for k in self.episode_keys},
            "clock": {"steps": self.clock.steps,
                      "seconds": time.perf_counter() - self.clock.start},
            "np_random": self.np_random.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        from mmbalance.trainers.state import from_saveable

        mine = _comparable(self.cfg)
        if state["config"] != mine:
            diff = sorted(k for k in set(mine) | set(state["config"])
                          if state["config"].get(k) != mine.get(k))
            raise ConfigError(f"episode was saved with another env config (differs in {diff})")
        self._new_run(int(state["run_seed"]))
        self.trainer.load_state_dict(state["trainer"])
        for k, v in state["episode"].items():
            setattr(self, k, from_saveable(v))
        self.clock.steps = int(state["clock"]["steps"])
        self.clock.start = time.perf_counter() - float(state["clock"]["seconds"])
        self.np_random.bit_generator.state = state["np_random"]

    def save(self, path: str | Path) -> None:
        from mmbalance.trainers.state import save_file

        save_file(self.state_dict(), path)

    def restore(self, path: str | Path) -> None:
        from mmbalance.trainers.state import load_file

        self.load_state_dict(load_file(path))


def _comparable(cfg: EnvConfigBase) -> dict:
    """The env config as plain values; a dataset given as an object is named by its type."""
    from dataclasses import fields

    out = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in ("data", "fault")}
    out["data"] = cfg.data if isinstance(cfg.data, str) else type(cfg.data).__name__
    return out


class EpisodeClock:
    """Env steps and wall time of the current episode, for truncation."""

    def __init__(self, max_steps: int, max_seconds: float):
        self.max_steps, self.max_seconds = max_steps, max_seconds
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.start = time.perf_counter()

    def tick(self) -> bool:
        """Count one env step; True if the episode must be truncated."""
        self.steps += 1
        if self.max_steps and self.steps >= self.max_steps:
            return True
        return bool(self.max_seconds and time.perf_counter() - self.start >= self.max_seconds)


def run_info(trainer) -> dict:
    """The run's metrics for `info`: learning status, latest validation metrics."""
    info: dict = {"epoch": trainer.epoch, "global_step": trainer.global_step}
    info.update(trainer.status.as_dict())
    if trainer.history.epochs:
        last = trainer.history.epochs[-1]
        info.update({k: v for k, v in last.items() if k.startswith("val_")})
    return info
