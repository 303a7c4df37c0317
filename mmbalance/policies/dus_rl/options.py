"""DUS-RL's options: the selector (`dus-rl:k=5,lr=0.01,init=PATH`), the defaults an initial
exported policy brings (its env config's decision interval, action mode, quota grid, reward
and budget rule), and their checks, each failure one line naming the option."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmbalance.errors import ConfigError, UserError
from mmbalance.limits import TRAIN_MAXIMA
from mmbalance.policies.decision import DEFAULT_STEPS_PER_ACTION
from mmbalance.policies.policy_file import ExportedPolicy, load_policy
from mmbalance.policies.quota_actions import DEFAULT_BUDGET, DEFAULT_GRID, UNSTATED_BUDGET
from mmbalance.policies.signals import RewardConfig
from mmbalance.spec import parse_spec

MODES = ("discrete", "flat", "continuous")
MAX_HIDDEN_LAYERS = 16
SPACE_MODE = {"MultiDiscrete": "discrete", "Discrete": "flat", "Box": "continuous"}
# every option but init=PATH, whose value may hold commas (see `parse_selector`)
OPTIONS = ("k", "lr", "entropy", "baseline_beta", "hidden", "mode", "grid", "w_discrepancy",
           "w_weak", "w_val", "scale", "log_std", "learn_std", "budget")


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"dus-rl: '{name}' must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"dus-rl: '{name}' must be a number, got {value!r}") from None


@dataclass
class DUSRLOptions:
    k: int  # decide (and learn) every k training steps
    lr: float
    entropy: float
    baseline_beta: float
    hidden: list[int]
    mode: str  # discrete | flat | continuous
    grid: tuple[float, ...]
    reward: RewardConfig
    log_std: float
    learn_std: bool
    init: str | None  # an exported RLlib quota policy to start from
    policy_file: ExportedPolicy | None
    budget: str  # fixed: quotas rescaled to M·B per iteration (policies/quota_actions.py)

    def config(self) -> dict:
        return {"k": self.k, "lr": self.lr, "entropy": self.entropy,
                "baseline_beta": self.baseline_beta, "hidden": self.hidden, "mode": self.mode,
                "grid": list(self.grid), "log_std": self.log_std, "learn_std": self.learn_std,
                "init": self.init, "reward": self.reward.to_dict()}


def dus_rl_options(
    k: int | None = None,
    lr: float = 0.005,
    entropy: float = 0.01,
    baseline_beta: float = 0.1,
    hidden: int | Sequence[int] = 32,
    mode: str | None = None,
    grid: Sequence[float] | None = None,
    w_discrepancy: float | None = None,
    w_weak: float | None = None,
    w_val: float | None = None,
    scale: float | None = None,
    log_std: float = -1.0,
    learn_std: bool = True,
    init: str | None = None,
    budget: str | None = None,
) -> DUSRLOptions:
    """The options as given, over an initial policy's env config (where `init` names one),
    over the defaults; checked."""
    init = str(init) if init is not None else None
    policy = load_policy(init) if init else None
    env_cfg = policy.spec["env_config"] if policy is not None else {}
    if policy is not None:
        space = policy.spec["action_space"].get("type")
        if space not in SPACE_MODE:
            raise UserError(f"dus-rl init={init}: action space {space!r} is not a quota "
                            f"policy's; allowed: {sorted(SPACE_MODE)}")
        if mode is not None and mode != SPACE_MODE[space]:
            raise ConfigError(f"dus-rl: mode={mode} does not match init={init}, whose action "
                              f"space is {space} (mode {SPACE_MODE[space]})")
        mode = SPACE_MODE[space]
    k_given = _number("k", k if k is not None else env_cfg.get("steps_per_action",
                                                          DEFAULT_STEPS_PER_ACTION))
    base = RewardConfig.from_dict(env_cfg.get("reward"))
    if base.paired:  # one run online has no paired reference run: the default terms
        base = RewardConfig()
    given = {"discrepancy": ("w_discrepancy", w_discrepancy), "weak_gain": ("w_weak", w_weak),
             "val_acc": ("w_val", w_val), "scale": ("scale", scale)}
    reward = RewardConfig.from_dict({**base.to_dict(), **{
        key: _number(name, v) for key, (name, v) in given.items() if v is not None}})
    # an initial policy's quotas follow the budget rule it was learned with (`free` for
    # policies exported before budgets existed)
    budget = budget or (env_cfg.get("budget", UNSTATED_BUDGET) if policy else DEFAULT_BUDGET)
    opts = DUSRLOptions(
        k=int(k_given), lr=_number("lr", lr), entropy=_number("entropy", entropy),
        baseline_beta=_number("baseline_beta", baseline_beta),
        hidden=[int(h) for h in (hidden if isinstance(hidden, list | tuple) else [hidden])],
        mode=mode or env_cfg.get("action_mode", "discrete"),
        grid=tuple(float(g) for g in (grid or env_cfg.get("quota_grid", DEFAULT_GRID))),
        reward=reward, log_std=_number("log_std", log_std), learn_std=bool(learn_std),
        init=init, policy_file=policy, budget=budget)
    _check(opts, k_given)
    return opts


def _check(opts: DUSRLOptions, k_given: float) -> None:
    if opts.mode not in MODES:
        raise ConfigError(f"dus-rl: mode={opts.mode!r}; allowed {list(MODES)}")
    if opts.k < 1 or opts.k != k_given:
        raise ConfigError(f"dus-rl: 'k' must be an integer >= 1, got {k_given}")
    for key in ("lr", "entropy", "baseline_beta", "log_std"):
        if not math.isfinite(getattr(opts, key)):
            raise ConfigError(f"dus-rl: '{key}' must be a finite number")
    if opts.lr <= 0 or opts.entropy < 0:
        raise ConfigError(f"dus-rl: need lr > 0 and entropy >= 0, got lr={opts.lr}, "
                          f"entropy={opts.entropy}")
    if not 0 < opts.baseline_beta <= 1:
        raise ConfigError(f"dus-rl: 'baseline_beta' must be in (0, 1], got "
                          f"{opts.baseline_beta}")
    if not opts.hidden or min(opts.hidden) < 1:
        raise ConfigError(f"dus-rl: 'hidden' needs sizes >= 1 (e.g. 32 or 64/64), got "
                          f"{opts.hidden}")
    # bounded as the model's `hidden` is: hidden=2000000000 would allocate 96 GB at bind
    if max(opts.hidden) > TRAIN_MAXIMA["hidden"] or len(opts.hidden) > MAX_HIDDEN_LAYERS:
        raise ConfigError(f"dus-rl: 'hidden' takes at most {MAX_HIDDEN_LAYERS} sizes of at "
                          f"most {TRAIN_MAXIMA['hidden']:,} each, got {opts.hidden}")


def parse_selector(rest: str) -> dict:
    """The options of `dus-rl[:key=value,...]` (as text, for the registry to type);
    `init=PATH` keeps its slashes and commas: it runs to the end or to the next `,<option>=` (so sweeps may list it anywhere)."""
    head, sep, tail = rest.partition("init=")
    if sep and head and not head.endswith(","):
        raise ConfigError(f"sampler 'dus-rl': cannot read {rest!r}; write init=PATH as its own "
                          f"option")
    later = re.search(rf",\s*(?:{'|'.join(OPTIONS)})\s*=", tail)
    path, after = (tail[: later.start()], tail[later.start() + 1 :]) if later else (tail, "")
    _, options = parse_spec("dus-rl:" + ",".join(p for p in (head.rstrip(","), after) if p),
                            "sampler")
    if sep:
        if not path.strip():
            raise ConfigError("sampler 'dus-rl': init= needs the folder of an exported policy")
        options["init"] = str(Path(path.strip()))
    return options
