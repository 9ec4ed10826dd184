"""Per-record gradient norms of the local models' embedding tables for Opacus's ghost clipping.

DP-SGD clips each record's gradient, so Opacus needs the norm of every record's gradient. For an
``nn.Embedding`` its ghost-clipping norm sampler (``opacus.grad_sample.embedding_norm_sample``)
pairs every looked-up id with its record and sums the gradient rows of repeated pairs through
``torch.unique(..., dim=0)``; on CPU that one call was 40 % of a DP-SGD local update of the
two-tower model (19 of 50 s in a cProfile of ``benchmarks/federated_tune.py``).

Our records look up one id per table (a user) or two (the positive and the negative item), so the
norm has a closed form: with ``g_a`` the output gradient at a record's ``a``-th lookup and ``x_a`` its
id, the record's gradient on the table puts ``Σ_{a: x_a = r} g_a`` on row ``r``, and

    ‖grad‖² = Σ_a Σ_b [x_a = x_b] g_a · g_b

(for one lookup, ``‖g‖²``). :class:`RecordEmbedding` is an ``nn.Embedding`` that Opacus clips with
this formula (:func:`embedding_norm_sample`, registered for that class only, so Opacus's handling
of plain ``nn.Embedding`` elsewhere in a process is untouched). It is the same quantity Opacus
computes (a test compares the two); records with many lookups fall back to Opacus's own sampler,
since the formula costs ``lookups²`` per record.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

#: above this many lookups per record the pairwise formula gives way to Opacus's sampler
MAX_PAIRWISE = 16


class RecordEmbedding(nn.Embedding):
    """An ``nn.Embedding`` whose per-record gradient norm Opacus takes from :func:`embedding_norm_sample`
    (after :func:`register` has run); otherwise exactly ``nn.Embedding``."""


def embedding_norm_sample(
    layer: nn.Embedding, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[torch.Tensor, torch.Tensor]:
    """Each record's gradient norm on ``layer.weight``: ``activations[0]`` holds the ids a record
    looked up (first dimension: records), ``backprops`` the output gradients, ids' shape + (dim,)."""
    ids = activations[0]
    n = ids.shape[0]
    ids = ids.reshape(n, -1)
    lookups = ids.shape[1]
    if lookups > MAX_PAIRWISE:
        from opacus.grad_sample.embedding_norm_sample import compute_embedding_norm_sample

        return compute_embedding_norm_sample(layer, activations, backprops)  # type: ignore[no-any-return]
    grads = backprops.reshape(n, lookups, -1)
    if lookups == 1:
        return {layer.weight: torch.linalg.vector_norm(grads[:, 0], dim=1)}
    gram = grads @ grads.transpose(1, 2)  # (records, lookups, lookups): g_a · g_b
    same = ids[:, :, None] == ids[:, None, :]
    squared = (gram * same).sum((1, 2)).clamp_min(0.0)  # clamp: rounding on a zero gradient
    return {layer.weight: squared.sqrt()}


@functools.cache
def register() -> None:
    """Tell Opacus how to clip :class:`RecordEmbedding` (once per process; imports Opacus): the
    norm sampler above for ghost clipping, Opacus's own ``nn.Embedding`` per-sample gradient for the
    other modes."""
    from opacus.grad_sample.embedding import compute_embedding_grad_sample
    from opacus.grad_sample.utils import register_grad_sampler, register_norm_sampler

    register_grad_sampler(RecordEmbedding)(compute_embedding_grad_sample)
    register_norm_sampler(RecordEmbedding)(embedding_norm_sample)
