"""Honest offline evaluation: full ranking, seen items excluded, no leakage.

Protocol (recorded in every result):

* ``phase="valid"``: each validation user is queried with their training history; targets are
  their validation interactions.
* ``phase="test"``: each test user is queried with their training history *plus* their validation
  interactions (and, under the cold-user protocol, the revealed part of their history) as extra
  history; targets are their test interactions. The model is **not** refitted on validation data
  unless the caller does so (the result records ``fit_on``).
* Every item in a query's history is removed from its ranking; all other catalogue items compete
  (full ranking). A target that is already in the query's history (the data repeats a (user, item)
  pair, and the split warned) could never be hit, so it is left out of the targets; a user left
  without targets is not evaluated. ``info["targets_in_history"]`` counts both; when no target is
  left at all, :class:`~lmrec.errors.LmrecError` says so instead of reporting zeros and NaN. Lists come from the model's ``rank`` (:mod:`lmrec.ranking`, the path
  ``recommend`` takes); ties are broken by internal item index (ascending external id).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

import lmrec.evaluation.metrics as M
from lmrec._memory import rows_per_batch
from lmrec.data.split import Split
from lmrec.errors import LmrecError
from lmrec.models.base import Query, Recommender
from lmrec.ranking import mask_scores, rank_scores

DEFAULT_KS = (5, 10, 20)

log = logging.getLogger("lmrec.evaluation")


@dataclass
class EvalResult:
    """Metrics for one model on one split and phase."""

    model: str
    metrics: dict[str, float]
    segments: dict[str, dict[str, float]] = field(default_factory=dict)
    per_user: pl.DataFrame | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "metrics": self.metrics, "segments": self.segments, "info": self.info}


def _item_features(split: Split) -> np.ndarray | None:
    """Multi-hot genre/category features for intra-list diversity, when the items table has them."""
    items = split.train.item_table()
    for col in ("genres", "categories", "category"):
        if col in items.columns:
            vals = items[col].cast(pl.Utf8).fill_null("").to_list()
            tokens = [[t.strip() for t in v.replace(",", "|").split("|") if t.strip()] for v in vals]
            vocab = {t: i for i, t in enumerate(sorted({t for ts in tokens for t in ts}))}
            if not vocab:
                return None
            f = np.zeros((len(vals), len(vocab)), dtype=np.float32)
            for r, ts in enumerate(tokens):
                for t in ts:
                    f[r, vocab[t]] = 1.0
            return f
    return None


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("lmrec", "numpy", "scipy", "polars", "implicit", "torch", "sentence-transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def evaluate(
    model: Recommender,
    split: Split,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    phase: str = "test",
    metrics: Sequence[str] = M.RANKING_METRICS,
    beyond_accuracy: bool = True,
    auc: bool = True,
    cold_user_threshold: int = 5,
    item_features: np.ndarray | None = None,
    batch_size: int = 512,
    name: str | None = None,
    fit_seconds: float | None = None,
) -> EvalResult:
    """Evaluate a fitted ``model`` on ``split`` (full ranking over the whole item vocabulary).

    Segments reported: ``warm_users``/``cold_users`` (training history length vs
    ``cold_user_threshold``) and ``cold_items``/``warm_items`` (metrics over targets that are or are
    not items absent from training; users without such targets are left out of that segment).
    """
    if phase not in ("test", "valid"):
        raise ValueError(f"phase must be 'test' or 'valid', got {phase!r}")
    if not ks or min(ks) <= 0:
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    started = time.perf_counter()
    train = split.train
    targets_df = split.test if phase == "test" else split.valid
    if targets_df is None or targets_df.height == 0:
        raise ValueError(f"split has no {phase} interactions")

    # extra history revealed at query time, per user (internal item indices, time ordered)
    extra_frames = []
    if phase == "test":
        if split.valid is not None:
            extra_frames.append(split.valid)
        if split.test_history is not None:
            extra_frames.append(split.test_history)
    extra: dict[int, list[int]] = {}
    if extra_frames:
        ef = pl.concat([f.select("user_idx", "item_idx", "timestamp") for f in extra_frames]).with_row_index(
            "_r"
        )
        ef = (
            ef.sort(["user_idx", "timestamp", "_r"]).group_by("user_idx", maintain_order=True).agg("item_idx")
        )
        extra = dict(zip(ef["user_idx"].to_list(), ef["item_idx"].to_list(), strict=True))

    users = np.unique(targets_df["user_idx"].to_numpy())
    n_items = train.n_items
    tgt = sp.csr_matrix(
        (
            np.ones(targets_df.height, np.float32),
            (targets_df["user_idx"].to_numpy(), targets_df["item_idx"].to_numpy()),
        ),
        shape=(train.n_users, n_items),
    )
    tgt.sum_duplicates()
    tgt.data[:] = 1.0
    train_len = np.bincount(train.interactions["user_idx"].to_numpy(), minlength=train.n_users)
    cold_items = split.cold_items()
    is_cold_item = np.zeros(n_items, dtype=bool)
    is_cold_item[cold_items] = True

    kmax = max(ks)
    user_ext = train.user_vocab.external(users)
    item_ext = train.item_vocab.ids
    tops: list[np.ndarray] = []
    tgts: list[sp.csr_matrix] = []
    aucs: list[np.ndarray] = []
    n_seen = 0
    # (batch, n_items) float32 scores, their masked copy and the AUC's ranks: bounded in memory
    batch_size = rows_per_batch(batch_size, 3 * 4 * n_items)
    for start in range(0, len(users), batch_size):
        b_users = users[start : start + batch_size]
        queries = []
        for u, ext in zip(b_users, user_ext[start : start + batch_size], strict=True):
            hist = [item_ext[i] for i in extra.get(int(u), [])]
            if train_len[u] > 0:
                queries.append(Query(user_id=ext, history=hist or None))
            else:  # user unknown to the model: served from whatever history is revealed
                queries.append(Query(history=hist))
        batch = model.encode_queries(queries)
        # a target already in the query's history is masked like every history item and could
        # never be hit: it is left out (repeated (user, item) pairs; the split warned about them)
        b_tgt = tgt[b_users]
        seen = b_tgt.multiply(batch.history.astype(bool)).tocsr()
        if seen.nnz:
            n_seen += seen.nnz
            b_tgt = (b_tgt - seen).tocsr()
            b_tgt.eliminate_zeros()
        tgts.append(b_tgt)
        # full ranking: every item scored exactly, once, for both the top-k and the AUC (a model's
        # ANN ranker serves requests; it has no place in an honest evaluation)
        scores = mask_scores(model.score_batch(batch), batch.history)
        if auc:
            aucs.append(M.auc_per_user(scores, b_tgt))
        idx, _ = rank_scores(scores, kmax)
        tops.append(idx)
    top = np.concatenate(tops) if tops else np.zeros((0, kmax), np.int64)
    targets = sp.vstack(tgts).tocsr() if tgts else tgt[users]
    evaluable = np.diff(targets.indptr) > 0
    if not evaluable.any():
        raise LmrecError(
            f"every {phase} target of {train.name} is already in its user's history at query time "
            "(the data repeats (user, item) pairs), so nothing can be evaluated; load the data "
            "with duplicates='last' to keep one row per pair"
        )
    n_skipped = int((~evaluable).sum())
    if n_seen:
        log.warning(
            "%s: %d %s target(s) already in their user's history left out; %d user(s) had no other "
            "target and are not evaluated",
            name or model.name,
            n_seen,
            phase,
            n_skipped,
        )
    if n_skipped:
        user_ext = [e for e, keep in zip(user_ext, evaluable, strict=True) if keep]
        users, top, targets = users[evaluable], top[evaluable], targets[evaluable]
    if auc:
        aucs = [np.concatenate(aucs)[evaluable]]

    per_user = M.ranking_metrics(top, targets, ks, metrics)
    if auc:
        per_user["auc"] = np.concatenate(aucs)
    if beyond_accuracy:
        pop = train.item_popularity()
        feats = item_features if item_features is not None else _item_features(split)
        for k in ks:
            per_user[f"novelty@{k}"] = M.novelty(top, pop, train.n_users, k)
            if feats is not None:
                per_user[f"ild@{k}"] = M.intra_list_diversity(top, feats, k)

    def agg(values: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, float]:
        out = {}
        for key, v in values.items():
            sel = v if mask is None else v[mask]
            out[key] = float(np.nanmean(sel)) if len(sel) and not np.all(np.isnan(sel)) else float("nan")
        out["n_users"] = float(len(values[next(iter(values))]) if mask is None else int(mask.sum()))
        return out

    summary = agg(per_user)
    if beyond_accuracy:
        for k in ks:
            summary[f"coverage@{k}"] = M.coverage(top, n_items, k)

    segments: dict[str, dict[str, float]] = {}
    cold_u = train_len[users] < cold_user_threshold
    for label, mask in (("cold_users", cold_u), ("warm_users", ~cold_u)):
        if mask.any():
            segments[label] = agg(per_user, mask)
    # item segments: restrict each user's targets to cold (or warm) items
    for label, keep in (("cold_items", is_cold_item), ("warm_items", ~is_cold_item)):
        t = targets.multiply(keep[None, :].astype(np.float32)).tocsr()
        t.eliminate_zeros()
        has = np.diff(t.indptr) > 0
        if has.any() and (label == "cold_items" or (~keep).any()):
            seg = M.ranking_metrics(top[has], t[has], ks, metrics)
            segments[label] = agg(seg)
    elapsed = time.perf_counter() - started
    info = {
        "dataset": train.name,
        "dataset_checksum": train.meta.get("source_checksum", train.checksum()),
        "train_checksum": train.checksum(),
        "dataset_meta": {
            k: v for k, v in train.meta.items() if isinstance(v, (str, int, float, bool, dict, list))
        },
        "split": split.summary(),
        "phase": phase,
        "fit_on": "train",
        "history_at_query_time": "train + valid"
        + (" + revealed cold-user history" if split.test_history is not None else "")
        if phase == "test"
        else "train",
        "ranking": "full catalogue, seen items excluded, ties by ascending item id",
        "n_items": n_items,
        "n_cold_items": len(cold_items),
        # targets already in the query's history (repeated pairs) are left out, never counted as misses
        "targets_in_history": {"left_out": n_seen, "users_without_targets": n_skipped},
        "ks": list(ks),
        "model": model.name,
        "config": model.config.model_dump(mode="json"),
        "versions": _versions(),
        "eval_seconds": round(elapsed, 3),
    }
    if fit_seconds is not None:
        info["fit_seconds"] = round(fit_seconds, 3)
    frame = pl.DataFrame({"user_id": pl.Series(user_ext), **{k: v for k, v in per_user.items()}})
    return EvalResult(model=name or model.name, metrics=summary, segments=segments, per_user=frame, info=info)
