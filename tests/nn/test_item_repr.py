"""ItemRepresentation: token layout, fusion modes, ID dropout and cold items."""

from __future__ import annotations

import pytest
import torch

from lmrec.nn.item_repr import ItemRepresentation

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine


@pytest.fixture()
def text() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(6, 5)


@pytest.mark.parametrize("fusion", ["sum", "gate", "text_only", "id_only"])
def test_shapes_padding_and_all_items(text: torch.Tensor, fusion: str) -> None:
    rep = ItemRepresentation(6, 4, text, fusion=fusion, n_extra_tokens=1).eval()  # type: ignore[arg-type]
    assert rep.n_tokens == 8 and rep.item_offset == 1 and rep.mask_token == 7
    out = rep(torch.tensor([[0, 1, 6, 7]]))
    assert out.shape == (1, 4, 4)
    assert torch.all(out[0, 0] == 0), "padding must be an exact zero vector"
    assert out[0, 3].abs().sum() > 0, "the extra token has a learnable row"
    all_items = rep.all_items()
    assert all_items.shape == (6, 4)
    torch.testing.assert_close(all_items, rep(rep.to_tokens(torch.arange(6))))


def test_no_padding_layout(text: torch.Tensor) -> None:
    rep = ItemRepresentation(6, 4, text, padding_idx=None).eval()
    assert rep.item_offset == 0 and rep.n_tokens == 6
    torch.testing.assert_close(rep.all_items()[2], rep(torch.tensor(2)))


def test_text_fusion_needs_text() -> None:
    with pytest.raises(ValueError, match="needs text_embeddings"):
        ItemRepresentation(6, 4, None, fusion="sum")
    with pytest.raises(ValueError, match="shape"):
        ItemRepresentation(6, 4, torch.zeros(5, 3))
    rep = ItemRepresentation(6, 4, None, fusion="id_only")
    with pytest.raises(ValueError, match="no text path"):
        rep.text_only(torch.zeros(1, 3))


@pytest.mark.parametrize("fusion", ["sum", "gate"])
def test_unknown_items_are_text_only(text: torch.Tensor, fusion: str) -> None:
    known = torch.tensor([True, True, True, False, False, True])
    rep = ItemRepresentation(6, 4, text, fusion=fusion, padding_idx=None, known_items=known).eval()  # type: ignore[arg-type]
    out = rep.all_items()
    torch.testing.assert_close(out[3], rep.text_only(text[3]))
    assert not torch.allclose(out[0], rep.text_only(text[0])), "known items keep their ID part"
    assert "id_known" in rep.state_dict()


def test_id_dropout_only_in_training(text: torch.Tensor) -> None:
    torch.manual_seed(1)
    rep = ItemRepresentation(6, 4, text, id_dropout=0.5, padding_idx=None)
    text_only = rep.text_only(text)
    rep.train()
    dropped = (
        torch.stack([(rep.all_items() - text_only).abs().sum(-1) < 1e-6 for _ in range(200)]).float().mean()
    )
    assert 0.35 < dropped < 0.65, f"about half of the ID parts should be dropped, got {dropped:.2f}"
    rep.eval()
    assert torch.all((rep.all_items() - text_only).abs().sum(-1) > 1e-6)


def test_gradients_reach_projection_not_text(text: torch.Tensor) -> None:
    rep = ItemRepresentation(6, 4, text, fusion="gate")
    rep.all_items().sum().backward()
    assert rep.text_proj.weight.grad is not None and rep.id_embedding is not None
    assert rep.id_embedding.weight.grad is not None
    assert not rep.text_table.requires_grad
