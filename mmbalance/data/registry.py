"""Dataset selector strings: `synthetic[:k=v,...]`, `digits[:k=v,...]`, `parquet:PATH`, and
the prepared real datasets `cremad:DIR`, `ks:DIR`, `twitter2015:DIR`, `sarcasm:DIR`,
`nvgesture:DIR` (options `,pretrained_<modality>=PATH`, `,encoder_<modality>=NAME`).

Per-modality synthetic options take '/'-separated values, e.g.
`synthetic:separation=3/1.5,informative=0.7/1,seed=3`; `synthetic:preset=competition` starts
from a named setting (`mmbalance.data.synthetic.PRESETS`) that other options override.
"""

from __future__ import annotations

from dataclasses import fields

from mmbalance.data.dataset import MultimodalDataset
from mmbalance.errors import ConfigError
from mmbalance.spec import check_options, parse_spec

DATASETS = ("synthetic", "digits", "parquet", "cremad", "ks", "twitter2015", "sarcasm",
            "nvgesture")
_SYNTH_LISTS = ("names", "dim", "separation", "noise", "informative", "mirrored")


def load_dataset(spec: str = "synthetic") -> MultimodalDataset:
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if name == "parquet":
        if not rest:
            raise ConfigError("data: 'parquet' needs a path, as parquet:PATH")
        from mmbalance.data.parquet import load_parquet

        return load_parquet(rest)
    if name in DATASETS[3:]:
        from mmbalance.data.real import load_real_spec

        return load_real_spec(name, rest)
    name, options = parse_spec(spec, "data")
    if name == "synthetic":
        from mmbalance.data.synthetic import SyntheticConfig, make_synthetic

        check_options("data 'synthetic'", options,
                      [f.name for f in fields(SyntheticConfig)] + ["preset"])
        for key in _SYNTH_LISTS:
            if key in options and not isinstance(options[key], list):
                options[key] = [options[key]]
        return make_synthetic(SyntheticConfig.from_options(options))
    if name == "digits":
        from mmbalance.data.digits import load_digits_dataset

        allowed = ["noise", "noisy", "val_fraction", "test_fraction", "seed", "image"]
        check_options("data 'digits'", options, allowed)
        return load_digits_dataset(**options)
    raise ConfigError(f"data: unknown dataset {name!r}; allowed: {list(DATASETS)}")
