"""Per-dataset defaults (optimiser, lr, schedule, backbones, input sizes) from YAML.

The files are `tune_configs/datasets/<name>.yaml` at the repository root, one per dataset,
each value commented with its source (the authors' code, the papers, or our choice). They
are read with `yaml.safe_load` and validated here as far as data goes: `prepare` against the
dataset's preparation settings, `encoders` against its modalities. `train` is the training
set-up; the layer that trains checks it (`mmbalance.cli`, against `TrainConfig`), so data
never imports the trainer.
"""

from __future__ import annotations

from pathlib import Path

from mmbalance.errors import ConfigError

KEYS = ("dataset", "encoders", "train", "prepare")


def defaults_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "tune_configs" / "datasets"


def defaults_path(name: str, folder: str | Path | None = None) -> Path:
    return Path(folder or defaults_dir()) / f"{name}.yaml"


def dataset_defaults(name: str, folder: str | Path | None = None) -> dict:
    """`{"dataset", "encoders", "train", "prepare"}` of `name`, validated (`train` only as a
    mapping: its keys and values are the trainer's to check)."""
    import yaml

    from mmbalance.data.real import preparer_class
    from mmbalance.data.real.preparer import make_settings

    cls = preparer_class(name)
    path = defaults_path(name, folder)
    if not path.is_file():
        raise ConfigError(f"{path}: defaults file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {list(KEYS)}")
    unknown = sorted(set(data) - set(KEYS))
    missing = [k for k in KEYS if k not in data]
    if unknown or missing:
        raise ConfigError(f"{path}: unknown key(s) {unknown}, missing key(s) {missing}")
    if data["dataset"] != name:
        raise ConfigError(f"{path}: dataset is {data['dataset']!r}, expected {name!r}")
    if not isinstance(data["train"], dict):
        raise ConfigError(f"{path}: train: expected a mapping of training settings")
    try:
        make_settings(cls.settings_cls, data["prepare"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if set(data["encoders"]) != set(cls.modalities):
        raise ConfigError(f"{path}: encoders name {sorted(data['encoders'])}, the dataset's "
                          f"modalities are {list(cls.modalities)}")
    return data
