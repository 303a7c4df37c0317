"""DUS-RL's learning: one decision pending at a time, scored and learned from by REINFORCE.

A decision samples an action from the policy and keeps its graph; when it is scored with
reward r, one step `loss = -(r - b) log pi(a|s) - entropy * H(pi(.|s)) + 10 * edge` (Adam,
`lr`) and the baseline moves `b <- b + baseline_beta (r - b)` (b starts at the first
reward). Rewards are immediate (a contextual bandit: no discounting across decisions). The
pending decision is also kept as plain data (observation, sample, the snapshot before), so
a checkpoint carries it and a restored learner rebuilds its graph.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from mmbalance.policies.dus_rl.network import QuotaPolicyNetwork
from mmbalance.policies.dus_rl.options import DUSRLOptions
from mmbalance.policies.signals import Snapshot
from mmbalance.trainers.state import from_saveable, object_state

EDGE_WEIGHT = 10.0  # continuous, clipped: penalty on a Gaussian mean outside [-1, 1]


class Reinforce:
    def __init__(self, policy: QuotaPolicyNetwork, opts: DUSRLOptions,
                 generator: torch.Generator) -> None:
        self.policy, self.opts, self.generator = policy, opts, generator
        params = policy.net.parameters()
        try:  # the fused kernel: fewer tiny ops (run single-threaded, see `one_thread`)
            self.optimizer = torch.optim.Adam(params, lr=opts.lr, fused=True)
        except (RuntimeError, TypeError):  # a torch without fused CPU Adam
            self.optimizer = torch.optim.Adam(policy.net.parameters(), lr=opts.lr)
        self.updates = 0
        self.baseline: float | None = None
        self.last_reward = math.nan
        self.pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor, Snapshot] | None = None
        self.pending_record: dict | None = None

    def decide(self, obs: np.ndarray, before: Snapshot) -> tuple[np.ndarray, object, float]:
        """Sample an action for `obs` and keep the decision pending; returns (the action, the
        distribution it came from, its entropy)."""
        with torch.enable_grad():
            dist = self.policy.distribution(obs)
            sample, action = self.policy.sample(dist, self.generator)
            logp, ent, edge = self.policy.terms(dist, sample)
        self.pending = (logp, ent, edge, before)
        self.pending_record = {"obs": obs, "sample": sample.numpy().copy(),
                               "before": [before.discrepancy, before.weak, before.val_acc]}
        return action, dist, float(ent.detach())

    @property
    def before(self) -> Snapshot:
        """The run's state when the pending decision was taken."""
        return self.pending[3]

    def learn(self, r: float) -> None:
        """Score the pending decision with reward r and take one REINFORCE step on it."""
        logp, ent, edge, _ = self.pending
        self.pending, self.pending_record = None, None
        if self.baseline is None:
            self.baseline = r
        advantage = r - self.baseline
        loss = -advantage * logp - self.opts.entropy * ent + EDGE_WEIGHT * edge
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.baseline += self.opts.baseline_beta * (r - self.baseline)
        self.last_reward = r
        self.updates += 1

    def state_dict(self) -> dict:
        return {
            "attributes": object_state(self),
            "net": {k: v.detach().clone() for k, v in self.policy.net.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore, then rebuild the pending decision's graph from its plain record."""
        for key, value in state["attributes"].items():
            setattr(self, key, from_saveable(value))
        self.policy.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.pending = None
        rec = self.pending_record
        if rec is not None:
            with torch.enable_grad():
                dist = self.policy.distribution(rec["obs"])
                logp, ent, edge = self.policy.terms(dist, torch.as_tensor(rec["sample"]))
            self.pending = (logp, ent, edge, Snapshot(*rec["before"]))
