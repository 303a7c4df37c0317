"""Tune trainables that live in the package (Ray workers import them by name).

`plain_trial` trains the plain trainer with a sampler, one Tune iteration per epoch, reporting
validation metrics and the learning status and checkpointing the trainer's full state every
epoch, so ASHA can stop it, PBT can clone it and a resumed sweep continues it exactly. Each
checkpoint is signed (`mmbalance/manifest.py`) and verified before a trial restores from it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ray import tune

from mmbalance.data.dataset import MultimodalDataset
from mmbalance.manifest import sign_folder, verify_folder


def build_trainer(config: dict, dataset: MultimodalDataset | None = None):
    from mmbalance.data.registry import load_dataset
    from mmbalance.policies.registry import build_sampler
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    data = dataset if dataset is not None else load_dataset(config.get("data", "synthetic"))
    train = TrainConfig.from_dict({**config.get("train", {}),
                                   "method": config.get("method", "joint"),
                                   "seed": config.get("seed", 0)})
    sampler = build_sampler(config.get("sampler", "uniform"), config.get("sampler_options", {}))
    return Trainer(data, train, sampler)


def plain_trial(config: dict, dataset: MultimodalDataset | None = None,
                trust_unsigned: bool = False) -> None:
    trainer = build_trainer(config, dataset)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            verify_folder(d, trust_unsigned)
            trainer.restore(Path(d) / "trainer.pt")
    fault = config.get("fault") or {}
    import ray

    node_id = ray.get_runtime_context().get_node_id()  # where the trial ran (cluster tests)
    while not trainer.done:
        while trainer.step(stop_at_epoch_end=True) is not None:
            pass
        _maybe_fail(fault, trainer.epoch)
        last = trainer.history.epochs[-1]
        metrics = {k: v for k, v in last.items() if isinstance(v, (int, float))}
        metrics["epoch"] = trainer.epoch
        metrics["node_id"] = node_id
        if trainer.done:
            final = trainer.final_metrics()
            metrics.update({f"final_val_{k}": v for k, v in final["val"].items()})
            metrics.update({f"final_test_{k}": v for k, v in final["test"].items()})
        with tempfile.TemporaryDirectory() as d:
            trainer.save(Path(d) / "trainer.pt")
            sign_folder(d)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _maybe_fail(fault: dict, epoch: int) -> None:
    """Fault drill: crash once after epoch `fault.epoch` (a marker file remembers it)."""
    if not fault or epoch != int(fault.get("epoch", -1)):
        return
    marker = Path(fault["marker"])
    if not marker.exists():
        marker.write_text("crashed once\n")
        raise RuntimeError(f"injected fault after epoch {epoch} (fault drill)")
