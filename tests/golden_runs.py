"""Small training runs whose every logged number is stored in `tests/data/golden_runs.json`.

The file was written by this script (`python tests/golden_runs.py`) from the code as it was
*before* the trainer/method/sampler refactor of issue 11; `tests/test_golden_runs.py` checks
that the code of today reproduces every stored number exactly (the two DUS-RL runs were
written again when DUS-RL's quotas took a fixed sample budget, issue 10, a deliberate change
of behaviour; every other run is still the pre-refactor one) (same seed, same machine
class, one torch thread): step rows, epoch rows (wall times aside), final metrics and a hash
of the final weights. Between them the runs take every method, every sampler family, each
quota mode, the BSS measurer with default and training-loss weights, scores from a scoring
pass and from the training forward pass, the bucket sampler of the sequence env, the online
REINFORCE sampler, three modalities, an lr schedule and OGM-GE's noise.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

PATH = Path(__file__).resolve().parent / "data" / "golden_runs.json"
DATA = {"n_train": 240, "n_val": 120, "n_test": 120, "bayes_samples": 2000}
THREE = {"names": ["rgb", "depth", "flow"], "dim": [8, 12, 16], "separation": [3.0, 2.0, 1.5],
         "noise": [1.0, 1.0, 1.0], "informative": [0.8, 1.0, 1.0]}
BASE = {"epochs": 3, "batch_size": 32, "seed": 5}

# name -> (data, method, sampler selector or "buckets", train overrides)
RUNS: dict[str, tuple[str, str, str, dict]] = {
    "joint-uniform": ("two", "joint", "uniform", {"unimodal_loss_weight": 0.3, "lr_step": 2}),
    "joint-bss-l-forward": ("two", "joint", "bss-l:score=forward", {}),
    "joint-bss-h-rerank": ("two", "joint", "bss-h:t_grow=2,rerank=1", {}),
    "joint-buckets": ("two", "joint", "buckets", {}),
    "ogm-ge-uniform": ("two", "ogm-ge", "uniform", {"ogm_alpha": 0.5, "ogm_end": 1}),
    "joint-uni-bss-l": ("two", "joint-uni", "bss-l",
                        {"mm_loss_weight": 0.1, "uni_loss_weights": [0.9, 0.7]}),
    # each quota run names its quota meaning (recorded when `extra-steps` was called `steps`
    # and was the default), so a change of default is never a change of number
    "joint-uni-dus-h": ("two", "joint-uni", "dus-h",
                        {"inference": "fusion", "quota_mode": "extra-steps"}),
    "joint-uni-fixed-scaled": ("two", "joint-uni", "fixed:quotas=8/48", {"quota_mode": "scaled"}),
    "mla-uniform": ("two", "mla", "uniform", {}),
    "mla-dus-h": ("two", "mla", "dus-h", {"quota_mode": "extra-steps"}),
    "mla-dus-h-batch-adam": ("two", "mla", "dus-h",
                             {"optimizer": "adam", "lr": 0.003, "mla_fusion": "equal",
                              "quota_mode": "batch"}),
    "mla-bss-l-forward": ("two", "mla", "bss-l:score=forward,draw=replacement", {}),
    "mla-dus-rl": ("two", "mla", "dus-rl:k=3", {"quota_mode": "extra-steps"}),
    "mla-dus-rl-continuous": ("two", "mla", "dus-rl:k=4,mode=continuous",
                              {"quota_mode": "scaled"}),
    "three-joint-uni-bss-l": ("three", "joint-uni", "bss-l:score=forward",
                              {"uni_loss_weights": [0.5, 1.0, 2.0]}),
    "three-mla-dus-h": ("three", "mla", "dus-h:strength=8",
                        {"mla_projection": False, "quota_mode": "extra-steps"}),
    # the equal-compute meaning, recorded when it was added
    "mla-dus-h-share": ("two", "mla", "dus-h", {"quota_mode": "share"}),
    "joint-uni-dus-h-share": ("two", "joint-uni", "dus-h:strength=8", {"quota_mode": "share"}),
    "joint-uni-fixed-share": ("two", "joint-uni", "fixed:quotas=16/48",
                              {"quota_mode": "share", "mm_loss_weight": 0.5}),
    "three-mla-dus-h-share": ("three", "mla", "dus-h:strength=8", {"quota_mode": "share"}),
}


def dataset(kind: str):
    from mmbalance.data.synthetic import SyntheticConfig, make_synthetic

    extra = THREE if kind == "three" else {}
    return make_synthetic(SyntheticConfig(**DATA, **extra))


def sampler_for(spec: str):
    from mmbalance.policies.registry import make_sampler

    if spec != "buckets":
        return make_sampler(spec)
    from mmbalance.policies.bss_buckets import BucketSampler

    s = BucketSampler(3)
    s.set_action(0.7, [1.0, 0.5, 0.1])
    return s


def weights_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def weights_sums(model: torch.nn.Module) -> dict[str, float]:
    """Each weight tensor's sum: what the hash says, comparable across machines."""
    return {name: float(t.detach().double().sum()) for name, t in model.state_dict().items()
            if t.is_floating_point()}


def machine() -> str:
    """The CPU model and torch version: floats repeat to the bit only on the same ones."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} / torch {torch.__version__}"


def record(name: str, datasets: dict | None = None) -> dict:
    """Train run `name` and return every number it logs (wall and CPU times left out)."""
    from mmbalance.trainers.config import TrainConfig
    from mmbalance.trainers.trainer import Trainer

    kind, method, spec, train = RUNS[name]
    datasets = datasets if datasets is not None else {}
    if kind not in datasets:
        datasets[kind] = dataset(kind)
    config = TrainConfig.from_dict({**BASE, **train, "method": method})
    trainer = Trainer(datasets[kind], config, sampler_for(spec))
    final = trainer.fit()
    final = {k: v for k, v in final.items() if k != "train_seconds"}
    final["ledger"] = {k: v for k, v in final["ledger"].items() if not k.endswith("_seconds")}
    epochs = [{k: v for k, v in row.items() if k != "seconds"} for row in trainer.history.epochs]
    return _plain({"steps": trainer.history.steps, "epochs": epochs, "final": final,
                   "weights": weights_hash(trainer.model),
                   "weights_sums": weights_sums(trainer.model)})


def main() -> None:
    """Record the runs the file lacks; for the stored ones, add only keys they lack (their
    numbers stay as recorded: that is the point of the file)."""
    torch.set_num_threads(1)
    datasets: dict = {}
    stored = json.loads(PATH.read_text()) if PATH.exists() else {"runs": {}}
    for name in RUNS:
        now = record(name, datasets)
        old = stored["runs"].get(name)
        if old is None:
            stored["runs"][name] = now
            stored.setdefault("recorded_on", {})[name] = machine()
        else:
            old.update({k: v for k, v in now.items() if k not in old})
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(json.dumps(stored, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {PATH} ({PATH.stat().st_size // 1024} KiB, {len(RUNS)} runs)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
