"""VectorQuotaEnv: K QuotaEnv training runs stepped together through one batched update.

A Gymnasium `VectorEnv` of `num_runs` sub-environments, each exactly a `QuotaEnv` (one
episode = one multimodal training run, an action = per-modality quotas for the next
`steps_per_action` iterations). The K runs keep their own `Trainer` (sampler, learning
status, logs, epoch ends and validation, best-model tracking, final metrics); only the K
`MLAMethod.step` calls of each iteration are replaced by one batched forward/backward and
optimizer step over stacked parameters (`mmbalance.trainers.methods.mla_batched.StackedMLA`).
Observations, rewards, episode ends and infos equal those of K separate `QuotaEnv`s with the
same seeds and actions, vectorised by `gymnasium.vector.SyncVectorEnv`, to float tolerance;
so do seeding (`reset(seed=s)` seeds run i with s + i, as SyncVectorEnv does) and the
autoreset modes (`autoreset_mode`: `next_step`, Gymnasium's and RLlib's default; `same_step`;
`disabled`, where a done run is reset with `reset(options={"reset_mask": mask})`).

Config: a QuotaEnv config plus `num_runs` (K) and `autoreset_mode`. RLlib passes the number
of sub-environments as `num_envs`, which is accepted as `num_runs`. Method `mla` only (the
quota sampler's per-modality batches need it) and optimizer `sgd`. The quota meaning is the
run's `train.quota_mode`, with `TrainConfig`'s default (`share`) as everywhere: each run
gives its M updates per iteration out by its own quotas, so in one batched iteration a run
may skip a modality and another train it twice; a per-run mask leaves a run's parameters,
momentum buffers and projector untouched for the steps it does not take, and each run's
compute ledger counts the steps it took.

In RLlib (new API stack), an env runner uses it as its vector env with
`.environment(VectorQuotaEnv, env_config={...})` and
`.env_runners(gym_env_vectorize_mode="vector_entry_point", num_envs_per_env_runner=K)`.
With Gymnasium: `gymnasium.make_vec("mmbalance/VectorQuota-v0", num_envs=K, config={...})`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, fields

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, iterate

from mmbalance.envs.env_config import resolve_dataset
from mmbalance.envs.quota_env import QuotaEnv, QuotaEnvConfig
from mmbalance.errors import ConfigError
from mmbalance.trainers.methods.mla_batched import StackedMLA

AUTORESET_MODES = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP,
                   "disabled": AutoresetMode.DISABLED}


@dataclass
class VectorQuotaEnvConfig(QuotaEnvConfig):
    num_runs: int = 4
    autoreset_mode: str = "next_step"  # next_step | same_step | disabled

    def check(self) -> None:
        super().check()
        if not isinstance(self.num_runs, int) or self.num_runs < 1:
            raise ConfigError(f"num_runs: must be an integer >= 1, got {self.num_runs!r}")
        if self.autoreset_mode not in AUTORESET_MODES:
            raise ConfigError(f"autoreset_mode: got {self.autoreset_mode!r}, allowed "
                              f"{list(AUTORESET_MODES)}")
        if self.method != "mla":
            raise ConfigError(f"method: the vectorised quota env trains 'mla' only, got "
                              f"{self.method!r}")
        if self.train_config(0).optimizer != "sgd":
            raise ConfigError("train.optimizer: the vectorised quota env supports 'sgd' only")

    def run_config(self, data) -> dict:
        """The config of one sub-environment (a plain QuotaEnv config)."""
        cfg = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(QuotaEnvConfig)
               if f.name != "data"}
        return {**cfg, "data": data}


class VectorQuotaEnv(gym.vector.VectorEnv):
    cfg_class = VectorQuotaEnvConfig

    def __init__(self, config: dict | None = None, num_envs: int | None = None):
        config = dict(config or {})
        if "num_envs" in config:  # how RLlib's env runner passes the number of sub-envs
            num_envs = config.pop("num_envs")
        if num_envs is not None:
            if "num_runs" in config and config["num_runs"] != num_envs:
                raise ConfigError(f"num_runs ({config['num_runs']}) differs from num_envs "
                                  f"({num_envs}), the number of sub-environments asked for")
            config["num_runs"] = int(num_envs)
        self.cfg = VectorQuotaEnvConfig.from_dict(config)
        # selectors (a family too) go to the runs as they are: each data set is loaded once
        # per process and shared (resolve_dataset's cache); an object reference once here
        data = self.cfg.data
        if not isinstance(data, (str, list, tuple)):
            data = resolve_dataset(data)
        self.num_envs = self.cfg.num_runs
        self.runs = [QuotaEnv(self.cfg.run_config(data)) for _ in range(self.num_envs)]
        first = self.runs[0]
        self.modalities = first.modalities
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.autoreset_mode = AUTORESET_MODES[self.cfg.autoreset_mode]
        self.metadata = {"autoreset_mode": self.autoreset_mode, "render_modes": []}
        self.render_mode = None
        self.stack: StackedMLA | None = None
        k = self.num_envs
        self._obs = np.zeros((k, *self.single_observation_space.shape), dtype=np.float32)
        self._rewards = np.zeros(k, dtype=np.float64)
        self._terminations = np.zeros(k, dtype=np.bool_)
        self._truncations = np.zeros(k, dtype=np.bool_)
        self._autoreset_envs = np.zeros(k, dtype=np.bool_)
        # wall time inside step() and inside training (batched updates, epoch ends, final
        # metrics), summed over the runs' shared steps
        self.timing = {"env_seconds": 0.0, "trainer_seconds": 0.0}

    @property
    def trainers(self) -> list:
        return [r.trainer for r in self.runs]

    # -------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict | None = None):
        k = self.num_envs
        if seed is None:
            seeds: list = [None] * k
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(k)]
        else:
            seeds = list(seed)
            if len(seeds) != k:
                raise ValueError(f"reset: {len(seeds)} seeds for {k} runs")
        options = dict(options) if options is not None else None
        mask = np.ones(k, dtype=np.bool_)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options.pop("reset_mask"))
            if mask.shape != (k,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({k},) "
                                 "with at least one True")
            if self.stack is None and not mask.all():
                raise RuntimeError("reset every run (no reset_mask) before a partial reset")
        infos: list = [None] * k
        for i in np.flatnonzero(mask):
            self._obs[i], infos[i] = self._reset_run(int(i), seeds[i], options)
        self._terminations[mask] = False
        self._truncations[mask] = False
        self._autoreset_envs[mask] = False
        return self._obs.copy(), self._merge_infos(infos)

    def step(self, actions):
        t_enter = time.perf_counter()
        k = self.num_envs
        if self.stack is None:
            raise RuntimeError("call reset() before step()")
        actions = list(iterate(self.action_space, actions))
        if len(actions) != k:
            raise ValueError(f"step: {len(actions)} actions for {k} runs")
        resets, stepping = [], []
        for i in range(k):
            if self._autoreset_envs[i]:
                if self.autoreset_mode == AutoresetMode.NEXT_STEP:
                    resets.append(i)
                    continue
                if self.autoreset_mode == AutoresetMode.DISABLED:
                    raise RuntimeError(f"run {i} is done; with autoreset_mode 'disabled' reset "
                                       "it with reset(options={'reset_mask': ...})")
            stepping.append(i)
        for i in stepping:  # every action is checked before any run trains
            self.runs[i].actions.to_quotas(actions[i])
        infos: list = [None] * k
        for i in resets:  # next_step autoreset: the action is ignored, the run starts anew
            self._obs[i], infos[i] = self._reset_run(i, None, None)
            self._rewards[i] = 0.0
            self._terminations[i] = self._truncations[i] = False
        if stepping:
            self._step_runs(stepping, actions, infos)
        self._autoreset_envs = self._terminations | self._truncations
        self.timing["env_seconds"] += time.perf_counter() - t_enter
        return (self._obs.copy(), self._rewards.copy(), self._terminations.copy(),
                self._truncations.copy(), self._merge_infos(infos))

    # ------------------------------------------------------------ checkpoints
    _VECTOR_KEYS = ("_obs", "_rewards", "_terminations", "_truncations", "_autoreset_envs")

    def state_dict(self) -> dict:
        """Every run's episode state (see QuotaEnv.save) and the batch's last step."""
        from mmbalance.trainers.state import to_saveable

        if self.stack is None:
            raise RuntimeError("call reset() before saving")
        return {"runs": [r.state_dict() for r in self.runs],
                "vector": {k: to_saveable(getattr(self, k).copy()) for k in self._VECTOR_KEYS}}

    def load_state_dict(self, state: dict) -> None:
        from mmbalance.trainers.state import from_saveable

        if len(state["runs"]) != self.num_envs:
            raise ConfigError(f"num_runs: the saved state has {len(state['runs'])} runs, this "
                              f"env {self.num_envs}")
        for run, saved in zip(self.runs, state["runs"], strict=True):
            run.load_state_dict(saved)
        if self.stack is None:
            self.stack = StackedMLA(self.trainers)
        else:
            for i, run in enumerate(self.runs):
                self.stack.load(i, run.trainer)
        for k in self._VECTOR_KEYS:
            setattr(self, k, from_saveable(state["vector"][k]))

    def save(self, path) -> None:
        from mmbalance.trainers.state import save_file

        save_file(self.state_dict(), path)

    def restore(self, path) -> None:
        from mmbalance.trainers.state import load_file

        self.load_state_dict(load_file(path))

    # ---------------------------------------------------------------- internals
    def _reset_run(self, i: int, seed: int | None, options: dict | None):
        run = self.runs[i]
        obs, info = run.reset(seed=seed, options=options)
        shapes = run.dataset.input_shapes
        if getattr(self, "_shapes", shapes) != shapes:  # stacked parameters need one shape
            raise ConfigError(f"data: the vectorised env trains every run in one batched "
                              f"update, so every drawn data set needs the same input shapes; "
                              f"{run.selector} has {shapes}, others {self._shapes}")
        self._shapes = shapes
        if self.stack is not None:
            self.stack.load(i, run.trainer)
        elif all(r.trainer is not None for r in self.runs):
            self.stack = StackedMLA(self.trainers)
        return obs, info

    def _step_runs(self, stepping: list[int], actions: list, infos: list) -> None:
        """QuotaEnv.step for the runs in `stepping`, their iterations trained batched."""
        runs = self.runs
        pending = {i: runs[i].begin_step(actions[i]) for i in stepping}
        t_train = time.perf_counter()
        active = list(stepping)
        for _ in range(self.cfg.steps_per_action):
            active = self._iteration(active)
            if not active:
                break
        # close the last epoch (evaluation) of runs at their budget, as QuotaEnv does
        self._iteration([i for i in stepping if not runs[i].trainer.done
                         and runs[i].decisions.spent(runs[i].trainer.global_step)])
        self.timing["trainer_seconds"] += time.perf_counter() - t_train
        for i in stepping:
            run = runs[i]
            seconds = run.timing["trainer_seconds"]
            obs, r, terminated, truncated, info = run.end_step(pending[i])
            self.timing["trainer_seconds"] += run.timing["trainer_seconds"] - seconds
            if self.autoreset_mode == AutoresetMode.SAME_STEP and (terminated or truncated):
                final_info = info
                obs_new, info = self._reset_run(i, None, None)
                info = {"final_obs": obs, "final_info": final_info, **info}
                obs = obs_new
            self._obs[i], self._rewards[i] = obs, r
            self._terminations[i], self._truncations[i] = terminated, truncated
            infos[i] = info

    def _iteration(self, runs: list[int]) -> list[int]:
        """One training iteration of each run in `runs`, batched; returns the runs that
        trained (the others found their epoch budget spent)."""
        batches = {}
        for i in runs:
            batch = self.runs[i].trainer.next_batch()
            if batch is not None:
                batches[i] = batch
        outs = self.stack.step(batches)
        for i, out in outs.items():
            self.runs[i].trainer.record_step(batches[i], out)
        return list(batches)

    def _merge_infos(self, infos: list) -> dict:
        merged: dict = {}
        for i, info in enumerate(infos):
            if info is not None:
                merged = self._add_info(merged, info, i)
        return merged

    # ------------------------------------------------------------------ helpers
    def heuristic_actions(self, name: str = "dus-h", strength: float = 4.0) -> np.ndarray:
        """Each run's `QuotaEnv.heuristic_action`, batched."""
        return np.stack([r.heuristic_action(name, strength) for r in self.runs])

    def close_extras(self, **kwargs) -> None:
        self.stack = None
        for r in getattr(self, "runs", []):
            r.close()
