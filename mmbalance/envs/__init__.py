"""Gymnasium environments wrapping a multimodal training run.

Importing this package registers `mmbalance/Quota-v0` (DUS quotas) and
`mmbalance/Sequence-v0` (BSS sequences) with Gymnasium:
`gymnasium.make("mmbalance/Quota-v0", config={...})`.
"""

import gymnasium as gym

from mmbalance.envs.quota_env import QuotaEnv, QuotaEnvConfig
from mmbalance.envs.sequence_env import SequenceEnv, SequenceEnvConfig

__all__ = ["ENVS", "QuotaEnv", "QuotaEnvConfig", "SequenceEnv", "SequenceEnvConfig"]

ENVS = {"quota": QuotaEnv, "sequence": SequenceEnv}

for _name, _entry in (("mmbalance/Quota-v0", "mmbalance.envs.quota_env:QuotaEnv"),
                      ("mmbalance/Sequence-v0", "mmbalance.envs.sequence_env:SequenceEnv")):
    if _name not in gym.registry:
        gym.register(_name, entry_point=_entry, disable_env_checker=True)
