"""HistoryEncoder: causal, padding-safe, and able to learn recency."""

from __future__ import annotations

import pytest
import torch

from lmrec.nn.towers import HistoryEncoder

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine


@pytest.mark.parametrize("kind", ["pool", "transformer"])
def test_causal_and_padding(kind: str) -> None:
    torch.manual_seed(0)
    enc = HistoryEncoder(8, 6, kind=kind).eval()  # type: ignore[arg-type]
    x = torch.randn(2, 5, 8)
    valid = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = enc(x, valid)
    assert out.shape == (2, 5, 8) and torch.isfinite(out).all()
    assert torch.all(out[1] == 0) and torch.all(out[0, :2] == 0), "no history -> zero vector"
    x2 = x.clone()
    x2[0, 4] += torch.randn(8)
    x2[0, 0] += torch.randn(8)  # padding content must not matter either
    out2 = enc(x2, valid)
    torch.testing.assert_close(out[0, :4], out2[0, :4])
    assert not torch.allclose(out[0, 4], out2[0, 4])
    torch.testing.assert_close(enc.encode_last(x, valid), out[:, -1])


def test_window_longer_than_max_len() -> None:
    with pytest.raises(ValueError, match="max_len"):
        HistoryEncoder(4, 3)(torch.zeros(1, 4, 4), torch.ones(1, 4, dtype=torch.bool))


@pytest.mark.parametrize("kind", ["pool", "transformer"])
def test_learns_to_copy_the_last_item(kind: str) -> None:
    """Target = most recent item: the encoder must learn to weight recency (it can fail)."""
    torch.manual_seed(0)
    n_items, dim, length = 30, 16, 6
    emb = torch.nn.Embedding(n_items, dim)
    enc = HistoryEncoder(dim, length, kind=kind, dropout=0.0)  # type: ignore[arg-type]
    opt = torch.optim.Adam([*emb.parameters(), *enc.parameters()], lr=0.03)
    valid = torch.ones(32, length, dtype=torch.bool)
    for _ in range(80):
        seq = torch.randint(0, n_items, (32, length))
        logits = enc.encode_last(emb(seq), valid) @ emb.weight.T
        loss = torch.nn.functional.cross_entropy(logits, seq[:, -1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    seq = torch.randint(0, n_items, (256, length))
    valid = torch.ones(256, length, dtype=torch.bool)
    acc = ((enc.encode_last(emb(seq), valid) @ emb.weight.T).argmax(1) == seq[:, -1]).float().mean()
    assert acc > 0.8, f"{kind}: accuracy {acc:.2f}"
