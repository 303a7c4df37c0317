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
                trust_unsigned: bool = False, run: str | None = None) -> None:
    """`run`: the sweep's id, signed into each checkpoint and required of one restored."""
    trainer = build_trainer(config, dataset)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            verify_folder(d, trust_unsigned, run=None if trust_unsigned else run)
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
        with tempfile.TemporaryDirectory() as d:
            # the training state before the final passes: a run rebuilt from the last
            # checkpoint (a PBT row's chosen member) has the ledger of its training only
            trainer.save(Path(d) / "trainer.pt")
            sign_folder(d, run=run)
            if trainer.done:
                final = trainer.final_metrics()
                metrics.update({f"final_val_{k}": v for k, v in final["val"].items()})
                metrics.update({f"final_test_{k}": v for k, v in final["test"].items()})
                metrics.update({f"ledger_{k}": v for k, v in final["ledger"].items()})
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _maybe_fail(fault: dict, epoch: int) -> None:
    """Fault drill: crash once after epoch `fault.epoch` (a marker file remembers it)."""
    if not fault or epoch != int(fault.get("epoch", -1)):
        return
    from mmbalance.envs.env_config import write_fault_marker

    if write_fault_marker(fault["marker"]):
        raise RuntimeError(f"injected fault after epoch {epoch} (fault drill)")


# ------------------------------------------------------------------ RLlib trials
def _sweep_id(trainable) -> str | None:
    """The id of the sweep a trial belongs to, from its Tune experiment folder."""
    storage = getattr(trainable, "_storage", None)
    if storage is None:
        return None
    try:
        with storage.storage_filesystem.open_input_stream(
                f"{storage.experiment_fs_path}/sweep_id") as f:
            return f.read().decode().strip() or None
    except OSError:
        return None


def _verified(algo_class: type) -> type:
    """`algo_class` whose Tune checkpoints are signed when saved and verified (signature,
    files, sweep id) before `restore` reads anything of them: Tune itself would unpickle a
    dict checkpoint there, and RLlib's state files are pickles."""

    class Verified(algo_class):
        def save_checkpoint(self, checkpoint_dir: str):
            out = super().save_checkpoint(checkpoint_dir)
            sign_folder(checkpoint_dir, run=_sweep_id(self))
            return out

        def restore(self, checkpoint_path, *args, **kwargs):
            checkpoint = getattr(checkpoint_path, "checkpoint", checkpoint_path)
            if isinstance(checkpoint, str):
                checkpoint = tune.Checkpoint.from_directory(checkpoint)
            with checkpoint.as_directory() as d:
                verify_folder(d, run=_sweep_id(self))
            return super().restore(checkpoint_path, *args, **kwargs)

    Verified.__name__ = Verified.__qualname__ = f"Verified{algo_class.__name__}"
    Verified.__module__ = __name__
    return Verified


def verified_algorithm(name: str) -> type:
    """The module-level `Verified<ALGO>` class (Ray pickles trainables by reference)."""
    from mmbalance.tune.learn_config import algorithm_config_class

    attr = f"Verified{name}"
    if attr not in globals():
        globals()[attr] = _verified(algorithm_config_class(name)().algo_class)
    return globals()[attr]


def __getattr__(attr: str):
    """`VerifiedPPO` etc., made on first use (importing RLlib's algorithms takes seconds)."""
    if attr.startswith("Verified"):
        from ray.rllib.algorithms.registry import ALGORITHMS  # RLlib's names

        if attr[len("Verified"):] in ALGORITHMS:
            return verified_algorithm(attr[len("Verified"):])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
