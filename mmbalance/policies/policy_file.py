"""The exported-policy file format: a folder with `policy.json` (format, algorithm, env kind
and config, the observation and action spaces, the layer list of the policy network) and
`policy.pt` (its tensors).

`tune/export.py` writes it; `load_policy` reads it: it checks the JSON against its schema,
builds the network from it and reads the tensors with `torch.load(..., weights_only=True)`,
so a file passed around never executes code; a tampered or mismatched file gives a clear
error. `ExportedPolicy.act` is the greedy action (argmax / mean) in the env's action space.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmbalance.errors import ConfigError, UserError, one_line
from mmbalance.limits import MAX_POLICY_PARAMETERS, check_path
from mmbalance.trainers.quota import check_quota_mode

FORMAT = "mmbalance-policy/1"
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU,
               "sigmoid": nn.Sigmoid, "identity": nn.Identity}


class ExportedPolicy(nn.Module):
    """A feed-forward policy network rebuilt from its JSON description."""

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        for i, layer in enumerate(spec["layers"]):
            kind = layer.get("kind")
            if kind == "linear":
                layers.append(nn.Linear(int(layer["in"]), int(layer["out"])))
            elif kind in ACTIVATIONS:
                layers.append(ACTIVATIONS[kind]())
            else:
                raise UserError(f"policy.json: layer {i} has unknown kind {kind!r}; "
                                f"allowed: ['linear', {', '.join(map(repr, ACTIVATIONS))}]")
        self.net = nn.Sequential(*layers)
        self.obs_dim = int(spec["observation_space"]["dim"])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Greedy action for one observation, in the env's action space."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
        out = self.net(x)[0].numpy()
        space = self.spec["action_space"]
        if space["type"] == "Discrete":
            return np.int64(out[: int(space["n"])].argmax())
        if space["type"] == "MultiDiscrete":
            parts, start = [], 0
            for n in space["nvec"]:
                parts.append(int(out[start : start + n].argmax()))
                start += n
            return np.asarray(parts, dtype=np.int64)
        dim = len(space["low"])
        mean = out[:dim]
        if space.get("squash"):
            mean = np.tanh(mean)
            low, high = np.asarray(space["low"]), np.asarray(space["high"])
            return (low + (mean + 1.0) / 2.0 * (high - low)).astype(np.float32)
        return np.clip(mean, space["low"], space["high"]).astype(np.float32)


# the action space each env and action mode exports (QuotaEnv, SequenceEnv)
SPACES = {"quota": {"discrete": "MultiDiscrete", "continuous": "Box", "flat": "Discrete"},
          "sequence": {"continuous": "Box", "discrete": "MultiDiscrete"}}


def action_mode(spec: dict) -> str:
    """The env's action mode: as its config says, else the one its action space implies."""
    given = spec["env_config"].get("action_mode")
    if given is not None:
        return given
    return {kind: mode for mode, kind in SPACES[spec["env"]].items()}[spec["action_space"]["type"]]

MAX_WIDTH = 1 << 16  # the widest layer, observation or action a policy file may declare


class _Schema:
    """Checks of one policy.json, each failure one line naming the file and the key."""

    def __init__(self, meta: Path, spec: dict):
        self.meta, self.spec = meta, spec

    def fail(self, key: str, why: str):
        raise UserError(f"{self.meta}: '{key}' {why}")

    def get(self, node: dict, key: str, where: str, kind, low=None, high=None):
        import typing

        from mmbalance.spec import describe, typed_value

        name = f"{where}.{key}" if where else key
        if not isinstance(node, dict) or key not in node:
            self.fail(name, "is missing")
        listy = kind is list or typing.get_origin(kind) is list
        try:
            if listy and not isinstance(node[key], list):  # JSON: no 'a/b' text for lists
                raise ConfigError(name)
            value = typed_value(str(self.meta), name, node[key], kind)
        except ConfigError:
            self.fail(name, f"expects {describe(kind)}, got {node[key]!r}")
        for v in value if isinstance(value, list) else [value]:
            if (low is not None and v < low) or (high is not None and v > high):
                self.fail(name, f"must be in [{low}, {high}], got {node[key]!r}")
        return value


def check_policy_spec(meta: Path, spec) -> None:
    """The whole policy.json against its schema, before any network is built or anything
    is written: format, env and its config, both spaces, and a layer chain that fits them."""
    if not isinstance(spec, dict):
        raise UserError(f"{meta}: must be a JSON object")
    s = _Schema(meta, spec)
    if spec.get("format") != FORMAT:
        s.fail("format", f"must be {FORMAT!r}, got {spec.get('format')!r}")
    env = s.get(spec, "env", "", str)
    if env not in SPACES:
        s.fail("env", f"must be one of {sorted(SPACES)}, got {env!r}")
    env_cfg = s.get(spec, "env_config", "", dict)
    mode = env_cfg.get("action_mode")
    if mode is not None and mode not in SPACES[env]:
        s.fail("env_config.action_mode", f"must be one of {sorted(SPACES[env])}, got {mode!r}")
    for key in ("steps_per_action", "epochs_per_action", "buckets"):
        if key in env_cfg:
            s.get(env_cfg, key, "env_config", int, 1, MAX_WIDTH)
    if "levels" in env_cfg:
        s.get(env_cfg, "levels", "env_config", int, 2, MAX_WIDTH)
    if "quota_grid" in env_cfg:
        s.get(env_cfg, "quota_grid", "env_config", list[float], 0, MAX_WIDTH)
    if "min_pacing" in env_cfg:
        s.get(env_cfg, "min_pacing", "env_config", float, 0, 1)
    s.get(spec, "num_classes", "", int, 2, MAX_WIDTH)
    obs = s.get(spec, "observation_space", "", dict)
    dim = s.get(obs, "dim", "observation_space", int, 1, MAX_WIDTH)
    for key in ("low", "high"):
        if len(s.get(obs, key, "observation_space", list[float])) != dim:
            s.fail(f"observation_space.{key}", f"needs {dim} values (dim)")
    act = s.get(spec, "action_space", "", dict)
    kind = s.get(act, "type", "action_space", str)
    kinds = [SPACES[env][mode]] if mode is not None else sorted(set(SPACES[env].values()))
    if kind not in kinds:
        s.fail("action_space.type", f"must be one of {kinds} for a {env} policy"
               + (f" with action_mode {mode!r}" if mode is not None else "") + f", got {kind!r}")
    if kind == "Discrete":
        outputs = s.get(act, "n", "action_space", int, 1, MAX_WIDTH)
    elif kind == "MultiDiscrete":
        nvec = s.get(act, "nvec", "action_space", list[int], 1, MAX_WIDTH)
        if not 1 <= len(nvec) <= MAX_WIDTH:
            s.fail("action_space.nvec", "needs 1 or more entries")
        outputs = sum(nvec)
    else:
        low = s.get(act, "low", "action_space", list[float])
        if not 1 <= len(low) <= MAX_WIDTH or len(s.get(act, "high", "action_space",
                                                      list[float])) != len(low):
            s.fail("action_space.high", "needs as many values as 'low' (at least 1)")
        if "squash" in act:
            s.get(act, "squash", "action_space", bool)
        outputs = len(low)
    layers = s.get(spec, "layers", "", list)
    width, linear, parameters = dim, 0, 0
    for i, layer in enumerate(layers):
        where = f"layers[{i}]"
        layer_kind = s.get(layer, "kind", where, str)
        if layer_kind == "linear":
            n_in = s.get(layer, "in", where, int, 1, MAX_WIDTH)
            if n_in != width:
                s.fail(f"{where}.in", f"is {n_in}, but the layer before gives {width} values")
            width = s.get(layer, "out", where, int, 1, MAX_WIDTH)
            linear += 1
            # counted before any layer exists: 30 layers of 65536 x 65536 would allocate
            # 17 GB each before policy.pt is even read
            parameters += (n_in + 1) * width
            if parameters > MAX_POLICY_PARAMETERS:
                s.fail("layers", f"declare more than {MAX_POLICY_PARAMETERS:,} parameters "
                       f"(at least {parameters:,} by layer {i}); a sampling policy is small")
        elif layer_kind not in ACTIVATIONS:
            s.fail(f"{where}.kind", f"must be 'linear' or one of {sorted(ACTIVATIONS)}, got "
                   f"{layer_kind!r}")
    if not linear:
        s.fail("layers", "needs at least one linear layer")
    if width < outputs:
        s.fail("layers", f"end with {width} outputs; the {kind} action space needs {outputs}")


def load_policy(path: str | Path) -> ExportedPolicy:
    """An exported policy, checked against its schema, tensors read without running code."""
    folder = check_path(path, "policy")
    meta, weights = folder / "policy.json", folder / "policy.pt"
    if not meta.is_file() or not weights.is_file():
        raise UserError(f"{folder}: not an exported policy (needs policy.json and policy.pt)")
    try:
        spec = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{meta}: not valid JSON ({exc})") from None
    check_policy_spec(meta, spec)
    policy = ExportedPolicy(spec)
    try:
        state = torch.load(weights, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:  # torch's several-line advice is not for this case
        raise UserError(f"{weights}: not a plain tensor file (it holds pickled objects); it "
                        "was not loaded") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise UserError(f"{weights}: not a readable tensor file "
                        f"({one_line(exc)[:200]})") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        got = type(state).__name__ if not isinstance(state, dict) else "other values"
        raise UserError(f"{weights}: must hold a mapping of parameter names to tensors (a "
                        f"state dict), got {got}")
    try:
        policy.load_state_dict(state)
    except (RuntimeError, AttributeError) as exc:
        raise UserError(f"{weights}: tensors do not match policy.json ({one_line(exc)})") \
            from None
    return policy.eval()


def policy_quota_mode(spec: dict) -> str:
    """The quota meaning a quota policy was learned with: its env's `train.quota_mode`, an
    older export's env-level `quota_mode` (`steps` is today's `extra-steps`), or `batch` for
    policies exported before quota meanings existed."""
    env_cfg = spec.get("env_config", {})
    mode = (env_cfg.get("train") or {}).get("quota_mode") or env_cfg.get("quota_mode")
    if mode is None:
        return "batch" if "budget" not in env_cfg else "share"
    try:
        return check_quota_mode(str(mode))
    except ConfigError as exc:
        raise UserError(f"policy.json: env_config: {exc}") from None


def check_policy_quota_mode(spec: dict, run_mode: str, path: str | None) -> None:
    """A quota policy replays only under the quota meaning it was learned with: its actions
    mean other amounts of training under another."""
    mode = policy_quota_mode(spec)
    if mode != run_mode:
        raise ConfigError(f"learned policy {path}: it was learned with quota_mode {mode!r}, "
                          f"this run uses {run_mode!r}; run it with --set quota_mode={mode}")
