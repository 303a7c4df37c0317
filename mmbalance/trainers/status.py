"""The learning status now lives in `mmbalance/balance.py` (below trainers and policies);
this name stays for code written against the old path."""

from mmbalance.balance import ACCUMULATIONS, LearningStatus, true_class_score

__all__ = ["ACCUMULATIONS", "LearningStatus", "true_class_score"]
