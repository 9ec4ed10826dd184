"""A click-probability head on top of a sequence encoder, and the metrics that judge it.

Ranking needs scores only in the right order; a click model needs *probabilities*: p(the user
clicks this candidate next | their history). :class:`ClickHead` maps the encoder's query state ``h``
and a candidate's item vector ``e`` to

    logit(h, e) = <f(h), g(e)> + c(h) + b(e)

with small residual MLPs ``f``/``g``, a per-query propensity ``c(h)`` (some users click more) and a
per-item propensity ``b(e)`` (popular items are clicked more; computed from the item *vector*, so a
cold item served by its text vector gets one too). Writing the logit as a dot product of two
augmented vectors ``[f(h), c(h), 1] · [g(e), 1, b(e)]`` lets training reuse the shared
:func:`lmrec.nn.losses.bce_with_negatives` (observed next item up, sampled negatives down) instead
of a second BCE implementation.

:func:`click_metrics` computes AUC (rank statistic, ties count half), log-loss, precision and recall
at a threshold, for labels and predicted probabilities from any source; :func:`evaluate_click` runs
them on a split's held-out next items against sampled negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor, nn

from lmrec.nn.losses import bce_with_negatives

__all__ = ["ClickHead", "click_metrics", "evaluate_click", "roc_auc"]


class _Residual(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class ClickHead(nn.Module):
    """p(click | history state ``h``, candidate vector ``e``) for an encoder of width ``dim``.

    ``detach=True`` (default) trains the head on top of the encoder without sending its gradient
    back: the click objective (calibrated probabilities against a handful of negatives) then cannot
    disturb the full-catalogue ranking the encoder is trained for.
    """

    def __init__(self, dim: int, hidden: int = 64, dropout: float = 0.1, *, detach: bool = True) -> None:
        super().__init__()
        self.detach = detach
        self.query_net = _Residual(dim, hidden, dropout)
        self.item_net = _Residual(dim, hidden, dropout)
        self.query_bias = nn.Linear(dim, 1)
        self.item_bias = nn.Linear(dim, 1)

    def _inputs(self, x: Tensor) -> Tensor:
        return x.detach() if self.detach else x

    def query(self, h: Tensor) -> Tensor:
        """(..., dim) encoder states -> (..., dim + 2) augmented query vectors."""
        h = self._inputs(h).float()
        ones = torch.ones_like(h[..., :1])
        return torch.cat([self.query_net(h), self.query_bias(h), ones], dim=-1)

    def item(self, e: Tensor) -> Tensor:
        """(..., dim) item vectors -> (..., dim + 2) augmented item vectors."""
        e = self._inputs(e).float()
        ones = torch.ones_like(e[..., :1])
        return torch.cat([self.item_net(e), ones, self.item_bias(e)], dim=-1)

    def logits(self, h: Tensor, e: Tensor) -> Tensor:
        """Click logits for states ``h (..., dim)`` against items ``e (..., dim)`` (broadcasting)."""
        return (self.query(h) * self.item(e)).sum(-1)

    def probability(self, h: Tensor, e: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(h, e))

    def loss(self, h: Tensor, pos: Tensor, neg: Tensor, mask: Tensor | None = None) -> Tensor:
        """BCE: ``h (..., d)`` against its observed next item ``pos (..., d)`` and negatives ``neg (..., K, d)``."""
        return bce_with_negatives(self.query(h), self.item(pos), self.item(neg), mask=mask)


def roc_auc(labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic (ties count one half).

    NaN when only one class is present (AUC is undefined then, and 0.5 would be a lie).
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in shape: {y.shape} vs {s.shape}")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def click_metrics(
    labels: Sequence[float] | np.ndarray,
    probabilities: Sequence[float] | np.ndarray,
    *,
    threshold: float = 0.5,
    eps: float = 1e-7,
) -> dict[str, float]:
    """AUC, log-loss, precision, recall (at ``threshold``), positive rate and mean prediction.

    ``probabilities`` are clipped to ``[eps, 1 - eps]`` for the log-loss so one overconfident
    mistake cannot make it infinite. Precision is NaN when nothing is predicted positive.
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels and probabilities must be 1-d of one length, got {y.shape} and {p.shape}")
    if len(y) == 0:
        raise ValueError("click_metrics needs at least one example")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if (p < 0).any() or (p > 1).any() or not np.isfinite(p).all():
        raise ValueError("probabilities must lie in [0, 1]")
    pc = np.clip(p, eps, 1 - eps)
    log_loss = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    pred = p >= threshold
    tp = float((pred & (y == 1)).sum())
    n_pred = float(pred.sum())
    n_pos = float((y == 1).sum())
    return {
        "auc": roc_auc(y, p),
        "log_loss": log_loss,
        "precision": tp / n_pred if n_pred else float("nan"),
        "recall": tp / n_pos if n_pos else float("nan"),
        "positive_rate": float(y.mean()),
        "mean_probability": float(p.mean()),
        "n": float(len(y)),
    }


def evaluate_click(
    model: Any,
    split: Any,
    *,
    n_negatives: int = 4,
    phase: str = "test",
    seed: int = 0,
    threshold: float = 0.5,
    batch_size: int = 512,
) -> dict[str, float]:
    """Click metrics on held-out next items against sampled negatives.

    For each user with a held-out interaction in ``split`` (``phase`` ``"test"`` or ``"valid"``), the
    positive is that item and the negatives are ``n_negatives`` items drawn uniformly (seeded) from
    the items the user has not interacted with (training, validation or test); the query is the
    user's training history, plus their validation items in the test phase (the ranking protocol of
    :func:`lmrec.evaluation.evaluate`). ``model`` needs ``click_probability(queries, candidates)``
    (e.g. SASRec/BERT4Rec with ``click_head=True``). The positive rate is ``1 / (1 + n_negatives)``;
    train the head with the same ratio (``click_negatives``) for calibrated probabilities.
    """
    from lmrec.models.base import Query

    if phase not in ("test", "valid"):
        raise ValueError(f"phase must be 'test' or 'valid', got {phase!r}")
    held = split.test if phase == "test" else split.valid
    if held is None or held.height == 0:
        raise ValueError(f"split has no {phase} interactions")
    train = split.train
    vocab = train.item_vocab
    n_items = train.n_items
    # the user's first held-out item (by time) is "the next item"
    first = (
        held.with_row_index("_r")
        .sort(["user_idx", "timestamp", "_r"])
        .group_by("user_idx", maintain_order=True)
        .first()
    )
    users = first["user_idx"].to_numpy()
    targets = first["item_idx"].to_numpy()
    frames = [train.interactions, held] + (
        [split.valid] if phase == "test" and split.valid is not None else []
    )
    frames += [split.test] if phase == "valid" and split.test is not None else []
    touched: dict[int, set[int]] = {}
    for f in frames:
        for u, i in zip(f["user_idx"].to_list(), f["item_idx"].to_list(), strict=True):
            touched.setdefault(u, set()).add(i)
    extra: dict[int, list[Any]] = {}
    if phase == "test" and split.valid is not None:
        v = split.valid.with_row_index("_r").sort(["user_idx", "timestamp", "_r"])
        for u, i in zip(v["user_idx"].to_list(), v["item_id"].to_list(), strict=True):
            extra.setdefault(u, []).append(i)
    rng = np.random.default_rng(seed)
    user_ids = train.user_vocab.external(users)
    queries, cands = [], []
    for u, uid, t in zip(users, user_ids, targets, strict=True):
        pool_size = n_items - len(touched.get(int(u), ()))
        if pool_size < n_negatives:
            continue
        negs: list[int] = []
        seen = touched.get(int(u), set())
        while len(negs) < n_negatives:
            for c in rng.integers(0, n_items, size=2 * n_negatives):
                if int(c) not in seen and int(c) not in negs:
                    negs.append(int(c))
                    if len(negs) == n_negatives:
                        break
        queries.append(Query(user_id=uid, history=extra.get(int(u))))
        cands.append(vocab.external([int(t), *negs]))
    if not queries:
        raise ValueError("no user has enough unseen items to sample negatives from")
    probs = np.concatenate(
        [
            model.click_probability(queries[s : s + batch_size], cands[s : s + batch_size])
            for s in range(0, len(queries), batch_size)
        ]
    )
    labels = np.zeros_like(probs)
    labels[:, 0] = 1.0
    out = click_metrics(labels.ravel(), probs.ravel(), threshold=threshold)
    out["n_users"] = float(len(queries))
    out["n_negatives"] = float(n_negatives)
    return out
