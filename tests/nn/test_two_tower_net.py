"""TwoTowerNet's training losses: "auto" picks by catalogue size; the sampled loss touches only the
items of its step and equals InfoNCE computed over the whole item tower."""

from __future__ import annotations

import math

import pytest
import torch

import lmrec.nn.losses as losses
from lmrec.models.two_tower import TwoTowerConfig
from lmrec.nn.losses import FULL_SOFTMAX_MAX_ITEMS, info_nce, resolve_loss
from lmrec.nn.two_tower import TwoTowerNet

torch.set_num_threads(1)


def test_resolve_loss_switches_above_the_threshold() -> None:
    kw = {"full": "full", "sampled": "sampled"}
    assert resolve_loss("auto", FULL_SOFTMAX_MAX_ITEMS, **kw) == "full"
    assert resolve_loss("auto", FULL_SOFTMAX_MAX_ITEMS + 1, **kw) == "sampled"
    assert resolve_loss("full", 10**7, **kw) == "full"  # an explicit choice is kept
    assert resolve_loss("sampled", 3, **kw) == "sampled"


def test_auto_is_the_default_and_resolves_on_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TwoTowerConfig(dim=8, n_heads=2, fusion="id_only", max_len=4)
    assert cfg.loss == "auto"
    assert TwoTowerNet(cfg, 50, None).loss == "full_softmax"
    monkeypatch.setattr(losses, "FULL_SOFTMAX_MAX_ITEMS", 49)
    assert TwoTowerNet(cfg, 50, None).loss == "sampled_softmax"


def _net(n_items: int, **params: object) -> TwoTowerNet:
    settings: dict[str, object] = {
        "dim": 8,
        "n_heads": 2,
        "max_len": 4,
        "dropout": 0.0,
        "id_dropout": 0.0,
        "shuffle_prob": 0.0,
        "n_negatives": 0,
        "in_batch_negatives": 0,
        "learn_temperature": False,
    }
    cfg = TwoTowerConfig(**{**settings, **params})
    torch.manual_seed(0)
    text = torch.randn(n_items, 6)
    return TwoTowerNet(cfg, n_items, text, loss="sampled_softmax", item_log_freq=torch.randn(n_items))


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tokens = torch.tensor([[0, 3, 7, 2], [5, 9, 1, 4]])  # item + 1; 0 = padding
    targets = torch.tensor([[-100, 6, 1, 8], [8, 0, 3, 11]])
    return tokens, targets, torch.tensor([0, 1])


def test_sampled_loss_equals_info_nce_over_the_whole_item_tower() -> None:
    net = _net(40).eval()  # eval: no ID dropout, so both computations see the same item vectors
    tokens, targets, users = _batch()
    got = net._sampled_loss(tokens, targets, users, None)
    inputs = net._item_inputs()
    items_out = net.item_outputs(inputs)
    keep = targets >= 0
    q = net._user_states(inputs[tokens], tokens > 0, users)[keep]
    pos_ids = targets[keep]
    cand = torch.unique(pos_ids)
    want = info_nce(
        q,
        items_out[pos_ids],
        items_out[cand],
        temperature=net.temperature,
        in_batch=False,
        pos_ids=pos_ids,
        candidate_ids=cand,
        # logQ: log of the expected draws, len(pos_ids) in-batch draws ~ training frequency
        logq=net.item_log_freq[pos_ids] + math.log(len(pos_ids)),
        candidate_logq=net.item_log_freq[cand] + math.log(len(pos_ids)),
    )
    assert math.isclose(got.item(), want.item(), rel_tol=1e-5)


def test_sampled_step_touches_only_its_items() -> None:
    net = _net(1_000).train()
    tokens, targets, users = _batch()
    net._sampled_loss(tokens, targets, users, None).backward()
    grad = net.items.id_embedding.weight.grad  # type: ignore[union-attr]
    assert grad is not None
    touched_rows = torch.nonzero(grad.abs().sum(1)).flatten()
    items = set(((tokens[tokens > 0]) - 1).tolist()) | set(targets[targets >= 0].tolist())
    # token rows are item + 1; nothing outside the step's items gets a gradient
    assert set((touched_rows - 1).tolist()) <= items
    assert len(touched_rows) > 0


def test_in_batch_negatives_cap_bounds_the_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _net(1_000, in_batch_negatives=2)
    seen: dict[str, int] = {}
    real = info_nce

    def spy(*args: object, **kw: object) -> torch.Tensor:
        seen["candidates"] = len(kw["candidate_ids"])  # type: ignore[arg-type]
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("lmrec.nn.two_tower.info_nce", spy)
    tokens, targets, users = _batch()
    net._sampled_loss(tokens, targets, users, None)
    assert 1 <= seen["candidates"] <= 2
