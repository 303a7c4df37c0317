"""DUS-RL: a quota policy that learns online, inside one training run, by REINFORCE.

The DUS paper's RL variant: a small policy network adapts the per-modality quotas while the
multimodal model trains; no fleet of past runs is needed. It meets exactly what a `QuotaEnv`
policy meets (`mmbalance.trainers.signals`):

- observation: `quota_observation(status, t/T, last quotas, ...)`, clipped to its bounds;
- action: `QuotaActionMap` (`discrete`: a categorical per modality over the grid of batch
  sizes; `flat`: one categorical over all combinations; `continuous`: a Gaussian per
  modality, clipped to [-1, 1], or tanh-squashed for SAC policies);
- reward of a decision: `reward(before, after, RewardConfig)` on snapshots taken when the
  decision is made and `k` iterations later (the validation term uses the latest epoch's val
  accuracy, received through `on_epoch_end`; before the first epoch ends it is chance, 1/C,
  where the env evaluates the untrained model).

Every `k` iterations the sampler scores the pending decision and takes one REINFORCE step,
`loss = -(r - b) log pi(a|s) - entropy * H(pi(.|s))` (Adam, `lr`), then moves the baseline
`b <- b + baseline_beta (r - b)` (b starts at the first reward) and samples the next action.
Rewards are immediate (a contextual bandit: no discounting across decisions); the last
decision is scored at the run's last step, before the final validation. A clipped Gaussian
also pays `10 * relu(|mean| - 1)^2`: past the clip every sample gives the same quota, the
advantage vanishes and the policy would stay stuck at the edge.

The network follows the exported-policy convention (`policies/learned.py`): it outputs
action-distribution inputs (logits; or mean and log-std for a Box). `init=PATH` starts from
an exported RLlib quota policy (its observation and action spaces must match this run) and
keeps training it; without it a small MLP (`hidden`, tanh, near-uniform or centred on the
quota B at the start) is built. With init, the settings default to the policy's env config
(`steps_per_action`, `action_mode`, `quota_grid`, `reward`); a DQN policy's Q-values
(Discrete, `flat`) are read as logits.

Each step adds `rl_p_<m>_<n>` (probability that modality m gets n samples; discrete),
`rl_mean_<m>` (expected quota; continuous: the quota at the mean action), `rl_std_<m>`
(continuous: the Gaussian's std in action units), `rl_reward`, `rl_baseline`, `rl_entropy`
and `rl_updates` to the step table. Seeded from the run's sampler rng and a torch Generator,
so a run repeats exactly; a trainer checkpoint carries the network, its Adam state, the
stream and the pending decision, so a restored run continues exactly too.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from mmbalance.errors import ConfigError, UserError
from mmbalance.policies.dus import QuotaSampler
from mmbalance.policies.learned import FORMAT, ExportedPolicy, load_policy
from mmbalance.policies.quota_actions import DEFAULT_GRID, QuotaActionMap
from mmbalance.spec import parse_spec, typed_fields
from mmbalance.trainers.sampler import SamplerContext, Scorer
from mmbalance.trainers.signals import (
    RewardConfig,
    Snapshot,
    quota_observation,
    quota_observation_bounds,
    reward,
)

MODES = ("discrete", "flat", "continuous")
SPACE_MODE = {"MultiDiscrete": "discrete", "Discrete": "flat", "Box": "continuous"}
LOG_STD_RANGE = (-5.0, 2.0)
HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
EDGE_WEIGHT = 10.0  # continuous, clipped: penalty on a Gaussian mean outside [-1, 1]


@contextmanager
def _one_thread():
    """Run the policy's tiny ops on one intra-op thread, then restore the count.

    Some CPU kernels (out-of-place exp and sqrt, log_softmax) enter an OpenMP parallel
    region even for a handful of values; on a busy machine each such region costs
    milliseconds, more than the whole update. Switching costs well under a microsecond.
    """
    n = torch.get_num_threads()
    if n == 1 or not _OPENMP:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


_OPENMP = "OpenMP" in torch.__config__.parallel_info()


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"dus-rl: '{name}' must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"dus-rl: '{name}' must be a number, got {value!r}") from None


class DUSRLSampler(QuotaSampler):
    """DUS quotas from a policy trained online by REINFORCE (see the module docstring)."""

    name = "dus-rl"

    def __init__(
        self,
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
        quota_mode: str | None = None,
    ):
        self.init = str(init) if init is not None else None
        self.policy_file: ExportedPolicy | None = load_policy(self.init) if self.init else None
        env_cfg = self.policy_file.spec["env_config"] if self.policy_file is not None else {}
        if self.policy_file is not None:
            space = self.policy_file.spec["action_space"].get("type")
            if space not in SPACE_MODE:
                raise UserError(f"dus-rl init={self.init}: action space {space!r} is not a "
                                f"quota policy's; allowed: {sorted(SPACE_MODE)}")
            if mode is not None and mode != SPACE_MODE[space]:
                raise ConfigError(f"dus-rl: mode={mode} does not match init={self.init}, whose "
                                  f"action space is {space} (mode {SPACE_MODE[space]})")
            mode = SPACE_MODE[space]
        self.k_given = _number("k", k if k is not None else env_cfg.get("steps_per_action", 10))
        self.k = int(self.k_given)
        self.mode = mode or env_cfg.get("action_mode", "discrete")
        self.grid = tuple(float(g) for g in (grid or env_cfg.get("quota_grid", DEFAULT_GRID)))
        self.lr, self.entropy = _number("lr", lr), _number("entropy", entropy)
        self.baseline_beta = _number("baseline_beta", baseline_beta)
        self.hidden = [int(h) for h in (hidden if isinstance(hidden, list | tuple) else [hidden])]
        self.log_std0, self.learn_std = _number("log_std", log_std), bool(learn_std)
        base = RewardConfig.from_dict(env_cfg.get("reward"))
        given = {"discrepancy": ("w_discrepancy", w_discrepancy), "weak_gain": ("w_weak", w_weak),
                 "val_acc": ("w_val", w_val), "scale": ("scale", scale)}
        self.reward_cfg = RewardConfig.from_dict({**base.to_dict(), **{
            key: _number(name, v) for key, (name, v) in given.items() if v is not None}})
        self._check_options()
        # an initial policy's quotas mean what they meant when it was learned (`batch`
        # for policies exported before quota modes existed)
        default_mode = env_cfg.get("quota_mode", "batch") if self.policy_file else "steps"
        super().__init__(quota_mode=quota_mode or default_mode)

    def _check_options(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"dus-rl: mode={self.mode!r}; allowed {list(MODES)}")
        if self.k < 1 or self.k != self.k_given:
            raise ConfigError(f"dus-rl: 'k' must be an integer >= 1, got {self.k_given}")
        for key in ("lr", "entropy", "baseline_beta", "log_std0"):
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(f"dus-rl: '{key.rstrip('0')}' must be a finite number")
        if self.lr <= 0 or self.entropy < 0:
            raise ConfigError(f"dus-rl: need lr > 0 and entropy >= 0, got lr={self.lr}, "
                              f"entropy={self.entropy}")
        if not 0 < self.baseline_beta <= 1:
            raise ConfigError(f"dus-rl: 'baseline_beta' must be in (0, 1], got "
                              f"{self.baseline_beta}")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"dus-rl: 'hidden' needs sizes >= 1 (e.g. 32 or 64/64), got "
                              f"{self.hidden}")

    # ------------------------------------------------------------------ set-up
    def bind(self, ctx: SamplerContext) -> None:
        m = len(ctx.modalities)
        self.actions = QuotaActionMap(m, ctx.batch_size, self.mode, self.grid)
        self.n_min_cfg, self.n_max_cfg = self.actions.n_min, self.actions.n_max
        super().bind(ctx)
        num_classes = ctx.num_classes
        if num_classes is None and self.policy_file is not None:
            num_classes = self.policy_file.spec.get("num_classes")
        if num_classes is None:
            raise ConfigError("dus-rl: the sampler context does not say the number of classes")
        self.num_classes = int(num_classes)
        self.total = ctx.epochs * math.ceil(ctx.n_train / ctx.batch_size)
        # categorical heads: (number of heads, choices per head); a Box has m Gaussians
        levels = len(self.actions.grid)
        self.heads = {"discrete": (m, levels), "flat": (1, levels**m)}.get(self.mode, (m, 0))
        self.generator = torch.Generator().manual_seed(int(ctx.rng.integers(2**62)))
        self.obs_low, self.obs_high = quota_observation_bounds(m)
        if self.policy_file is not None:
            self.net = self._init_from_file(m)
        else:
            self.net = self._fresh_network(m)
        self.squash = bool(self.policy_file is not None
                           and self.policy_file.spec["action_space"].get("squash"))
        self.fixed_log_std = torch.full((m,), self.log_std0)
        try:  # the fused kernel: fewer tiny ops (run single-threaded, see `_one_thread`)
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, fused=True)
        except (RuntimeError, TypeError):  # a torch without fused CPU Adam
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.steps = 0
        self.updates = 0
        self.baseline: float | None = None
        self.last_reward = math.nan
        self.val_acc = 1.0 / self.num_classes  # chance, until the first epoch's validation
        self.pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor, Snapshot] | None = None
        self.pending_record: dict | None = None
        self._row: dict[str, float] = {}

    def _out_dim(self, m: int) -> int:
        return 2 * m if self.mode == "continuous" else self.heads[0] * self.heads[1]

    def _fresh_network(self, m: int) -> ExportedPolicy:
        sizes = [5 * m + 2, *self.hidden]
        layers: list[dict] = []
        for a, b in itertools.pairwise(sizes):
            layers += [{"kind": "linear", "in": a, "out": b}, {"kind": "tanh"}]
        layers.append({"kind": "linear", "in": sizes[-1], "out": self._out_dim(m)})
        spec = {"format": FORMAT, "algorithm": "dus-rl", "env": "quota",
                "observation_space": {"dim": sizes[0]}, "layers": layers}
        seed = int(torch.randint(2**62, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):  # leave the global stream to the trainer
            torch.manual_seed(seed)
            net = ExportedPolicy(spec)
        last = net.net[-1]
        with torch.no_grad():  # a near-uniform (discrete) or centred (continuous) start
            last.weight.mul_(0.01)
            last.bias.zero_()
            if self.mode == "continuous":  # mean at the uniform quota B, log-std as given
                uniform = self.actions.from_quotas(np.full(m, self.ctx.batch_size))
                last.bias[:m] = torch.as_tensor(uniform)
                last.bias[m:] = self.log_std0
        return net.train()

    def _init_from_file(self, m: int) -> ExportedPolicy:
        net = copy.deepcopy(self.policy_file)  # the loaded file's weights stay as they are
        spec, where = net.spec, f"dus-rl init={self.init}"
        if net.obs_dim != 5 * m + 2:
            raise UserError(f"{where}: its observation has {net.obs_dim} values; a quota policy "
                            f"for {m} modalities needs {5 * m + 2} (trained on another number "
                            f"of modalities?)")
        space, levels = spec["action_space"], len(self.actions.grid)
        if space["type"] == "MultiDiscrete" and list(space["nvec"]) != [levels] * m:
            raise UserError(f"{where}: its action space is MultiDiscrete{list(space['nvec'])}; "
                            f"this run's grid {self.actions.grid.tolist()} needs {[levels] * m}")
        if space["type"] == "Discrete" and int(space["n"]) != levels**m:
            raise UserError(f"{where}: its action space is Discrete({space['n']}); this run's "
                            f"grid of {levels} sizes for {m} modalities needs {levels**m}")
        if space["type"] == "Box" and len(space["low"]) != m:
            raise UserError(f"{where}: its action space is a Box of {len(space['low'])} values; "
                            f"this run has {m} modalities")
        out = [layer for layer in spec["layers"] if layer.get("kind") == "linear"][-1]["out"]
        if int(out) != self._out_dim(m):
            raise UserError(f"{where}: its network outputs {out} values; the action space "
                            f"needs {self._out_dim(m)} (a Box needs mean and log-std)")
        self.obs_low = np.asarray(spec["observation_space"]["low"], dtype=np.float32)
        self.obs_high = np.asarray(spec["observation_space"]["high"], dtype=np.float32)
        return net.train()

    # ------------------------------------------------------------------ policy
    def _distribution(self, obs: np.ndarray):
        x = torch.as_tensor(np.clip(obs, self.obs_low, self.obs_high)).reshape(1, -1)
        out = self.net(x)[0]
        if self.mode != "continuous":
            logits = out.reshape(self.heads)  # (log_softmax enters a parallel region: slow)
            return logits - logits.logsumexp(-1, keepdim=True)
        m = len(self.ctx.modalities)
        log_std = out[m:].clamp(*LOG_STD_RANGE) if self.learn_std else self.fixed_log_std
        return out[:m], log_std

    def _terms(self, dist, sample: torch.Tensor):
        """log pi(sample), the entropy, and the edge penalty, with their graph."""
        if self.mode != "continuous":
            logp = dist.gather(1, sample).sum()
            return logp, -(dist.exp() * dist).sum(), torch.zeros(())
        mean, log_std = dist
        std = log_std.exp()
        logp = (-((sample - mean) ** 2) / (2 * std**2) - log_std - LOG_SQRT_2PI).sum()
        edge = torch.zeros(())
        if not self.squash:  # a mean past the clip gets no gradient signal: pull it back in
            edge = (mean.abs() - 1.0).clamp(min=0.0).pow(2).sum()
        return logp, (log_std + HALF_LOG_2PI_E).sum(), edge

    def _decide(self, status) -> None:
        """Sample the next action (keeping its graph for the REINFORCE step) and apply it."""
        progress = min(1.0, self.steps / self.total)
        obs = quota_observation(status, progress, self.quotas, self.actions.n_min,
                                self.actions.n_max, self.num_classes)
        with torch.enable_grad():
            dist = self._distribution(obs)
            if self.mode != "continuous":  # one categorical draw per head
                sample = torch.multinomial(dist.detach().exp(), 1, generator=self.generator)
                action = sample[:, 0].numpy()
                action = action[0] if self.mode == "flat" else action
            else:  # u ~ N(mean, std); the action is u clipped (or tanh(u) for SAC policies)
                mean, log_std = (t.detach() for t in dist)
                eps = torch.randn(mean.shape, generator=self.generator)
                sample = mean + log_std.exp() * eps
                a = torch.tanh(sample) if self.squash else sample.clamp(-1.0, 1.0)
                action = a.numpy().astype(np.float32)
            logp, ent, edge = self._terms(dist, sample)
        before = self._snapshot(status)
        self.set_quotas(self.actions.to_quotas(action))
        self.pending = (logp, ent, edge, before)
        # the same decision as plain data, so a checkpoint can carry it (`load_state_dict`)
        self.pending_record = {"obs": obs, "sample": sample.numpy().copy(),
                               "before": [before.discrepancy, before.weak, before.val_acc]}
        self._log_policy(dist, float(ent.detach()))

    def _snapshot(self, status) -> Snapshot:
        return Snapshot(status.discrepancy, float(status.s_hat.min()), self.val_acc)

    def decision_reward(self, before: Snapshot, after: Snapshot) -> float:
        """The reward of the pending decision (whose quotas are `self.quotas`): the env's."""
        return reward(before, after, self.reward_cfg)

    def _learn(self, status) -> None:
        """Score the pending decision and take one REINFORCE step on it."""
        logp, ent, edge, before = self.pending
        self.pending, self.pending_record = None, None
        r = self.decision_reward(before, self._snapshot(status))
        if self.baseline is None:
            self.baseline = r
        advantage = r - self.baseline
        loss = -advantage * logp - self.entropy * ent + EDGE_WEIGHT * edge
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.baseline += self.baseline_beta * (r - self.baseline)
        self.last_reward = r
        self.updates += 1
        self._row.update({"rl_reward": r, "rl_baseline": self.baseline,
                          "rl_updates": float(self.updates)})

    def _log_policy(self, dist, ent: float) -> None:
        mods = self.ctx.modalities
        row: dict[str, float] = {}
        if self.mode != "continuous":
            p = dist.detach().exp().numpy().astype(np.float64)
            if self.mode == "flat":  # the joint's marginals, one row per modality
                joint = p.reshape((len(self.actions.grid),) * len(mods))
                p = np.stack([joint.sum(axis=tuple(a for a in range(len(mods)) if a != j))
                              for j in range(len(mods))])
            grid = self.actions.grid
            for j, m in enumerate(mods):
                for n, pj in zip(grid, p[j]):
                    row[f"rl_p_{m}_{n}"] = float(pj)
                row[f"rl_mean_{m}"] = float(p[j] @ grid)
        else:
            mean, log_std = (t.detach() for t in dist)
            a = torch.tanh(mean) if self.squash else mean.clamp(-1.0, 1.0)
            q = self.actions.to_quotas(a.numpy().astype(np.float32))
            for j, m in enumerate(mods):
                row[f"rl_mean_{m}"] = float(q[j])
                row[f"rl_std_{m}"] = float(log_std[j].exp())
        row.update({"rl_reward": self.last_reward,
                    "rl_baseline": math.nan if self.baseline is None else self.baseline,
                    "rl_entropy": ent, "rl_updates": float(self.updates)})
        self._row = row

    # ----------------------------------------------------------- sampler hooks
    def start_epoch(self, epoch: int, scorer: Scorer) -> None:
        super().start_epoch(epoch, scorer)
        if self.steps == 0 and self.pending is None:  # the first decision, as at env reset
            from mmbalance.balance import LearningStatus

            with _one_thread():
                self._decide(LearningStatus(self.ctx.modalities))

    def update(self, status) -> None:
        self.steps += 1
        if self.steps % self.k == 0 or self.steps >= self.total:
            with _one_thread():
                if self.pending is not None:
                    self._learn(status)
                if self.steps < self.total:
                    self._decide(status)

    def on_epoch_end(self, metrics: dict[str, float]) -> None:
        self.val_acc = float(metrics["val_acc"])

    def state_dict(self) -> dict:
        """The plain attributes (the pending decision as plain data among them), plus the
        network, its optimizer and the policy's random stream."""
        state = super().state_dict()
        state["policy"] = {
            "net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
        }
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore, then rebuild the pending decision's graph from its plain record."""
        super().load_state_dict(state)
        policy = state["policy"]
        self.net.load_state_dict(policy["net"])
        self.optimizer.load_state_dict(policy["optimizer"])
        self.generator.set_state(policy["generator"])
        self.pending = None
        rec = self.pending_record
        if rec is not None:
            with _one_thread(), torch.enable_grad():
                dist = self._distribution(rec["obs"])
                logp, ent, edge = self._terms(dist, torch.as_tensor(rec["sample"]))
            self.pending = (logp, ent, edge, Snapshot(*rec["before"]))

    def step_metrics(self) -> dict[str, float]:
        return self._row

    def log_metrics(self) -> dict[str, float]:
        out = super().log_metrics()
        out.update({k: v for k, v in self._row.items() if k.startswith("rl_mean_")})
        out["rl_baseline"] = math.nan if self.baseline is None else self.baseline
        return out

    def config(self) -> dict:
        return {"k": self.k, "lr": self.lr, "entropy": self.entropy,
                "baseline_beta": self.baseline_beta, "hidden": self.hidden, "mode": self.mode,
                "grid": list(self.grid), "log_std": self.log_std0, "learn_std": self.learn_std,
                "init": self.init, "reward": self.reward_cfg.to_dict(), **super().config()}


OPTIONS = ("k", "lr", "entropy", "baseline_beta", "hidden", "mode", "grid", "w_discrepancy",
           "w_weak", "w_val", "scale", "log_std", "learn_std")


def make_dus_rl_sampler(rest: str) -> DUSRLSampler:
    """`dus-rl[:key=value,...]`; `init=PATH` keeps its slashes and commas: it runs to the end
    or to the next `,<option>=` (so sweeps may list it anywhere)."""
    head, sep, tail = rest.partition("init=")
    if sep and head and not head.endswith(","):
        raise ConfigError(f"sampler 'dus-rl': cannot read {rest!r}; write init=PATH as its own "
                          f"option")
    later = re.search(rf",\s*(?:{'|'.join(OPTIONS)})\s*=", tail)
    path, after = (tail[: later.start()], tail[later.start() + 1 :]) if later else (tail, "")
    _, options = parse_spec("dus-rl:" + ",".join(p for p in (head.rstrip(","), after) if p),
                            "sampler")
    options = typed_fields("sampler 'dus-rl'", options, DUSRLSampler.__init__, noun="option")
    if sep:
        if not path.strip():
            raise ConfigError("sampler 'dus-rl': init= needs the folder of an exported policy")
        options["init"] = str(Path(path.strip()))
    try:
        return DUSRLSampler(**options)
    except UserError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. a list or a word where a number was expected
        raise ConfigError(f"sampler 'dus-rl': {exc}") from None
