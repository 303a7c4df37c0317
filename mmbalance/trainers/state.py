"""A trainer's full state as plain tensors and Python values, for exact resumption.

Saved between epochs or within one: model, optimizer, lr schedule, method state (MLA's
projector), the sampler's own `state_dict` (its epoch plan and position, its random stream,
what it has observed so far), learning status, the run's torch generator and torch's global
one, counters, histories and the best model so far.
Files are written with `torch.save` and read with `torch.load(..., weights_only=True)`:
numpy arrays travel as tensors, tagged so they come back as arrays.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from mmbalance.errors import UserError

_ND = "__ndarray__"


def to_saveable(value):
    if isinstance(value, np.ndarray):
        return {_ND: torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_saveable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_saveable(v) for v in value)
    return value


def from_saveable(value):
    if isinstance(value, dict):
        if set(value) == {_ND}:
            return value[_ND].numpy().copy()
        return {k: from_saveable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_saveable(v) for v in value)
    return value


def _plain(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (np.ndarray, np.generic, int, float, str, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in value.items())
    return False


def object_state(obj) -> dict:
    """An object's plain-data attributes (arrays, tensors, numbers, strings, containers of
    them), saveable; anything else (a context, a generator, a network) is the object's own
    business to save."""
    return {k: to_saveable(v) for k, v in vars(obj).items() if _plain(v)}


def save_file(state: dict, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half file under the real name


def load_file(path: str | Path) -> dict:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise UserError(f"{path}: not a checkpoint that loads safely ({exc})") from None
