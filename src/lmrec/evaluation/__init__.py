"""Offline evaluation: full-ranking metrics, segments, confidence intervals and paired tests, reports."""

from lmrec.evaluation.evaluate import DEFAULT_KS, EvalResult, evaluate
from lmrec.evaluation.metrics import RANKING_METRICS
from lmrec.evaluation.significance import PairedTest, bootstrap_ci, compare_results, paired_test

__all__ = [
    "DEFAULT_KS",
    "RANKING_METRICS",
    "EvalResult",
    "PairedTest",
    "bootstrap_ci",
    "compare_results",
    "evaluate",
    "paired_test",
]
