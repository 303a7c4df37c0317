"""The life of an episode in every environment: start it (data, run, clock, reward
baselines), take a decision's snapshot, finish a step (reward, clock, info, final metrics),
and save and restore it mid-episode, so QuotaEnv, SequenceEnv and VectorQuotaEnv do it one
way."""

from __future__ import annotations

import time
from pathlib import Path

from mmbalance.data.dataset import MultimodalDataset
from mmbalance.envs.env_config import EnvConfigBase, Episodes
from mmbalance.errors import ConfigError
from mmbalance.policies.signals import RewardConfig, reward, snapshot


class SavableEpisode:
    """The episode life of every env: `_start_episode` (data, run, clock, reward baselines),
    `_finish_step` (reward, clock, info, final metrics), and `save(path)` / `restore(path)`
    mid-episode, so a resumed trial continues its episode rather than restarting it: the
    trainer's full state (model, optimizer, sampler with its epoch plan, learning status,
    every random stream; between epochs or within one), the episode's data, clock and reward
    baselines, and the env's own random stream. The env must have been built with the same
    config (checked). Subclasses set `cfg`, `clock`, `reward_cfg`, `episodes`, `paired` in
    `__init__` (`_setup_episodes` does the last three), provide `_new_run(run_seed)` (a
    fresh sampler and trainer on `self.dataset`) and `_reference_sampler()`, and list in
    `episode_keys` the plain attributes that belong to the episode."""

    episode_keys: tuple[str, ...] = ()
    _shared_keys = ("val0", "episode_return", "advantage", "selector")

    def _setup_episodes(self) -> MultimodalDataset:
        """Reward, episode draws and the paired reference; returns the data that fixes the
        spaces (every data set of a family must have the same modalities)."""
        from mmbalance.envs.paired import PairedAdvantage

        self.reward_cfg = RewardConfig.from_dict(self.cfg.reward)
        self.episodes = Episodes(self.cfg)
        self.paired = PairedAdvantage(self.reward_cfg, self._build_reference)
        self.dataset = self.episodes.first()
        return self.dataset

    def _build_reference(self, key) -> object:
        """A fresh reference run for the episode set-up `key` = (selector, run seed)."""
        from mmbalance.trainers.trainer import Trainer

        selector, run_seed = key
        return Trainer(self.episodes.dataset(selector), self.cfg.train_config(run_seed),
                       self._reference_sampler())

    def _reference_sampler(self):
        raise NotImplementedError

    def _start_episode(self, seed: int | None) -> int:
        """What every env's `reset` does first: seed the env's own stream, draw the episode's
        data and run seed (the seed given, else from RUN_SEEDS or the pool), start a fresh
        run, restart the clock and take the reward's baselines. Returns the run seed."""
        super().reset(seed=seed)  # gymnasium.Env.reset, next in the env's MRO
        selector, run_seed = self.episodes.draw(self.np_random, seed)
        self._use_data(selector)
        self._new_run(run_seed)
        self.clock.reset()
        self.val0 = self.trainer.evaluate("val")["acc"] if self.reward_cfg.val_acc else 0.0
        self.episode_return = 0.0
        self.paired.start(self.trainer, (selector, run_seed))
        self.advantage = 0.0  # same seed, same initial weights: no advantage yet
        return run_seed

    def _use_data(self, selector: str | None) -> None:
        data = self.episodes.dataset(selector)
        if list(data.modalities) != list(self.modalities):
            raise ConfigError(f"data: every data set of the family needs the modalities "
                              f"{self.modalities}; {selector} has {data.modalities}")
        self.selector, self.dataset = selector, data

    def _begin_decision(self):
        """What every env step does before its action trains anything: the fault drill
        (`fault`) and the reward's snapshot of the run before the decision."""
        if self.trainer is None:
            raise RuntimeError("call reset() before step()")
        self.cfg.maybe_fail(self.clock.steps + 1)
        return snapshot(self.trainer, self.val0, self.advantage)

    def _finish_step(self, before, extra: dict) -> tuple[float, bool, bool, dict]:
        """After the step's training: (reward, terminated, truncated, info). A run whose
        budget is spent terminates, and its info carries `final_val_*` / `final_test_*` of
        the best-validation model (and the final advantage when paired)."""
        trainer = self.trainer
        terminated = trainer.done
        self.advantage = self.paired.advantage(trainer, terminated)
        r = reward(before, snapshot(trainer, self.val0, self.advantage), self.reward_cfg)
        self.episode_return += r
        truncated = self.clock.tick() and not terminated
        info = run_info(trainer)
        info.update(extra)
        if self.paired.enabled:
            info["advantage"] = self.advantage
        if terminated:
            final = trainer.final_metrics()
            info.update({f"final_val_{k}": v for k, v in final["val"].items()})
            info.update({f"final_test_{k}": v for k, v in final["test"].items()})
            # the run's compute, so an episode's result is read beside what it cost (under
            # `share` every action leaves the totals at uniform's); counts only: the seconds
            # are the machine's, and a replayed or resumed episode's info is the same
            info.update({f"final_ledger_{k}": v for k, v in final["ledger"].items()
                         if not k.endswith("_seconds")})
        return r, terminated, truncated, info

    def state_dict(self) -> dict:
        from mmbalance.trainers.state import to_saveable

        if self.trainer is None:
            raise RuntimeError("call reset() before saving an episode")
        keys = (*self._shared_keys, *self.episode_keys)
        return {
            "config": _comparable(self.cfg),
            "run_seed": self.run_seed,
            "trainer": self.trainer.state_dict(),
            "episode": {k: to_saveable(getattr(self, k)) for k in keys},
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
        self._use_data(state["episode"].get("selector"))
        self._new_run(int(state["run_seed"]))
        self.trainer.load_state_dict(state["trainer"])
        for k, v in state["episode"].items():
            setattr(self, k, from_saveable(v))
        self.paired.start(self.trainer, (self.selector, int(state["run_seed"])))
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
    plain = isinstance(cfg.data, (str, list, tuple))
    out["data"] = list(cfg.data) if isinstance(cfg.data, tuple) else (
        cfg.data if plain else type(cfg.data).__name__)
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
