"""Offline evaluation: full-ranking metrics, segments, reports."""

from lmrec.evaluation.evaluate import DEFAULT_KS, EvalResult, evaluate
from lmrec.evaluation.metrics import RANKING_METRICS

__all__ = ["DEFAULT_KS", "RANKING_METRICS", "EvalResult", "evaluate"]
