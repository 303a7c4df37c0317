"""DUS-RL's policy network and its action distribution.

The network follows the exported-policy convention (`policies/learned.py`): it outputs
action-distribution inputs (logits; or mean and log-std for a Box). Built fresh (a small MLP:
`hidden`, tanh, near-uniform or centred on the quota B at the start) or copied from an
exported RLlib quota policy (`init=PATH`), whose observation and action spaces must match
this run; a DQN policy's Q-values (Discrete, `flat`) are read as logits.
"""

from __future__ import annotations

import copy
import itertools
import math
from contextlib import contextmanager

import numpy as np
import torch

from mmbalance.errors import UserError
from mmbalance.policies.decision import QuotaObservation
from mmbalance.policies.dus_rl.options import DUSRLOptions
from mmbalance.policies.policy_file import FORMAT, ExportedPolicy
from mmbalance.policies.quota_actions import QuotaActionMap

LOG_STD_RANGE = (-5.0, 2.0)
HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

_OPENMP = "OpenMP" in torch.__config__.parallel_info()


@contextmanager
def one_thread():
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


class QuotaPolicyNetwork:
    """The policy of `m` modalities' quotas: its network (`net`), the observation bounds,
    and the distribution it defines (categorical heads, or Gaussians clipped to [-1, 1] or
    tanh-squashed for SAC policies)."""

    def __init__(self, opts: DUSRLOptions, observation: QuotaObservation,
                 actions: QuotaActionMap, batch_size: int, generator: torch.Generator) -> None:
        m = actions.num_modalities
        self.opts, self.actions, self.m = opts, actions, m
        levels = len(actions.grid)
        # categorical heads: (number of heads, choices per head); a Box has m Gaussians
        self.heads = {"discrete": (m, levels), "flat": (1, levels**m)}.get(opts.mode, (m, 0))
        self.obs_size = observation.size
        self.obs_low, self.obs_high = observation.low, observation.high
        if opts.policy_file is not None:
            self.net = self._from_file()
        else:
            self.net = self._fresh(batch_size, generator)
        self.squash = bool(opts.policy_file is not None
                           and opts.policy_file.spec["action_space"].get("squash"))
        self.fixed_log_std = torch.full((m,), opts.log_std)

    @property
    def continuous(self) -> bool:
        return self.opts.mode == "continuous"

    def _out_dim(self) -> int:
        return 2 * self.m if self.continuous else self.heads[0] * self.heads[1]

    def _fresh(self, batch_size: int, generator: torch.Generator) -> ExportedPolicy:
        m = self.m
        sizes = [self.obs_size, *self.opts.hidden]
        layers: list[dict] = []
        for a, b in itertools.pairwise(sizes):
            layers += [{"kind": "linear", "in": a, "out": b}, {"kind": "tanh"}]
        layers.append({"kind": "linear", "in": sizes[-1], "out": self._out_dim()})
        spec = {"format": FORMAT, "algorithm": "dus-rl", "env": "quota",
                "observation_space": {"dim": sizes[0]}, "layers": layers}
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):  # leave the global stream to the trainer
            torch.manual_seed(seed)
            net = ExportedPolicy(spec)
        last = net.net[-1]
        with torch.no_grad():  # a near-uniform (discrete) or centred (continuous) start
            last.weight.mul_(0.01)
            last.bias.zero_()
            if self.continuous:  # mean at the uniform quota B, log-std as given
                uniform = self.actions.from_quotas(np.full(m, batch_size))
                last.bias[:m] = torch.as_tensor(uniform)
                last.bias[m:] = self.opts.log_std
        return net.train()

    def _from_file(self) -> ExportedPolicy:
        m, opts = self.m, self.opts
        net = copy.deepcopy(opts.policy_file)  # the loaded file's weights stay as they are
        spec, where = net.spec, f"dus-rl init={opts.init}"
        if net.obs_dim != self.obs_size:
            raise UserError(f"{where}: its observation has {net.obs_dim} values; a quota policy "
                            f"for {m} modalities needs {self.obs_size} (trained on another "
                            f"number of modalities?)")
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
        if int(out) != self._out_dim():
            raise UserError(f"{where}: its network outputs {out} values; the action space "
                            f"needs {self._out_dim()} (a Box needs mean and log-std)")
        self.obs_low = np.asarray(spec["observation_space"]["low"], dtype=np.float32)
        self.obs_high = np.asarray(spec["observation_space"]["high"], dtype=np.float32)
        return net.train()

    def distribution(self, obs: np.ndarray):
        """Log-probabilities per head (categorical), or (mean, log-std) of the Gaussians."""
        x = torch.as_tensor(np.clip(obs, self.obs_low, self.obs_high)).reshape(1, -1)
        out = self.net(x)[0]
        if not self.continuous:
            logits = out.reshape(self.heads)  # (log_softmax enters a parallel region: slow)
            return logits - logits.logsumexp(-1, keepdim=True)
        log_std = out[self.m :].clamp(*LOG_STD_RANGE) if self.opts.learn_std \
            else self.fixed_log_std
        return out[: self.m], log_std

    def sample(self, dist, generator: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
        """(the drawn sample, the env action it gives)."""
        if not self.continuous:  # one categorical draw per head
            sample = torch.multinomial(dist.detach().exp(), 1, generator=generator)
            action = sample[:, 0].numpy()
            return sample, action[0] if self.opts.mode == "flat" else action
        # u ~ N(mean, std); the action is u clipped (or tanh(u) for SAC policies)
        mean, log_std = (t.detach() for t in dist)
        eps = torch.randn(mean.shape, generator=generator)
        sample = mean + log_std.exp() * eps
        a = torch.tanh(sample) if self.squash else sample.clamp(-1.0, 1.0)
        return sample, a.numpy().astype(np.float32)

    def terms(self, dist, sample: torch.Tensor):
        """log pi(sample), the entropy, and the edge penalty, with their graph. A clipped
        Gaussian pays `relu(|mean| - 1)^2`: past the clip every sample gives the same quota,
        the advantage vanishes and the policy would stay stuck at the edge."""
        if not self.continuous:
            logp = dist.gather(1, sample).sum()
            return logp, -(dist.exp() * dist).sum(), torch.zeros(())
        mean, log_std = dist
        std = log_std.exp()
        logp = (-((sample - mean) ** 2) / (2 * std**2) - log_std - LOG_SQRT_2PI).sum()
        edge = torch.zeros(())
        if not self.squash:  # a mean past the clip gets no gradient signal: pull it back in
            edge = (mean.abs() - 1.0).clamp(min=0.0).pow(2).sum()
        return logp, (log_std + HALF_LOG_2PI_E).sum(), edge

    def describe(self, dist, modalities: list[str]) -> dict[str, float]:
        """The step table's view of the policy: `rl_p_<m>_<n>` and `rl_mean_<m>` (discrete),
        `rl_mean_<m>` (the quota at the mean action) and `rl_std_<m>` (continuous)."""
        row: dict[str, float] = {}
        if not self.continuous:
            p = dist.detach().exp().numpy().astype(np.float64)
            if self.opts.mode == "flat":  # the joint's marginals, one row per modality
                joint = p.reshape((len(self.actions.grid),) * len(modalities))
                p = np.stack([joint.sum(axis=tuple(a for a in range(len(modalities)) if a != j))
                              for j in range(len(modalities))])
            grid = self.actions.grid
            for j, m in enumerate(modalities):
                for n, pj in zip(grid, p[j]):
                    row[f"rl_p_{m}_{n}"] = float(pj)
                row[f"rl_mean_{m}"] = float(p[j] @ grid)
            return row
        mean, log_std = (t.detach() for t in dist)
        a = torch.tanh(mean) if self.squash else mean.clamp(-1.0, 1.0)
        q = self.actions.to_quotas(a.numpy().astype(np.float32))
        for j, m in enumerate(modalities):
            row[f"rl_mean_{m}"] = float(q[j])
            row[f"rl_std_{m}"] = float(log_std[j].exp())
        return row
