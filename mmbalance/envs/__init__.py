"""Gymnasium environments wrapping a multimodal training run.

Importing this package registers `mmbalance/Quota-v0` (DUS quotas) and
`mmbalance/Sequence-v0` (BSS sequences) with Gymnasium:
`gymnasium.make("mmbalance/Quota-v0", config={...})`, and the vectorised quota env (K runs
trained in one batched update) as `gymnasium.make_vec("mmbalance/VectorQuota-v0", num_envs=K,
config={...})`.
"""

import gymnasium as gym

from mmbalance.envs.quota_env import QuotaEnv, QuotaEnvConfig
from mmbalance.envs.sequence_env import SequenceEnv, SequenceEnvConfig
from mmbalance.envs.vector_quota_env import VectorQuotaEnv, VectorQuotaEnvConfig

__all__ = ["ENVS", "QuotaEnv", "QuotaEnvConfig", "SequenceEnv", "SequenceEnvConfig",
           "VectorQuotaEnv", "VectorQuotaEnvConfig"]

ENVS = {"quota": QuotaEnv, "sequence": SequenceEnv}

for _name, _entry in (("mmbalance/Quota-v0", "mmbalance.envs.quota_env:QuotaEnv"),
                      ("mmbalance/Sequence-v0", "mmbalance.envs.sequence_env:SequenceEnv")):
    if _name not in gym.registry:
        gym.register(_name, entry_point=_entry, disable_env_checker=True)


if "mmbalance/VectorQuota-v0" not in gym.registry:  # a vector env only: make_vec, not make
    gym.register("mmbalance/VectorQuota-v0",
                 vector_entry_point="mmbalance.envs.vector_quota_env:VectorQuotaEnv")
