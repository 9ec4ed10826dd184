"""The clients' local update: the hand-written optimiser matches torch's, and accounting is Opacus's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lmrec.federated.local import LocalConfig, _PlainOptimizer, _TorchAdam, local_update


@pytest.mark.parametrize(("name", "wd"), [("adam", 0.0), ("adam", 0.01), ("sgd", 0.01)])
def test_plain_optimizer_matches_torch(name: str, wd: float) -> None:
    torch.manual_seed(0)
    ours = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(4))]
    theirs = [nn.Parameter(p.detach().clone()) for p in ours]
    config = LocalConfig(
        factors=3, learning_rate=0.05, regularization=wd, epochs=1, batch_size=4, optimizer=name
    )
    mine = _PlainOptimizer(ours, config)
    ref = (
        torch.optim.Adam(theirs, lr=0.05, weight_decay=wd)
        if name == "adam"
        else torch.optim.SGD(theirs, lr=0.05, weight_decay=wd)
    )
    for step in range(6):
        grads = [torch.randn_like(p) * (step + 1) for p in ours]
        for p, q, g in zip(ours, theirs, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        mine.step()
        ref.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours[0].detach(), torch.zeros(5, 3))


@pytest.mark.parametrize("wd", [0.0, 1e-5])
def test_dp_adam_is_torch_adam_bit_for_bit(wd: float) -> None:
    """The Adam that Opacus wraps (no torch._dynamo import) computes exactly torch's Adam: the DP
    runs' numbers are unchanged. Steps alternate zeroing and dropping the gradients, and one
    parameter gets none in some steps (torch then leaves it and its moments alone)."""
    torch.manual_seed(0)
    ours = [nn.Parameter(torch.randn(50, 3)), nn.Parameter(torch.randn(7))]
    theirs = [nn.Parameter(p.detach().clone()) for p in ours]
    start = ours[0].detach().clone()
    mine, ref = (
        _TorchAdam(ours, lr=0.006, weight_decay=wd),
        torch.optim.Adam(theirs, lr=0.006, weight_decay=wd),
    )
    for step in range(12):
        to_none = step % 2 == 0
        mine.zero_grad(to_none)
        ref.zero_grad(to_none)
        for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            if i == 1 and step % 3 == 0:
                continue
            g = torch.randn_like(p) * 10.0 ** (step % 4 - 2)
            p.grad = g.clone() if p.grad is None else p.grad.add_(g)
            q.grad = g.clone() if q.grad is None else q.grad.add_(g)
        mine.step()
        ref.step()
    for p, q in zip(ours, theirs, strict=True):
        assert torch.equal(p.detach(), q.detach())
        assert torch.equal(mine.state[p]["exp_avg_sq"], ref.state[q]["exp_avg_sq"])
    assert not torch.equal(ours[0].detach(), start)


def test_local_update_learns_a_preference() -> None:
    """Two users, four items: user 0 likes items 0-1, user 1 items 2-3; after training each user
    scores their own items above the others."""
    rng = np.random.default_rng(0)
    users = rng.standard_normal((2, 4)).astype(np.float32) * 0.1
    items = rng.standard_normal((4, 5)).astype(np.float32) * 0.1
    u = np.repeat([0, 0, 1, 1], 8)
    i = np.repeat([0, 1, 2, 3], 8)
    config = LocalConfig(factors=4, learning_rate=0.05, regularization=0.0, epochs=30, batch_size=8)
    res = local_update(items, users, u, i, config, rng)
    scores = res.users @ res.items[:, :-1].T + res.items[:, -1]
    assert scores[0, :2].min() > scores[0, 2:].max() and scores[1, 2:].min() > scores[1, :2].max()
    assert res.loss < np.log(2)


def test_alphas_are_opacus_defaults() -> None:
    pytest.importorskip("opacus")
    from opacus.accountants import RDPAccountant

    from lmrec.federated.accounting import ALPHAS, epsilon, noise_for

    assert [float(a) for a in RDPAccountant.DEFAULT_ALPHAS] == ALPHAS
    # the cached per-step RDP gives Opacus's accountant's ε exactly
    acc = RDPAccountant()
    acc.history = [(1.3, 0.05, 700)]
    assert epsilon(1.3, 0.05, 700, 1e-3) == pytest.approx(acc.get_epsilon(1e-3, alphas=ALPHAS), rel=1e-9)
    # the noise the search returns meets the target, and a little less noise would not
    z = noise_for(4.0, 1e-3, 0.1, 200)
    assert epsilon(z, 0.1, 200, 1e-3) <= 4.0 < epsilon(0.95 * z, 0.1, 200, 1e-3)


def test_dp_record_batches_are_opacus_poisson_draws_fetched_at_once() -> None:
    """The batched record dataset gives the very batches a TensorDataset would, empty ones included."""
    from opacus.data_loader import DPDataLoader
    from torch.utils.data import DataLoader, TensorDataset

    from lmrec.federated.local import _first, _RecordIndex

    def draws(loader: DataLoader) -> list[list[int]]:
        dp = DPDataLoader.from_data_loader(loader, generator=torch.Generator().manual_seed(3))
        return [b[0].tolist() for _ in range(4) for b in dp]

    plain = DataLoader(TensorDataset(torch.arange(40)), batch_size=3)
    batched = DataLoader(_RecordIndex(40), batch_size=3, collate_fn=_first)
    want = draws(plain)
    assert draws(batched) == want
    assert any(len(b) == 0 for b in want) and any(len(b) > 1 for b in want)
