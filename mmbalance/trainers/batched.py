"""K MLA runs in one batched update now live next to MLA itself,
`mmbalance/trainers/methods/mla_batched.py`; this name stays for code written against it."""

from mmbalance.trainers.methods.mla_batched import StackedMLA, check_batchable

__all__ = ["StackedMLA", "check_batchable"]
