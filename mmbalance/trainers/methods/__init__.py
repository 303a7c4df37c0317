"""MML base methods: how one training iteration updates the model.

Each method's `step(batch)` trains on a batch (paired or per-modality index arrays) and
returns a `StepOutput` with what the learning status and the samplers need, computed from
the forward passes it already does (no extra pass). One module per method, each with its
hyperparameter dataclass (`Options`); `METHOD_CLASSES` is the registry every list of method
names is derived from:

- `joint` (`joint.py`): multimodal CE through a concatenation fusion head.
- `joint-uni` (`joint_uni.py`): the papers' baseline, fusion + a head per modality.
- `ogm-ge` (`ogm_ge.py`): joint, with on-the-fly gradient modulation and noise.
- `mla` (`mla.py`): alternating unimodal updates through one shared head; `mla_batched.py`
  trains K runs of it in one batched update (the vectorised env).
"""

from mmbalance.errors import ConfigError
from mmbalance.trainers.methods.base import Method, MethodContext, NoOptions, quota_chunks
from mmbalance.trainers.methods.joint import JointMethod, JointOptions
from mmbalance.trainers.methods.joint_uni import JointUniMethod, JointUniOptions
from mmbalance.trainers.methods.mla import MLAMethod, MLAOptions
from mmbalance.trainers.methods.ogm_ge import (
    OGMGEMethod,
    OGMGEOptions,
    modulate_grad,
    ogm_coefficients,
)
from mmbalance.trainers.methods.output import StepOutput, read_outputs

METHOD_CLASSES: dict[str, type[Method]] = {
    cls.name: cls for cls in (JointMethod, JointUniMethod, OGMGEMethod, MLAMethod)
}
METHODS = tuple(METHOD_CLASSES)


def check_method_sampler(method: str, sampler, label: str | None = None) -> None:
    """Whether `method` can train on what `sampler` feeds: a sampler of per-modality
    batches (`unimodal_batches`, DUS) needs a method that updates each modality on its own
    batch. A ConfigError naming the methods that can, else nothing. `label`: how the user
    named the sampler (its selector), default its name."""
    cls = METHOD_CLASSES.get(method)
    if cls is None:
        raise ConfigError(f"method: unknown {method!r}; allowed: {list(METHODS)}")
    if getattr(sampler, "unimodal_batches", False) and not cls.accepts_unimodal_batches:
        allowed = [n for n, c in METHOD_CLASSES.items() if c.accepts_unimodal_batches]
        raise ConfigError(
            f"sampler '{label or sampler.name}' feeds each modality its own batch, which method "
            f"'{method}' cannot train on (it needs paired batches); use method {allowed} or a "
            f"paired sampler"
        )

__all__ = [
    "METHODS",
    "METHOD_CLASSES",
    "JointMethod",
    "JointOptions",
    "JointUniMethod",
    "JointUniOptions",
    "MLAMethod",
    "MLAOptions",
    "Method",
    "MethodContext",
    "NoOptions",
    "OGMGEMethod",
    "OGMGEOptions",
    "StepOutput",
    "check_method_sampler",
    "modulate_grad",
    "ogm_coefficients",
    "quota_chunks",
    "read_outputs",
]
