"""The :class:`~lmrec.models.hybrid.Hybrid`'s LightGBM LambdaRank ranker (its private helper module):
its settings, its targets (each user's latest interactions, :func:`holdout_last`, how many:
:func:`auto_targets`), training with early stopping on a seeded slice of users, and the text dump it
is saved as (no pickle)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.dataset import Dataset

log = logging.getLogger("lmrec.models.hybrid")


class RankerConfig(BaseModel):
    """LightGBM LambdaRank settings.

    Defaults chosen on ml-100k leave-last-out *validation* NDCG@10 (``benchmarks/hybrid.py``, cheap
    generators): small trees, a modest learning rate and ~100 rounds. More rounds or bigger trees
    overfit the few hundred ranker users of a small dataset. Early stopping on a slice of a few dozen
    users stopped after anything from 6 to 100 rounds and scored lower, so it only runs when the
    slice holds at least ``min_eval_users`` users (larger datasets).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: boosting rounds (the cap when early stopping runs)
    n_estimators: int = Field(default=100, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=15, ge=2)
    min_child_samples: int = Field(default=50, ge=1)
    #: feature fraction per tree
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    reg_lambda: float = Field(default=1.0, ge=0)
    #: stop after this many rounds without a better NDCG@10 on the early-stopping slice (0: off)
    early_stopping_rounds: int = Field(default=20, ge=0)
    #: share of the ranker's users held out for early stopping
    eval_fraction: float = Field(default=0.1, ge=0, lt=1)
    #: early stopping only with at least this many users in the slice (else all users train)
    min_eval_users: int = Field(default=200, ge=1)
    #: cap on users whose holdout trains the ranker (seeded sample), to bound fit time
    max_train_users: int | None = Field(default=20_000, ge=1)
    #: LightGBM threads (deterministic results need a fixed number)
    num_threads: int = Field(default=1, ge=1)
    #: further LightGBM parameters, passed through
    params: dict[str, Any] = Field(default_factory=dict)


def train_ranker(
    r: RankerConfig,
    seed: int,
    feature_names: Sequence[str],
    x: np.ndarray,
    labels: np.ndarray,
    qpos: np.ndarray,
    is_eval: np.ndarray,
    report: dict[str, Any],
) -> Any:
    """A LambdaRank booster on candidate rows ``x`` (grouped by query position ``qpos``, which is
    sorted) with binary ``labels``; the queries marked ``is_eval`` drive early stopping. Groups
    without a positive are dropped. Returns None when no group has one (the hybrid then ranks by
    reciprocal rank fusion); what happened goes into ``report``."""
    import lightgbm as lgb

    has_pos = np.zeros(len(is_eval), dtype=bool)
    has_pos[qpos[labels > 0]] = True
    report["ranker_groups"] = int(has_pos.sum())
    if not has_pos.any():
        log.warning("no held-out item was among the candidates: ranking by reciprocal rank fusion")
        report["ranker"] = "rrf (no positive candidates to learn from)"
        return None
    rows_tr = has_pos[qpos] & ~is_eval[qpos]
    rows_ev = has_pos[qpos] & is_eval[qpos]
    if not rows_tr.any():  # tiny data: everything trains, nothing stops early
        rows_tr, rows_ev = has_pos[qpos], np.zeros(len(qpos), dtype=bool)
    report["ranker_rows"] = int(rows_tr.sum())
    report["ranker_eval_rows"] = int(rows_ev.sum())

    def groups(rows: np.ndarray) -> np.ndarray:
        _, counts = np.unique(qpos[rows], return_counts=True)  # qpos is sorted: groups are runs
        return counts

    # lgb.train (the engine under LGBMRanker): its signature is stable across LightGBM 4.x, where
    # the scikit-learn wrapper's eval arguments are being renamed
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "learning_rate": r.learning_rate,
        "num_leaves": r.num_leaves,
        "min_data_in_leaf": r.min_child_samples,
        "feature_fraction": r.colsample_bytree,
        "lambda_l2": r.reg_lambda,
        "seed": seed,
        "num_threads": r.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
        **r.params,
    }
    train = lgb.Dataset(
        x[rows_tr],
        labels[rows_tr],
        group=groups(rows_tr),
        feature_name=list(feature_names),
        free_raw_data=True,
    )
    valid_sets: list[Any] = []
    callbacks: list[Any] = []
    if rows_ev.any():
        valid_sets = [lgb.Dataset(x[rows_ev], labels[rows_ev], group=groups(rows_ev), reference=train)]
        callbacks = [lgb.early_stopping(r.early_stopping_rounds, first_metric_only=True, verbose=False)]
    booster = lgb.train(
        params, train, num_boost_round=r.n_estimators, valid_sets=valid_sets, callbacks=callbacks
    )
    best = booster.best_iteration if rows_ev.any() and booster.best_iteration > 0 else r.n_estimators
    report["ranker"] = "lightgbm lambdarank"
    report["ranker_rounds"] = int(best)
    if rows_ev.any():
        report["ranker_eval_ndcg@10"] = round(float(booster.best_score["valid_0"]["ndcg@10"]), 5)
    gain = booster.feature_importance(importance_type="gain", iteration=best)
    total = float(gain.sum()) or 1.0
    report["feature_gain"] = {n: round(float(g) / total, 4) for n, g in zip(feature_names, gain, strict=True)}
    # the fitted model predicts from the same text dump a loaded one reads: identical scores
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def save_booster(booster: Any, path: Path) -> None:
    """Write ``booster`` as LightGBM's text dump (the format a loaded ranker is read from)."""
    path.write_text(booster.model_to_string(), encoding="utf-8")


def load_booster(path: Path) -> Any:
    import lightgbm as lgb

    return lgb.Booster(model_str=path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------- targets
def holdout_last(data: Dataset, n: int = 1) -> tuple[Dataset, pl.DataFrame]:
    """``data`` without each user's last ``n`` interactions, and those interactions. Every user keeps
    at least one interaction (a user with ``m <= n`` gives ``m - 1``; one with a single interaction
    gives none).

    The same rule as :func:`lmrec.data.split.leave_last_out` with ``n_valid=0``: by timestamp, ties
    broken by file order.
    """
    df = data.time_ordered().with_columns(
        pl.int_range(pl.len(), 0, -1).over("user_idx").alias("_from_end"),
        pl.len().over("user_idx").alias("_n"),
    )
    last = pl.col("_from_end") <= pl.min_horizontal(pl.lit(n), pl.col("_n") - 1)
    held = df.filter(last).sort("_row").drop("_row", "_from_end", "_n")
    rest = df.filter(~last).sort("_row").drop("_row", "_from_end", "_n")
    return data.with_interactions(rest), held


def auto_targets(data: Dataset, max_share: float, max_n: int = 3) -> int:
    """The largest ``n <= max_n`` whose :func:`holdout_last` holds out at most ``max_share`` of
    ``data``'s interactions; 1 when even one per user holds out more."""
    lengths = data.interactions["user_idx"].value_counts()["count"].to_numpy().astype(np.int64)
    for n in range(max_n, 1, -1):
        if np.minimum(n, lengths - 1).clip(0).sum() <= max_share * max(data.n_interactions, 1):
            return n
    return 1
