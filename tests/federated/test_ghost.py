"""lmrec.federated.ghost: the closed-form per-record gradient norms equal Opacus's own and the true
per-record gradients', and DP-SGD uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.grad_sample.embedding_norm_sample import compute_embedding_norm_sample
from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import (
    GradSampleModuleFastGradientClipping,
)

from lmrec.federated import ghost
from lmrec.federated.ghost import RecordEmbedding, embedding_norm_sample, register
from lmrec.federated.local import LocalConfig, local_update
from lmrec.federated.tower import TowerLayout


def _true_norms(n_rows: int, ids: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Each record's gradient on the table, built densely, and its norm."""
    out = []
    for rec_ids, rec_grads in zip(
        ids.reshape(len(ids), -1), grads.reshape(len(ids), -1, grads.shape[-1]), strict=True
    ):
        dense = torch.zeros(n_rows, grads.shape[-1], dtype=grads.dtype)
        dense.index_add_(0, rec_ids, rec_grads)
        out.append(torch.linalg.vector_norm(dense))
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(64,), (64, 2), (64, 3), (5, 2, 2), (4, 20)])
def test_norms_equal_opacus_and_the_dense_gradients(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    layer = RecordEmbedding(6, 4)  # few rows: many records look up the same id twice
    ids = torch.randint(0, 6, shape, generator=gen)
    grads = torch.randn(*shape, 4, generator=gen, dtype=torch.float64)
    ours = embedding_norm_sample(layer, [ids], grads)[layer.weight]
    theirs = compute_embedding_norm_sample(layer, [ids], grads)[layer.weight]
    assert ours.shape == (shape[0],)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours, _true_norms(6, ids, grads))
    if len(shape) == 2 and shape[1] == 2:  # the (positive, negative) case hits repeated ids
        assert bool((ids[:, 0] == ids[:, 1]).any())


def test_a_zero_gradient_has_norm_zero_not_nan() -> None:
    layer = RecordEmbedding(3, 2)
    ids = torch.tensor([[1, 1], [0, 2]])
    grads = torch.tensor([[[1.0, 2.0], [-1.0, -2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out = embedding_norm_sample(layer, [ids], grads)[layer.weight]
    assert torch.equal(out, torch.zeros(2))


def test_registered_for_record_embedding_only() -> None:
    register()
    samplers = GradSampleModuleFastGradientClipping.NORM_SAMPLERS
    assert samplers[RecordEmbedding] is embedding_norm_sample
    assert samplers[torch.nn.Embedding] is not embedding_norm_sample


@pytest.mark.parametrize("tower", [False, True])
def test_dp_update_clips_with_the_closed_form(tower: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """DP-SGD on FedMF's and the tower's tables asks our sampler for every table's norms, and the
    update is the same whichever sampler computes them."""
    rng = np.random.default_rng(0)
    n_items, n_users, f = 30, 5, 4
    users = rng.normal(0, 0.1, (n_users, f)).astype(np.float32)
    u = rng.integers(0, n_users, 200)
    i = rng.integers(0, n_items, 200)
    cfg = LocalConfig(f, 0.01, 0.0, 1, 64, noise_multiplier=0.5, max_grad_norm=0.5)
    if tower:
        layout = TowerLayout(text_dim=8, n_items=n_items, factors=f, ids=True)
        items, extra = layout.init(0), (rng.normal(size=(n_items, 8)).astype(np.float32), layout)
    else:
        items, extra = rng.normal(0, 0.1, (n_items, f + 1)).astype(np.float32), None
    calls: list[int] = []

    def counting(layer, activations, backprops):  # type: ignore[no-untyped-def]
        calls.append(1)
        return embedding_norm_sample(layer, activations, backprops)

    register()
    monkeypatch.setitem(GradSampleModuleFastGradientClipping.NORM_SAMPLERS, RecordEmbedding, counting)
    ours = local_update(items, users, u, i, cfg, np.random.default_rng(1), extra)
    assert ours.steps > 0 and len(calls) == 2 * ours.steps  # users + items (or IDs), every step
    monkeypatch.setitem(
        GradSampleModuleFastGradientClipping.NORM_SAMPLERS, RecordEmbedding, compute_embedding_norm_sample
    )
    theirs = local_update(items, users, u, i, cfg, np.random.default_rng(1), extra)
    np.testing.assert_allclose(ours.items, theirs.items, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.users, theirs.users, rtol=1e-5, atol=1e-6)


def test_many_lookups_fall_back_to_opacus(monkeypatch: pytest.MonkeyPatch) -> None:
    import opacus.grad_sample.embedding_norm_sample as opacus_norms

    calls: list[int] = []

    def counting(layer, activations, backprops):  # type: ignore[no-untyped-def]
        calls.append(1)
        return compute_embedding_norm_sample(layer, activations, backprops)

    monkeypatch.setattr(opacus_norms, "compute_embedding_norm_sample", counting)
    layer = RecordEmbedding(6, 3)
    ids = torch.randint(0, 6, (8, 5), generator=torch.Generator().manual_seed(1))
    grads = torch.randn(8, 5, 3, generator=torch.Generator().manual_seed(2))
    embedding_norm_sample(layer, [ids], grads)
    assert calls == []
    monkeypatch.setattr(ghost, "MAX_PAIRWISE", 2)
    torch.testing.assert_close(
        embedding_norm_sample(layer, [ids], grads)[layer.weight], _true_norms(6, ids, grads)
    )
    assert calls == [1]
