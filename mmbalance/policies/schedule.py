"""A two-phase quota schedule: fixed shares that switch at an epoch.

`schedule:quotas=16/112,then=96/32,at=5` trains epochs 0..4 with the quotas 16/112 and every
epoch from 5 on with 96/32, for any number of modalities. Under the default quota meaning
(`share`) the quotas are shares of the uniform iteration's fixed budget, so the schedule
moves updates between modalities at the switch and never adds any. It is the simplest
time-varying policy, and so the baseline a learned policy must beat before its decisions
*during* a run can be credited with anything (a learned policy might only have found that
the weak modality should get more updates late); its options are what a Tune sweep (PBT
included: `tune_configs/sweep_share_pbt.yaml`) searches over.
"""

from __future__ import annotations

from mmbalance.errors import ConfigError
from mmbalance.policies.dus import MAX_QUOTA_BATCHES, QuotaSampler
from mmbalance.trainers.sampler import SamplerContext, Scorer


def _check_quotas(key: str, values, example: str) -> list[int]:
    items = values if isinstance(values, (list, tuple)) else [values]
    if values is None or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                             for v in items):
        raise ConfigError(f"schedule: '{key}' needs one integer >= 1 per modality "
                          f"(e.g. {key}={example}), got {values!r}")
    return [int(v) for v in items]


class ScheduleQuotaSampler(QuotaSampler):
    """Fixed quotas `quotas` for epochs before `at`, then `then` to the end of the run."""

    name = "schedule"
    option_attributes = ("first", "second", "at", "n_min_cfg", "n_max_cfg")

    def __init__(self, quotas: list[int] | None = None, then: list[int] | None = None,
                 at: int | None = None, n_min: int | None = None, n_max: int | None = None):
        super().__init__(n_min, n_max)
        self.first = _check_quotas("quotas", quotas, "16/112")
        self.second = _check_quotas("then", then, "96/32")
        if len(self.first) != len(self.second):
            raise ConfigError(f"schedule: 'quotas' and 'then' need the same number of values "
                              f"(one per modality), got {self.first} and {self.second}")
        if at is None or isinstance(at, bool) or not isinstance(at, int) or at < 1:
            raise ConfigError(f"schedule: 'at' needs the epoch of the switch, an integer >= 1 "
                              f"(e.g. at=5), got {at!r}")
        self.at = int(at)

    def bind(self, ctx: SamplerContext) -> None:
        m = len(ctx.modalities)
        if len(self.first) != m:
            raise ConfigError(f"schedule: 'quotas' and 'then' need {m} values, one per "
                              f"modality {ctx.modalities}, got {self.first} and {self.second}")
        both = self.first + self.second
        if max(both) > MAX_QUOTA_BATCHES * ctx.batch_size:
            raise ConfigError(f"schedule: quotas must be at most {MAX_QUOTA_BATCHES} x the "
                              f"batch size ({MAX_QUOTA_BATCHES * ctx.batch_size}), got "
                              f"{max(both)}")
        if self.at >= ctx.epochs:
            raise ConfigError(f"schedule: 'at' = {self.at} but the run has {ctx.epochs} "
                              f"epochs (0..{ctx.epochs - 1}): the second phase would never "
                              f"run; use fixed:quotas=... or an earlier switch")
        # both phases set the clamp unless given: a scheduled quota is never clipped
        self.n_min_cfg = min(both) if self.n_min_cfg is None else self.n_min_cfg
        self.n_max_cfg = max(both) if self.n_max_cfg is None else self.n_max_cfg
        super().bind(ctx)
        self.set_quotas(self.first)

    def phase_quotas(self, epoch: int) -> list[int]:
        return self.first if epoch < self.at else self.second

    def start_epoch(self, epoch: int, scorer: Scorer, last_epoch: dict | None = None) -> None:
        super().start_epoch(epoch, scorer, last_epoch)
        self.set_quotas(self.phase_quotas(epoch))

    def load_state_dict(self, state: dict) -> None:
        """The run's position and streams from the checkpoint, the schedule from this
        sampler's options: a PBT trial that clones another's checkpoint with mutated
        options (`option_attributes`) trains on with its own (the next epoch uses them)."""
        super().load_state_dict(state)
        self.n_min, self.n_max = self.n_min_cfg, self.n_max_cfg  # resolved by bind()

    def config(self) -> dict:
        return {"quotas": list(self.first), "then": list(self.second), "at": self.at,
                **super().config()}
