"""ItemRepresentation: token layout, fusion modes, ID dropout and cold items; the masked ID + text +
picture tower (``modalities``), modality dropout, appending items."""

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


# ---------------------------------------------------------------------------------- masked tower
def _masked(fusion: str = "gate", **kw: object) -> ItemRepresentation:
    torch.manual_seed(0)
    return ItemRepresentation(
        6,
        4,
        torch.randn(6, 5),
        fusion=fusion,  # type: ignore[arg-type]
        modalities=("id", "text", "image"),
        image_embeddings=torch.randn(6, 3),
        image_known=torch.tensor([True, True, True, False, False, False]),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("fusion", ["sum", "gate"])
def test_masked_fusion_uses_only_the_parts_an_item_has(fusion: str) -> None:
    rep = _masked(fusion).eval()
    with torch.no_grad():
        for g in getattr(rep, "gates", {}).values():  # a gate that is not an even mix
            torch.nn.init.normal_(g.weight)
        tokens = rep.to_tokens(torch.arange(6))
        ident = rep.id_embedding(tokens)  # type: ignore[misc]
        txt = rep.text_proj(rep.text_table[tokens])
        img = rep.image_proj(rep.image_table[tokens])
        out = rep.all_items()
        # items 3..5 have no picture: their vector ignores the picture row entirely
        rep.image_table[4:] += 10.0
        torch.testing.assert_close(rep.all_items()[3:], out[3:])
        if fusion == "sum":
            torch.testing.assert_close(out[:3], (ident + txt + img)[:3])
            torch.testing.assert_close(out[3:], (ident + txt)[3:])
        # a cold item (no ID) with only a picture is exactly its projected picture
        rep.set_known_items(torch.tensor([False] * 6))
        rep.set_content(torch.tensor([0]), text_known=torch.tensor([False]))
        torch.testing.assert_close(rep.all_items()[0], img[0])
        assert torch.equal(rep(torch.tensor([0])), torch.zeros(1, 4)), "padding is an exact zero"
        # text alone (a free-text query) goes through the text part
        torch.testing.assert_close(rep.text_only(rep.text_table[1]), txt[0])


def test_modality_dropout_keeps_a_part_and_only_trains() -> None:
    rep = _masked(id_dropout=0.9, modality_dropout=0.9)
    tokens = torch.arange(1, 7).repeat(200)
    rep.train()
    _, present = rep._parts(tokens, None)
    kept = torch.stack(present, -1)
    assert bool(kept.any(-1).all()), "every item keeps at least one part it has"
    assert not bool(kept[:, 2][tokens >= 4].any()), "items without a picture never get one"
    assert kept.float().mean() < 0.6, "parts are dropped while training"
    rep.eval()
    _, present = rep._parts(tokens, None)
    assert bool(torch.stack(present, -1)[:, :2].all()), "no dropout at inference"


def test_add_items_appends_cold_rows() -> None:
    rep = _masked().eval()
    before = rep.all_items().detach().clone()
    rep.add_items(2)
    assert rep.n_items == 8 and rep.n_tokens == 9 and rep.id_embedding.num_embeddings == 9  # type: ignore[union-attr]
    assert not rep.id_known[7:].any() and not rep.text_known[7:].any() and not rep.image_known[7:].any()
    rep.set_content(torch.tensor([7]), image=torch.ones(1, 3), image_known=torch.tensor([True]))
    after = rep.all_items().detach()
    torch.testing.assert_close(after[:6], before)
    torch.testing.assert_close(after[7], rep.image_proj(torch.ones(3)).detach())
    assert torch.equal(after[6], torch.zeros(4)), "an item with no part at all is a zero vector"


def test_masked_tower_arguments_are_checked(text: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="must be 'sum' or 'gate'"):
        ItemRepresentation(6, 4, text, fusion="id_only", modalities=("id",))
    with pytest.raises(ValueError, match="needs image_embeddings"):
        ItemRepresentation(6, 4, text, modalities=("id", "image"))
    with pytest.raises(ValueError, match="distinct values"):
        ItemRepresentation(6, 4, text, modalities=("id", "audio"))
    with pytest.raises(ValueError, match="modality_dropout must be in"):
        ItemRepresentation(6, 4, text, modalities=("id", "text"), modality_dropout=1.0)
    with pytest.raises(ValueError, match="need modalities"):
        ItemRepresentation(6, 4, text, image_embeddings=torch.randn(6, 3))
