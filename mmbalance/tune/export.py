"""Export an RLlib policy as a plain torch module plus JSON (see `policies/learned.py`).

The policy path of RLlib's default RLModules is a chain of Linear layers and activations
(PPO/APPO/IMPALA: shared encoder + pi head; SAC: pi encoder + pi head; DQN without dueling:
encoder + Q head). The exporter records the leaf modules that `forward_inference` runs, in
order, rebuilds that chain, and checks that the chain reproduces the module's own output on
random observations; anything it cannot reproduce is refused rather than exported wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from mmbalance.errors import ConfigError
from mmbalance.policies.policy_file import ACTIVATIONS, FORMAT, ExportedPolicy

_ACT_NAMES = {cls: name for name, cls in ACTIVATIONS.items()}


def _space_json(space: gym.Space, squash: bool) -> dict:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": [int(n) for n in space.nvec]}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(),
                "squash": squash}
    raise ConfigError(f"cannot export a policy for action space {space}")


def _squashes(module: nn.Module) -> bool:
    """Whether the module's actions are its distribution's outputs squashed by tanh into the
    space's bounds (a squashed Gaussian, as SAC's), so the replay must squash its mean too."""
    from ray.rllib.core.distribution.torch.torch_distribution import TorchSquashedGaussian

    dist = module.get_inference_action_dist_cls()
    return isinstance(dist, type) and issubclass(dist, TorchSquashedGaussian)


def _trace_chain(module: nn.Module, obs: torch.Tensor) -> tuple[list[nn.Module], torch.Tensor]:
    calls: list[nn.Module] = []
    hooks = [
        leaf.register_forward_hook(lambda mod, _inp, _out: calls.append(mod))
        for leaf in module.modules()
        if not list(leaf.children())
    ]
    try:
        with torch.no_grad():
            out = module.forward_inference({"obs": obs})
            if "actions" in out and hasattr(module, "compute_q_values"):  # DQN acts greedily
                calls.clear()
                out = module.compute_q_values({"obs": obs})
    finally:
        for h in hooks:
            h.remove()
    for key in ("action_dist_inputs", "qf_preds"):
        if key in out:
            return calls, out[key]
    raise ConfigError(f"cannot export: forward_inference returned {sorted(out)}")


def export_policy(
    module: nn.Module, env: gym.Env, out: Path, meta: dict, algorithm: str, seed: int = 0
) -> Path:
    """Write `out/policy.json` and `out/policy.pt`; return `out`."""
    obs_space = env.observation_space
    rng = np.random.default_rng(seed)
    obs = torch.as_tensor(
        rng.uniform(obs_space.low, obs_space.high, size=(16, obs_space.shape[0])),
        dtype=torch.float32,
    )
    calls, reference = _trace_chain(module, obs)
    layers, tensors = [], {}
    for leaf in calls:
        if isinstance(leaf, nn.Linear):
            i = len(layers)
            layers.append({"kind": "linear", "in": leaf.in_features, "out": leaf.out_features})
            tensors[f"net.{i}.weight"] = leaf.weight.detach().cpu().clone()
            tensors[f"net.{i}.bias"] = leaf.bias.detach().cpu().clone()
        elif type(leaf) in _ACT_NAMES:
            layers.append({"kind": _ACT_NAMES[type(leaf)]})
        else:
            raise ConfigError(f"cannot export: the policy uses a {type(leaf).__name__} layer")
    spec = {
        "format": FORMAT,
        "algorithm": algorithm,
        "observation_space": {"dim": int(obs_space.shape[0]), "low": obs_space.low.tolist(),
                              "high": obs_space.high.tolist()},
        "action_space": _space_json(env.action_space, squash=_squashes(module)),
        "layers": layers,
        **meta,
    }
    policy = ExportedPolicy(spec)
    policy.load_state_dict(tensors)
    with torch.no_grad():
        mine = policy(obs)
    if mine.shape != reference.shape or not torch.allclose(mine, reference, atol=1e-5):
        raise ConfigError(
            "cannot export: the policy network is not a plain chain of layers (e.g. DQN with "
            "dueling heads); use dueling: false"
        )
    out.mkdir(parents=True, exist_ok=True)
    torch.save(tensors, out / "policy.pt")
    (out / "policy.json").write_text(json.dumps(spec, indent=2) + "\n")
    return out
