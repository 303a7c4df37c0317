"""The learn folder's plots now live in `mmbalance/report/learn.py`; this name stays for
code written against it."""

from mmbalance.report.learn import PANELS, learn_report, learning_curve_figure, plot_learning_curve

__all__ = ["PANELS", "learn_report", "learning_curve_figure", "plot_learning_curve"]
