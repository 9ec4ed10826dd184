"""The shared losses against hand-written references."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmrec.nn.losses import bce_with_negatives, full_softmax_ce, info_nce, sampled_softmax

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine


def _data(b: int = 5, n: int = 4, d: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g), torch.randn(n, d, generator=g)


def test_info_nce_matches_reference() -> None:
    q, p, c = _data()
    tau = 0.5
    logits = torch.cat([q @ p.T, q @ c.T], dim=1) / tau  # positive of row i is column i
    ref = F.cross_entropy(logits, torch.arange(5))
    torch.testing.assert_close(info_nce(q, p, c, temperature=tau), ref)


def test_accidental_hits_are_masked() -> None:
    q, p, c = _data()
    p[1] = p[0]  # rows 0 and 1 share the positive item
    ids = torch.tensor([7, 7, 1, 2, 3])
    cand_ids = torch.tensor([1, 8, 9, 10])  # candidate 0 is row 2's positive
    per_row = info_nce(q, p, c, pos_ids=ids, candidate_ids=cand_ids, reduction="none")
    # row 0: its negatives are rows 2..4 and all candidates (row 1 is the same item)
    logits0 = torch.cat([q[0:1] @ p[0:1].T, q[0:1] @ p[2:].T, q[0:1] @ c.T], dim=1)
    torch.testing.assert_close(per_row[0], torch.logsumexp(logits0, 1)[0] - logits0[0, 0])
    # row 2: candidate 0 is its own item and is dropped
    logits2 = torch.cat([q[2:3] @ p[2:3].T, q[2:3] @ p[[0, 1, 3, 4]].T, q[2:3] @ c[1:].T], dim=1)
    torch.testing.assert_close(per_row[2], torch.logsumexp(logits2, 1)[0] - logits2[0, 0])


def test_logq_correction() -> None:
    q, p, c = _data()
    plain = info_nce(q, p, c, temperature=0.3)
    const = info_nce(
        q, p, c, temperature=0.3, logq=torch.full((5,), -2.0), candidate_logq=torch.full((4,), -2.0)
    )
    torch.testing.assert_close(plain, const)  # a uniform sampler needs no correction
    # a popular in-batch item (high logq) is penalised less as a negative
    logq = torch.tensor([0.0, -5.0, -5.0, -5.0, -5.0])
    per_row = info_nce(q, p, temperature=1.0, logq=logq, reduction="none")
    logits = q @ p.T - logq.unsqueeze(0)
    torch.testing.assert_close(per_row, F.cross_entropy(logits, torch.arange(5), reduction="none"))


def test_sampled_softmax_per_row_negatives() -> None:
    q, p, _ = _data()
    neg = torch.randn(5, 6, 3, generator=torch.Generator().manual_seed(3))
    logits = torch.cat([(q * p).sum(-1, keepdim=True), torch.einsum("bd,bnd->bn", q, neg)], dim=1)
    torch.testing.assert_close(
        sampled_softmax(q, p, neg), F.cross_entropy(logits, torch.zeros(5, dtype=torch.long))
    )
    weights = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    per_row = F.cross_entropy(logits, torch.zeros(5, dtype=torch.long), reduction="none")
    torch.testing.assert_close(sampled_softmax(q, p, neg, weights=weights), per_row[[0, 2, 4]].mean())


def test_full_softmax_ce_ignore_and_mask() -> None:
    g = torch.Generator().manual_seed(0)
    q, items = torch.randn(2, 3, 4, generator=g), torch.randn(7, 4, generator=g)
    target = torch.tensor([[1, -100, 3], [0, 6, -100]])
    ref = F.cross_entropy((q @ items.T).reshape(-1, 7) / 0.2, target.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(full_softmax_ce(q, items, target, temperature=0.2), ref)
    mask = torch.ones(7, dtype=torch.bool)
    mask[5] = False
    logits = (q @ items.T).reshape(-1, 7)[target.reshape(-1) != -100][:, mask]
    tgt = torch.tensor([1, 3, 0, 5])  # item 6 is column 5 once item 5 is gone
    torch.testing.assert_close(
        full_softmax_ce(q, items, target, item_mask=mask), F.cross_entropy(logits, tgt)
    )
    empty = full_softmax_ce(q, items, torch.full((2, 3), -100))
    assert empty.item() == 0.0


def test_bce_with_negatives() -> None:
    q, p, _ = _data()
    neg = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(4))
    mask = torch.tensor([1, 1, 0, 1, 1], dtype=torch.bool)
    pos_l, neg_l = (q * p).sum(-1), torch.einsum("bd,bkd->bk", q, neg)
    ref = -(F.logsigmoid(pos_l) + F.logsigmoid(-neg_l).sum(-1))
    torch.testing.assert_close(bce_with_negatives(q, p, neg, mask=mask), ref[mask].mean())
    torch.testing.assert_close(
        bce_with_negatives(q, p, neg[:, 0]), (-(F.logsigmoid(pos_l) + F.logsigmoid(-neg_l[:, 0]))).mean()
    )


def test_losses_train_an_embedding() -> None:
    """Minimising info_nce pulls each query to its own positive (a learning check, not just shapes)."""
    torch.manual_seed(0)
    items = torch.nn.Parameter(torch.randn(20, 8) * 0.1)
    users = torch.nn.Parameter(torch.randn(20, 8) * 0.1)
    opt = torch.optim.Adam([items, users], lr=0.1)
    idx = torch.arange(20)
    for _ in range(60):
        opt.zero_grad()
        info_nce(users, items[idx], items[:5], temperature=0.1, pos_ids=idx, candidate_ids=idx[:5]).backward()
        opt.step()
    assert ((users @ items.T).argmax(1) == idx).float().mean() > 0.95


def test_info_nce_gradients_match_autograd_reference() -> None:
    """The hand-written backward of the masked logsumexp gives autograd's gradients."""
    g = torch.Generator().manual_seed(1)
    q = torch.randn(6, 4, generator=g, requires_grad=True)
    p = torch.randn(6, 4, generator=g, requires_grad=True)
    c = torch.randn(5, 4, generator=g, requires_grad=True)
    ids = torch.tensor([3, 3, 1, 9, 2, 7])
    cand_ids = torch.tensor([1, 2, 4, 8, 9])  # sorted and distinct: the binary-search path
    logq, clq = torch.randn(6, generator=g), torch.randn(5, generator=g)
    for flip in (False, True):  # sorted distinct ids (binary search), then unsorted (comparison)
        cid, cc, cl = (cand_ids.flip(0), c.flip(0), clq.flip(0)) if flip else (cand_ids, c, clq)
        got = info_nce(
            q, p, cc, temperature=0.2, pos_ids=ids, candidate_ids=cid, logq=logq, candidate_logq=cl
        )
        got_grads = torch.autograd.grad(got, (q, p, c))
        qs = q / 0.2
        inb = (qs @ p.T - logq).masked_fill(ids[:, None] == ids[None, :], -1e9)
        cand = (qs @ cc.T - cl).masked_fill(cid[None, :] == ids[:, None], -1e9)
        pos = (qs * p).sum(1) - logq
        ref = (torch.logsumexp(torch.cat([pos[:, None], inb, cand], 1), 1) - pos).mean()
        ref_grads = torch.autograd.grad(ref, (q, p, c))
        torch.testing.assert_close(got, ref)
        for a, b in zip(got_grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b)
