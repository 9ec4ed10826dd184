"""Retrieval losses, written once and reused by every neural model (two-tower, SASRec, BERT4Rec).

RecBole pastes the same loss branch into 26 model files; here each loss is one function.

API
---
``info_nce(query, pos, candidates=None, *, temperature=1.0, in_batch=True, pos_ids=None,
candidate_ids=None, logq=None, candidate_logq=None, hard_negatives=None, hard_negative_ids=None,
mask_accidental_hits=True, weights=None,
reduction="mean") -> Tensor``
    Softmax cross-entropy of each query's positive against (a) the other rows' positives
    ("in-batch negatives", if ``in_batch``) and (b) extra sampled ``candidates`` (shared ``(N, d)``
    or per-query ``(B, N, d)``). Logits are ``<query, item> / temperature``.

    * ``logq``/``candidate_logq``: log sampling probability of each in-batch positive ``(B,)`` and
      each candidate ``(N,)`` or ``(B, N)``. It is subtracted from the logit of every *sampled*
      column (logQ correction, Yi et al. 2019), so popular items are not over-penalised just for
      being sampled often. The query's own positive logit is corrected too, as in the paper.
    * ``pos_ids``/``candidate_ids``: item ids; a column whose item equals the row's positive
      (an "accidental hit": the same item twice in a batch, or a sampled negative that is the
      positive) is masked out instead of being treated as a negative.
    * ``hard_negatives`` ``(B, H, d)`` with ``hard_negative_ids`` ``(B, H)``: per-query extra negatives
      (e.g. mined by text similarity); not logQ-corrected, since they are not drawn from a
      popularity sampler. Hits on the positive are masked like the other columns.
    * ``logq`` also applies without in-batch negatives: it then only corrects each positive's logit
      (use it when the candidates are the batch's distinct positives, passed as ``candidates``).
    * ``weights``: per-row weights ``(B,)`` (e.g. 0 for padded rows).

``sampled_softmax(query, pos, negatives, **kw)``
    ``info_nce`` without in-batch negatives: the positive against the given negatives only.

``full_softmax_ce(query, items, target, *, temperature=1.0, ignore_index=-100, item_mask=None,
label_smoothing=0.0, reduction="mean")``
    Cross-entropy over the whole catalogue: ``query (..., d)`` against ``items (n_items, d)``,
    ``target (...)`` item indices (rows equal to ``ignore_index`` are skipped). ``item_mask`` (bool
    ``(n_items,)``) removes items from the softmax (e.g. items absent from training).

``bce_with_negatives(query, pos, neg, *, mask=None, reduction="mean")``
    SASRec's original binary loss: ``-log σ(<q, pos>) - Σ_k log(1 - σ(<q, neg_k>))`` with ``neg``
    ``(..., d)`` or ``(..., K, d)``; ``mask (...)`` marks valid positions.

All functions compute in float32 even under mixed precision (softmax over thousands of items in
half precision loses the small logit differences that ranking depends on).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Reduction = Literal["mean", "sum", "none"]

#: large negative used for masked logits (not -inf: a row with every column masked stays finite)
_MASKED = -1e9


def _reduce(loss: Tensor, weights: Tensor | None, reduction: Reduction) -> Tensor:
    if weights is not None:
        loss = loss * weights
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weights is not None:
        return loss.sum() / weights.sum().clamp(min=1e-12)
    return loss.mean()


def info_nce(
    query: Tensor,
    pos: Tensor,
    candidates: Tensor | None = None,
    *,
    temperature: float | Tensor = 1.0,
    in_batch: bool = True,
    pos_ids: Tensor | None = None,
    candidate_ids: Tensor | None = None,
    logq: Tensor | None = None,
    candidate_logq: Tensor | None = None,
    hard_negatives: Tensor | None = None,
    hard_negative_ids: Tensor | None = None,
    mask_accidental_hits: bool = True,
    weights: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """InfoNCE / sampled softmax with in-batch and extra negatives, logQ correction, hit masking."""
    if query.ndim != 2 or pos.shape != query.shape:
        raise ValueError(
            f"query and pos must both be (B, d), got {tuple(query.shape)} and {tuple(pos.shape)}"
        )
    if not in_batch and candidates is None and hard_negatives is None:
        raise ValueError(
            "info_nce needs in_batch=True, candidates or hard_negatives (otherwise there are no negatives)"
        )
    q = query.float()
    p = pos.float()
    b = q.shape[0]
    pos_logit = (q * p).sum(-1, keepdim=True)  # (B, 1)
    blocks: list[Tensor] = []
    if in_batch:
        inb = q @ p.T  # (B, B); the diagonal is each row's positive and is dropped below
        if logq is not None:
            inb = inb - (logq.float() * temperature).unsqueeze(0)
        eye = torch.eye(b, dtype=torch.bool, device=q.device)
        drop = eye
        if mask_accidental_hits and pos_ids is not None:
            drop = drop | (pos_ids.unsqueeze(0) == pos_ids.unsqueeze(1))
        blocks.append(inb.masked_fill(drop, _MASKED))
    if candidates is not None:
        c = candidates.float()
        if c.ndim == 2:
            cand = q @ c.T  # (B, N)
        elif c.ndim == 3 and c.shape[0] == b:
            cand = torch.einsum("bd,bnd->bn", q, c)
        else:
            raise ValueError(f"candidates must be (N, d) or (B, N, d), got {tuple(c.shape)}")
        if candidate_logq is not None:
            clq = candidate_logq.float()
            cand = cand - (clq.unsqueeze(0) if clq.ndim == 1 else clq) * temperature
        if mask_accidental_hits and pos_ids is not None and candidate_ids is not None:
            cid = candidate_ids.unsqueeze(0) if candidate_ids.ndim == 1 else candidate_ids
            cand = cand.masked_fill(cid == pos_ids.unsqueeze(1), _MASKED)
        blocks.append(cand)
    if hard_negatives is not None:
        if hard_negatives.ndim != 3 or hard_negatives.shape[0] != b:
            raise ValueError(f"hard_negatives must be (B, H, d), got {tuple(hard_negatives.shape)}")
        hard = torch.einsum("bd,bhd->bh", q, hard_negatives.float())
        if mask_accidental_hits and pos_ids is not None and hard_negative_ids is not None:
            hard = hard.masked_fill(hard_negative_ids == pos_ids.unsqueeze(1), _MASKED)
        blocks.append(hard)
    if logq is not None:
        # the positive was also "sampled" with probability q: correct it like the other columns
        pos_logit = pos_logit - (logq.float() * temperature).unsqueeze(1)
    logits = torch.cat([pos_logit, *blocks], dim=1) / temperature
    loss = torch.logsumexp(logits, dim=1) - logits[:, 0]
    return _reduce(loss, None if weights is None else weights.float(), reduction)


def sampled_softmax(query: Tensor, pos: Tensor, negatives: Tensor, **kwargs: object) -> Tensor:
    """The positive against ``negatives`` only (``(N, d)`` shared or ``(B, N, d)``); see :func:`info_nce`."""
    if "in_batch" in kwargs:
        raise TypeError("sampled_softmax has no in-batch negatives; use info_nce(in_batch=True)")
    if "negative_ids" in kwargs:
        kwargs["candidate_ids"] = kwargs.pop("negative_ids")
    if "negative_logq" in kwargs:
        kwargs["candidate_logq"] = kwargs.pop("negative_logq")
    return info_nce(query, pos, negatives, in_batch=False, **kwargs)  # type: ignore[arg-type]


def full_softmax_ce(
    query: Tensor,
    items: Tensor,
    target: Tensor,
    *,
    temperature: float | Tensor = 1.0,
    ignore_index: int = -100,
    item_mask: Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Cross-entropy of ``target`` over the whole catalogue; ``query (..., d)``, ``items (n, d)``."""
    if items.ndim != 2 or query.shape[-1] != items.shape[1]:
        raise ValueError(
            f"query (..., d) and items (n, d) disagree: {tuple(query.shape)} vs {tuple(items.shape)}"
        )
    if target.shape != query.shape[:-1]:
        raise ValueError(f"target must have shape {tuple(query.shape[:-1])}, got {tuple(target.shape)}")
    q = query.reshape(-1, query.shape[-1]).float()
    t = target.reshape(-1)
    keep = t != ignore_index
    q, t = q[keep], t[keep]
    if q.shape[0] == 0:
        return query.sum() * 0.0  # keeps the graph (and DDP's gradient hooks) alive
    table = items.float()
    if item_mask is not None:
        # drop masked items from the matmul instead of masking a (rows x n_items) logit matrix
        if not bool(item_mask[t].all()):
            raise ValueError("full_softmax_ce: a target item is excluded by item_mask")
        remap = torch.cumsum(item_mask.long(), 0) - 1
        table, t = table[item_mask], remap[t]
    # scale the (rows x d) queries, not the (rows x n_items) logits: same result, far less work
    logits = (q / temperature) @ table.T
    loss = F.cross_entropy(logits, t, reduction="none", label_smoothing=label_smoothing)
    return _reduce(loss, None, reduction)


def bce_with_negatives(
    query: Tensor,
    pos: Tensor,
    neg: Tensor,
    *,
    mask: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Binary cross-entropy: positive logit up, each negative logit down (SASRec's original loss)."""
    q = query.float()
    pos_logit = (q * pos.float()).sum(-1)
    if neg.shape == query.shape:
        neg_logit = (q * neg.float()).sum(-1, keepdim=True)
    elif neg.ndim == query.ndim + 1:
        neg_logit = torch.einsum("...d,...kd->...k", q, neg.float())
    else:
        raise ValueError(
            f"neg must be (..., d) or (..., K, d) matching query {tuple(query.shape)}, got {tuple(neg.shape)}"
        )
    loss = F.softplus(-pos_logit) + F.softplus(neg_logit).sum(-1)
    if mask is not None:
        w = mask.float()
        if reduction == "none":
            return loss * w
        if reduction == "sum":
            return (loss * w).sum()
        return (loss * w).sum() / w.sum().clamp(min=1.0)
    return _reduce(loss, None, reduction)
