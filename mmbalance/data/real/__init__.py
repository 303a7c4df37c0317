"""The papers' datasets: preparers from the authors' raw layouts, and loaders.

`prepare_dataset(name, root, out, settings)` turns a raw folder into memory-mapped arrays
(`writer.py` describes the prepared layout; each dataset module its raw layout);
`load_real(name, path, ...)` loads a prepared folder as a `MultimodalDataset` whose
`info["encoders"]` names the papers' backbones. The selectors `cremad:DIR`, `ks:DIR`,
`twitter2015:DIR`, `sarcasm:DIR`, `nvgesture:DIR` go through `load_real_spec`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmbalance.data.dataset import MultimodalDataset
from mmbalance.data.real.preparer import Preparer, make_settings
from mmbalance.data.real.reader import load_prepared
from mmbalance.data.real.writer import prepare
from mmbalance.errors import ConfigError

REAL_DATASETS = ("cremad", "ks", "twitter2015", "sarcasm", "nvgesture")


def preparer_class(name: str) -> type[Preparer]:
    if name == "cremad":
        from mmbalance.data.real.cremad import CremadPreparer as cls
    elif name == "ks":
        from mmbalance.data.real.kinetics_sounds import KineticsSoundsPreparer as cls
    elif name == "twitter2015":
        from mmbalance.data.real.twitter2015 import Twitter2015Preparer as cls
    elif name == "sarcasm":
        from mmbalance.data.real.sarcasm import SarcasmPreparer as cls
    elif name == "nvgesture":
        from mmbalance.data.real.nvgesture import NVGesturePreparer as cls
    else:
        raise ConfigError(f"dataset: unknown real dataset {name!r}; allowed: "
                          f"{list(REAL_DATASETS)}")
    return cls


def make_preparer(name: str, root: str | Path, settings: dict | None = None,
                  skip_missing: bool = False) -> Preparer:
    """The preparer of `name` with the paper defaults overridden by `settings`."""
    cls = preparer_class(name)
    return cls(root, make_settings(cls.settings_cls, settings), skip_missing)


def prepare_dataset(name: str, root: str | Path, out: str | Path,
                    settings: dict | None = None, *, skip_missing: bool = False,
                    progress: bool = True, workers: int = 0, flush_every: int = 64,
                    report: Callable[[str], None] | None = None) -> dict:
    """Prepare (or resume preparing) `name` from `root` into `out`; returns meta.json.
    `report` receives the lines to show a person (notes, "resuming: N of M ...")."""
    prep = make_preparer(name, root, settings, skip_missing)
    return prepare(prep, out, progress=progress, workers=workers, flush_every=flush_every,
                   report=report)


def load_real(name: str, path: str | Path, encoders: dict | None = None,
              pretrained: dict | None = None) -> MultimodalDataset:
    """A prepared dataset; `encoders`/`pretrained` per modality override the backbones or
    give local checkpoints."""
    ds = load_prepared(path, name, encoders=encoders, pretrained=pretrained)
    tokenizer = ds.info.get("tokenizer", "")
    for m, p in ds.info["pretrained"].items():
        spec = ds.info["encoders"].get(m, {})
        if str(spec.get("name", "")).startswith("bert") and tokenizer.startswith("hashing"):
            raise ConfigError(
                f"pretrained_{m}={p}: these data were tokenised with the hashing tokenizer, "
                "whose ids mean nothing to a pretrained BERT; prepare them again with "
                "--tokenizer PATH/vocab.txt of that model")
    return ds


def load_real_spec(name: str, rest: str) -> MultimodalDataset:
    """`DIR[,pretrained_<m>=PATH][,encoder_<m>=NAME]` (or `path=DIR,...`) -> the dataset.

    Values are taken verbatim (paths keep their '/'); a comma separates options.
    """
    parts = [p for p in rest.split(",") if p.strip()]
    path = None
    if parts and "=" not in parts[0]:
        path = parts.pop(0).strip()
    encoders: dict[str, str] = {}
    pretrained: dict[str, str] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not value:
            raise ConfigError(f"data '{name}': option {part!r} is not key=value")
        if key == "path":
            path = value
        elif key.startswith("pretrained_"):
            pretrained[key.removeprefix("pretrained_")] = value
        elif key.startswith("encoder_"):
            encoders[key.removeprefix("encoder_")] = value
        else:
            raise ConfigError(f"data '{name}': unknown option {key!r}; allowed: path, "
                              "pretrained_<modality>, encoder_<modality>")
    if not path:
        raise ConfigError(f"data: '{name}' needs the prepared folder, as {name}:DIR (make it "
                          f"with `mmbalance prepare {name} --root RAW_DIR --out DIR`)")
    return load_real(name, path, encoders, pretrained)


__all__ = ["REAL_DATASETS", "load_real", "load_real_spec", "make_preparer", "prepare_dataset",
           "preparer_class"]
