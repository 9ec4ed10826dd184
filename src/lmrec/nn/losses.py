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

``log_frequency(counts)`` and ``mixed_negatives(pos_ids, pool, log_freq, *, in_batch, uniform)``
    The shared negatives of a sampled softmax (bounded in-batch positives + uniform draws, sorted
    and distinct) with their logQ under the mixture of both samplers.

``resolve_loss(loss, n_train_items, *, full, sampled)`` and ``FULL_SOFTMAX_MAX_ITEMS``
    What ``loss="auto"`` means for a model: the full softmax up to that many training items, a
    sampled softmax above it.

``bce_with_negatives(query, pos, neg, *, mask=None, reduction="mean")``
    SASRec's original binary loss: ``-log σ(<q, pos>) - Σ_k log(1 - σ(<q, neg_k>))`` with ``neg``
    ``(..., d)`` or ``(..., K, d)``; ``mask (...)`` marks valid positions.

All functions compute in float32 even under mixed precision (softmax over thousands of items in
half precision loses the small logit differences that ranking depends on).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

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


#: ``loss="auto"`` trains with the full softmax up to this many training items and with a sampled
#: softmax above it. A full-softmax step costs (positions x items x dim), a sampled one (positions x
#: ~1.5k candidates x dim) whatever the catalogue. Measured (benchmarks/softmax_cost.py, two_tower
#: defaults, one CPU thread): the full step costs 1.7x the sampled one at 2k items, 3.6x at 10k,
#: 8.4x at 27k and 27x at 100k, so on ml-20m-shaped data (27k items) a full-softmax epoch takes
#: hours on 2 cores where the sampled one takes minutes. Quality (benchmarks/softmax_quality.py,
#: ml-latest-small, 9.7k items, validation NDCG@10, 3 seeds): the sampled loss is level with the full
#: one there (two_tower .0581 vs .0575, SASRec .0595 vs .0617), so the full softmax is kept where it
#: is affordable and every shared dataset (all under 10k items) keeps the loss its defaults were
#: tuned with; 20k items is where a full step already costs ~6x a sampled one.
FULL_SOFTMAX_MAX_ITEMS = 20_000


def resolve_loss(loss: str, n_train_items: int, *, full: str, sampled: str) -> str:
    """The loss a model trains with: ``loss`` itself, or for ``"auto"`` ``full`` when the training
    catalogue has at most :data:`FULL_SOFTMAX_MAX_ITEMS` items and ``sampled`` above it."""
    if loss != "auto":
        return loss
    return full if n_train_items <= FULL_SOFTMAX_MAX_ITEMS else sampled


def log_frequency(counts: np.ndarray) -> Tensor:
    """Log training frequency per item from interaction ``counts`` (the logQ that
    :func:`mixed_negatives` scales; items never seen get log(1e-12), never -inf)."""
    c = np.asarray(counts, dtype=np.float64)
    return torch.from_numpy(np.log(np.maximum(c, 1e-12) / max(float(c.sum()), 1.0))).float()


def mixed_negatives(
    pos_ids: Tensor,
    pool: Tensor,
    log_freq: Tensor | None,
    *,
    in_batch: int,
    uniform: int,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Shared negatives for a sampled softmax: in-batch positives plus uniform draws, with logQ.

    The in-batch part is the positives of up to ``in_batch`` randomly chosen rows (0: every row), so
    items come in proportion to their training frequency; ``uniform`` items are drawn uniformly from
    ``pool`` (training items). Returns ``(candidate_ids, candidate_logq, pos_logq)``: the candidates
    sorted and distinct (what :func:`info_nce` masks accidental hits in by binary search) and, when
    ``log_freq`` (log training frequency per item) is given, each candidate's and each positive's
    log expected number of draws under the mixture of both samplers, for the logQ correction.
    """
    sampled = pos_ids
    if in_batch and len(pos_ids) > in_batch:
        sampled = pos_ids[torch.randperm(len(pos_ids), device=pos_ids.device)[:in_batch]]
    draws = [sampled]
    if uniform:
        draws.append(pool[torch.randint(len(pool), (uniform,), device=pool.device)])
    cand = torch.unique(torch.cat(draws))
    if log_freq is None:
        return cand, None, None
    log_q = log_freq + math.log(max(len(sampled), 1))
    if uniform:
        log_q = torch.logaddexp(log_q, log_q.new_tensor(math.log(uniform / len(pool))))
    return cand, log_q[cand], log_q[pos_ids]


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
    # logits are scaled by scaling the (B, d) queries, and a logQ correction of shared candidates
    # rides in the same matrix product as one extra column: the (B, N) logit matrices, the big
    # tensors on a large batch, are then written once and read by one logsumexp (the per-element
    # divisions, subtractions and concatenations they used to get cost more than the product)
    q = query.float() / temperature
    p = pos.float()
    b = q.shape[0]
    pos_logit = (q * p).sum(-1)  # (B,)
    if logq is not None:
        # the positive was also "sampled" with probability q: correct it like the other columns
        pos_logit = pos_logit - logq.float()
    lse_blocks: list[Tensor] = [pos_logit]
    if in_batch:
        # the diagonal is each row's positive; rows sharing a positive item are accidental hits
        if mask_accidental_hits and pos_ids is not None:
            rows, cols = torch.nonzero(pos_ids.unsqueeze(1) == pos_ids.unsqueeze(0), as_tuple=True)
        else:
            rows = cols = torch.arange(b, device=q.device)
        lse_blocks.append(_masked_lse(*_with_logq(q, p, logq), rows, cols))
    if candidates is not None:
        c = candidates.float()
        if c.ndim == 2:
            clq = None if candidate_logq is None else candidate_logq.float()
            if clq is not None and clq.ndim != 1:
                raise ValueError(f"candidate_logq must be (N,) for shared candidates, got {tuple(clq.shape)}")
            if mask_accidental_hits and pos_ids is not None and candidate_ids is not None:
                rows, cols = _hits(pos_ids, candidate_ids)
            else:
                rows = cols = torch.zeros(0, dtype=torch.long, device=q.device)
            lse_blocks.append(_masked_lse(*_with_logq(q, c, clq), rows, cols))
        elif c.ndim == 3 and c.shape[0] == b:
            cand = torch.einsum("bd,bnd->bn", q, c)
            if candidate_logq is not None:
                clq = candidate_logq.float()
                cand = cand - (clq.unsqueeze(0) if clq.ndim == 1 else clq)
            if mask_accidental_hits and pos_ids is not None and candidate_ids is not None:
                cid = candidate_ids.unsqueeze(0) if candidate_ids.ndim == 1 else candidate_ids
                cand = cand.masked_fill(cid == pos_ids.unsqueeze(1), _MASKED)
            lse_blocks.append(torch.logsumexp(cand, dim=1))
        else:
            raise ValueError(f"candidates must be (N, d) or (B, N, d), got {tuple(c.shape)}")
    if hard_negatives is not None:
        if hard_negatives.ndim != 3 or hard_negatives.shape[0] != b:
            raise ValueError(f"hard_negatives must be (B, H, d), got {tuple(hard_negatives.shape)}")
        hard = torch.einsum("bd,bhd->bh", q, hard_negatives.float())
        if mask_accidental_hits and pos_ids is not None and hard_negative_ids is not None:
            hard = hard.masked_fill(hard_negative_ids == pos_ids.unsqueeze(1), _MASKED)
        lse_blocks.append(torch.logsumexp(hard, dim=1))
    loss = torch.logsumexp(torch.stack(lse_blocks, dim=1), dim=1) - pos_logit
    return _reduce(loss, None if weights is None else weights.float(), reduction)


def _with_logq(q: Tensor, items: Tensor, logq: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(q', items')`` with ``q' @ items'.T == q @ items.T - logq`` (logq as one extra column)."""
    if logq is None:
        return q, items
    return torch.cat([q, q.new_ones(q.shape[0], 1)], dim=1), torch.cat([items, -logq.unsqueeze(1)], dim=1)


def _hits(pos_ids: Tensor, candidate_ids: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, columns) where a candidate is the row's own positive (accidental hits).

    Candidates that are sorted and distinct (``torch.unique``'s output) match each row at most once,
    found by binary search instead of a (B, N) comparison.
    """
    cid = candidate_ids
    if len(cid) and bool((cid[1:] > cid[:-1]).all()):
        col = torch.searchsorted(cid, pos_ids).clamp(max=len(cid) - 1)
        rows = torch.nonzero(cid[col] == pos_ids).squeeze(1)
        return rows, col[rows]
    rows, cols = torch.nonzero(cid.unsqueeze(0) == pos_ids.unsqueeze(1), as_tuple=True)
    return rows, cols


class _MaskedLogSumExp(torch.autograd.Function):
    """``logsumexp(q @ items.T with [rows, cols] masked, dim=1)`` with a hand-written backward.

    The (B, N) logit matrix is the big tensor of a sampled softmax. Autograd's composition (matrix
    product, masking, logsumexp) writes it and its gradient several times; here it is written once,
    masked in place, and the backward turns it into the softmax and feeds both products.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # fp32 logits under autocast
    def forward(ctx: torch.autograd.function.FunctionCtx, q: Tensor, items: Tensor, rows: Tensor, cols: Tensor) -> Tensor:  # type: ignore[override]  # fmt: skip
        logits = q @ items.T
        if len(rows):
            logits[rows, cols] = _MASKED
        lse = torch.logsumexp(logits, dim=1)
        ctx.save_for_backward(q, items, logits, lse)
        return lse

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]  # fmt: skip
        q, items, logits, lse = ctx.saved_tensors  # type: ignore[attr-defined]
        prob = (logits - lse.unsqueeze(1)).exp_().mul_(grad.unsqueeze(1))  # masked entries -> 0
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]  # set by autograd at run time
        grad_q = prob @ items if needs[0] else None
        grad_items = prob.T @ q if needs[1] else None
        return grad_q, grad_items, None, None


def _masked_lse(q: Tensor, items: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    return _MaskedLogSumExp.apply(q, items, rows, cols)  # type: ignore[no-any-return]


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
