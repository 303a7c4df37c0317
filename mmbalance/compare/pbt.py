"""The `pbt:share` row: Population Based Training over the quota share, Tune's own
adaptive-schedule search, as a baseline a learned sampling policy must beat.

Per method and seed, a population of runs starts from shares drawn from the constant grid
(`select.share_candidates`); every `interval` epochs the weaker half clones a stronger
member's checkpoint (weights, optimizer, sampler and quota credits) and moves to another
share, so each member ends with a share *schedule* PBT found. The row's run is the member
with the best final validation accuracy (the same choice a row chosen on validation
makes); its record's step table holds the shares it trained with per step, so
`quota_shares.png` shows the schedule. Every member trains under the default quota meaning
at uniform's compute; the search cost (the population's epochs) is recorded in the row
(`search_runs`, `search_steps`).

The trials are `tune.trainables.plain_trial`, the trainable the sweeps' PBT uses.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

from mmbalance.compare.grid import RunSpec, finished_run, resolve_method
from mmbalance.compare.select import share_candidates
from mmbalance.data.dataset import MultimodalDataset
from mmbalance.errors import ConfigError, UserError
from mmbalance.runs import RunRecord

PBT_SHARE = "pbt:share"
POPULATION = 4


def epoch_counter():
    """A Tune callback whose `epochs` counts every result any member reports: one per
    epoch it trained (a clone continues from its donor's epoch, so it can retrain or skip
    epochs), the search's real cost. Built here: Ray is imported only when PBT runs."""
    from ray.tune import Callback

    class EpochCounter(Callback):
        def __init__(self) -> None:
            self.epochs = 0

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.epochs += 1

    return EpochCounter()


class _NoLogRestore(logging.Filter):
    """Drops Tune's warning that a member cloned by a reused actor has no log files of its
    own to restore (one line per clone; the logs are not used, the checkpoint is)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Remote file not found")


def pbt_interval(epochs: int) -> int:
    """Epochs between perturbations: about four decisions per run, at least one epoch."""
    if epochs < 2:
        raise ConfigError(f"--pbt: a population changes its shares between epochs, so the run "
                          f"needs at least 2 epochs, got {epochs}")
    return max(1, epochs // 4)


def pbt_spec(method: str, seed: int, train: dict) -> RunSpec:
    return RunSpec(method, PBT_SHARE, seed, dict(train), row=(method, PBT_SHARE, ""))


def run_pbt(dataset: MultimodalDataset, spec: RunSpec, storage: Path,
            population: int = POPULATION, progress: bool = True) -> tuple[dict, RunRecord]:
    """One PBT search for `spec` (its method, seed and training options); returns the best
    member's row (with the search's cost) and record. Needs a running Ray session."""
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    from mmbalance.trainers.config import TrainConfig
    from mmbalance.tune.trainables import build_trainer, plain_trial

    method, alone = resolve_method(spec.method, dataset.modalities)
    if alone:
        raise ConfigError(f"--pbt: {spec.method} trains one modality alone; it has no share")
    train = dict(spec.train)
    config = TrainConfig.from_dict({**train, "method": method, "seed": spec.seed})
    shares = [c.split("=", 1)[1] for c in share_candidates(len(dataset.modalities),
                                                           config.batch_size)]
    interval = pbt_interval(config.epochs)
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=interval,
        quantile_fraction=0.5, resample_probability=0.25,
        hyperparam_mutations={"sampler_options": {"quotas": shares}})
    param_space = {"method": method, "seed": spec.seed, "train": train, "sampler": "fixed",
                   "sampler_options": {"quotas": tune.choice(shares)}}
    name = f"pbt-{spec.key}"
    counter = epoch_counter()
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(plain_trial, dataset=dataset), {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(scheduler=scheduler, metric="val_acc", mode="max",
                                    num_samples=population, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage.absolute()),
                                  verbose=1 if progress else 0, callbacks=[counter]),
    )
    quiet = _NoLogRestore()
    tune_logger = logging.getLogger("ray.tune.logger.logger")
    tune_logger.addFilter(quiet)
    try:
        results = tuner.fit()
    finally:
        tune_logger.removeFilter(quiet)
    finished = [r for r in results if r.error is None and r.checkpoint is not None
                and math.isfinite(float(r.metrics.get("final_val_acc", math.nan)))]
    if not finished:
        first = next((r.error for r in results if r.error is not None), None)
        raise UserError(f"--pbt: no member of the population for {spec.key} finished"
                        + (f" ({str(first).splitlines()[0]})" if first else ""))
    best = max(finished, key=lambda r: float(r.metrics["final_val_acc"]))
    trainer = build_trainer(best.config, dataset)
    with best.checkpoint.as_directory() as d:
        trainer.restore(Path(d) / "trainer.pt")
    if not trainer.done:
        raise UserError(f"--pbt: the best member of {spec.key} stopped before its last epoch")
    row, record = finished_run(dataset, spec, trainer, trainer.final_metrics())
    steps_per_epoch = trainer.global_step / config.epochs
    row.update({"search_runs": population, "search_steps": counter.epochs * steps_per_epoch,
                "pbt_final_quotas": "/".join(map(str, trainer.sampler.fixed)),
                "pbt_interval": interval})
    shutil.rmtree(storage / name, ignore_errors=True)  # the chosen run's record is kept
    return row, record
