"""The sampler interface lives on the trainer's side, `mmbalance/trainers/sampler.py` (the
trainer consumes it; samplers implement it). This name stays for code written against it."""

from mmbalance.trainers.sampler import (
    PAIRED,
    QUOTA_MODES,
    Batch,
    EpochOrderSampler,
    ForwardPass,
    Sampler,
    SamplerContext,
    Scorer,
    UniformSampler,
)

__all__ = ["PAIRED", "QUOTA_MODES", "Batch", "EpochOrderSampler", "ForwardPass", "Sampler",
           "SamplerContext", "Scorer", "UniformSampler"]
