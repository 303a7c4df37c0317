"""The DUS-RL sampler: per-modality quotas decided by the online policy every `k` steps."""

from __future__ import annotations

import math

import torch

from mmbalance.errors import ConfigError
from mmbalance.policies.decision import DecidingQuotaSampler
from mmbalance.policies.dus_rl.network import QuotaPolicyNetwork, one_thread
from mmbalance.policies.dus_rl.options import DUSRLOptions, dus_rl_options
from mmbalance.policies.dus_rl.reinforce import Reinforce
from mmbalance.policies.policy_file import check_policy_quota_mode
from mmbalance.policies.quota_actions import QuotaActionMap
from mmbalance.policies.signals import Snapshot, reward
from mmbalance.trainers.sampler import SamplerContext


class DUSRLSampler(DecidingQuotaSampler):
    """DUS quotas from a policy trained online by REINFORCE (see the package docstring).
    Keyword arguments: the options of `dus_rl_options`."""

    name = "dus-rl"
    logs_steps = True  # the policy's probabilities, reward and baseline, every step

    def __init__(self, **options) -> None:
        self.options: DUSRLOptions = dus_rl_options(**options)
        super().__init__()

    # the options a caller reads, under their selector names
    k = property(lambda self: self.options.k)
    mode = property(lambda self: self.options.mode)
    lr = property(lambda self: self.options.lr)
    init = property(lambda self: self.options.init)
    policy_file = property(lambda self: self.options.policy_file)
    reward_cfg = property(lambda self: self.options.reward)
    net = property(lambda self: self.policy.net)
    squash = property(lambda self: self.policy.squash)

    def bind(self, ctx: SamplerContext) -> None:
        m = len(ctx.modalities)
        actions = QuotaActionMap(m, ctx.batch_size, self.options.mode, self.options.grid,
                                 self.options.budget)
        num_classes = ctx.num_classes
        if num_classes is None and self.policy_file is not None:
            num_classes = self.policy_file.spec.get("num_classes")
        if num_classes is None:
            raise ConfigError("dus-rl: the sampler context does not say the number of classes")
        self.bind_decisions(ctx, actions, self.options.k, int(num_classes))
        if self.policy_file is not None:
            check_policy_quota_mode(self.policy_file.spec, self.plan.mode, self.init)
        self.num_classes = int(num_classes)
        generator = torch.Generator().manual_seed(int(ctx.rng.integers(2**62)))
        self.policy = QuotaPolicyNetwork(self.options, self.decisions.observation,
                                         actions, ctx.batch_size, generator)
        self.learner = Reinforce(self.policy, self.options, generator)
        self.val_acc = 1.0 / self.num_classes  # chance, until the first epoch's validation
        self._row: dict[str, float] = {}

    # ------------------------------------------------------------------ decisions
    def _snapshot(self, status) -> Snapshot:
        return Snapshot(status.discrepancy, float(status.s_hat.min()), self.val_acc)

    def decision_reward(self, before: Snapshot, after: Snapshot) -> float:
        """The reward of the pending decision (whose quotas are `self.quotas`): the env's."""
        return reward(before, after, self.options.reward)

    def act(self, status) -> None:
        """Sample the next action (keeping its graph for the REINFORCE step) and apply it."""
        learner = self.learner
        with one_thread():
            action, dist, entropy = learner.decide(self.observe_now(status),
                                                   self._snapshot(status))
            self.set_quotas(self.actions.to_quotas(action))
            self._row = {**self.policy.describe(dist, self.ctx.modalities),
                         "rl_reward": learner.last_reward,
                         "rl_baseline": math.nan if learner.baseline is None
                         else learner.baseline,
                         "rl_entropy": entropy, "rl_updates": float(learner.updates)}

    def conclude(self, status) -> None:
        """Score the pending decision and take one REINFORCE step on it."""
        if self.learner.pending is None:
            return
        r = self.decision_reward(self.learner.before, self._snapshot(status))
        with one_thread():
            self.learner.learn(r)
        self._row.update({"rl_reward": r, "rl_baseline": self.learner.baseline,
                          "rl_updates": float(self.learner.updates)})

    def started(self) -> bool:
        return self.learner.pending is not None

    # ----------------------------------------------------------- sampler hooks
    def start_epoch(self, epoch: int, scorer, last_epoch: dict | None = None) -> None:
        if last_epoch is not None:  # the reward's validation term reads the latest epoch's
            self.val_acc = float(last_epoch["val_acc"])
        super().start_epoch(epoch, scorer, last_epoch)

    def state_dict(self) -> dict:
        """The plain attributes, plus the learner: the network, its Adam state, the
        policy's random stream and the pending decision."""
        return {**super().state_dict(), "learner": self.learner.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        with one_thread():
            self.learner.load_state_dict(state["learner"])

    def log_metrics(self, scope: str = "epoch") -> dict[str, float]:
        if scope == "step":
            return self._row
        out = super().log_metrics()
        out.update({k: v for k, v in self._row.items() if k.startswith("rl_mean_")})
        out["rl_baseline"] = math.nan if self.learner.baseline is None else self.learner.baseline
        return out

    def config(self) -> dict:
        return {**self.options.config(), **super().config()}
