"""Dataset selector strings: `synthetic[:k=v,...]`, `digits[:k=v,...]`,
`parquet:PATH[,standardize=false]`, and
the prepared real datasets `cremad:DIR`, `ks:DIR`, `twitter2015:DIR`, `sarcasm:DIR`,
`nvgesture:DIR` (options `,pretrained_<modality>=PATH`, `,encoder_<modality>=NAME`).

Per-modality synthetic options take '/'-separated values, e.g.
`synthetic:separation=3/1.5,informative=0.7/1,seed=3`; `synthetic:preset=competition` starts
from a named setting (`mmbalance.data.synthetic.PRESETS`) that other options override.
"""

from __future__ import annotations

from mmbalance.data.dataset import MultimodalDataset
from mmbalance.errors import ConfigError
from mmbalance.spec import parse_spec, typed_fields

DATASETS = ("synthetic", "digits", "parquet", "cremad", "ks", "twitter2015", "sarcasm",
            "nvgesture")


def load_dataset(spec: str = "synthetic") -> MultimodalDataset:
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if name == "parquet":
        from mmbalance.data.parquet import load_parquet, parquet_selector

        path, options = parquet_selector(rest)
        return load_parquet(path, **options)
    if name in DATASETS[3:]:
        from mmbalance.data.real import load_real_spec

        return load_real_spec(name, rest)
    name, options = parse_spec(spec, "data")
    if name == "synthetic":
        from mmbalance.data.synthetic import SyntheticConfig, make_synthetic

        preset = options.pop("preset", None)
        options = typed_fields("data 'synthetic'", options, SyntheticConfig, noun="option")
        if preset is not None:
            options["preset"] = preset
        return make_synthetic(SyntheticConfig.from_options(options))
    if name == "digits":
        from mmbalance.data.digits import load_digits_dataset

        options = typed_fields("data 'digits'", options, load_digits_dataset, noun="option")
        return load_digits_dataset(**options)
    raise ConfigError(f"data: unknown dataset {name!r}; allowed: {list(DATASETS)}")
