"""The federated two-tower item tower without Flower: its packed layout, its local update (plain and
DP-SGD through Opacus) and the item table it computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmrec.federated.local import LocalConfig, local_update
from lmrec.federated.tower import TowerBPR, TowerLayout, centred, project, text_centre

N_ITEMS, TEXT_DIM, FACTORS = 6, 5, 3


def _text() -> np.ndarray:
    # items 0-2 and 3-5 have different texts apart from noise: the tower can tell the halves apart
    rng = np.random.default_rng(0)
    base = np.zeros((N_ITEMS, TEXT_DIM), np.float32)
    base[:3, 0], base[3:, 1] = 1.0, 1.0
    return base + rng.standard_normal((N_ITEMS, TEXT_DIM)).astype(np.float32) * 0.05


@pytest.mark.parametrize("ids", [False, True])
def test_packing_round_trips_and_the_table_is_text_projection_plus_ids(ids: bool) -> None:
    layout = TowerLayout(TEXT_DIM, N_ITEMS, FACTORS, ids=ids)
    packed = np.random.default_rng(1).standard_normal(layout.shape).astype(np.float32)
    text = _text()
    module = TowerBPR(np.zeros((2, FACTORS), np.float32), packed, text, layout)
    np.testing.assert_array_equal(module.packed(), packed)
    proj, id_rows = layout.split(packed)
    expected = text @ proj[:-1] + proj[-1] + (id_rows if ids else 0.0)
    np.testing.assert_allclose(layout.table(packed, text), expected, rtol=1e-5, atol=1e-6)
    assert packed.shape[0] == TEXT_DIM + 1 + (N_ITEMS if ids else 0)
    with pytest.raises(ValueError, match="shape"):
        layout.split(packed[1:])


def test_init_starts_items_where_their_text_puts_them() -> None:
    layout = TowerLayout(TEXT_DIM, N_ITEMS, FACTORS, ids=True)
    proj, ids = layout.split(layout.init(seed=3))
    assert ids is not None and not ids.any()  # no ID part yet
    assert not proj[-1].any() and not proj[:, -1].any()  # no bias row, no item bias
    assert proj[:-1, :-1].std() > 0


def test_text_centring_uses_the_fit_time_statistics() -> None:
    text = _text() + 3.0  # a large shared direction, as sentence encoders have
    centre, scale = text_centre(text)
    c = centred(text, centre, scale)
    np.testing.assert_allclose(c.mean(0), 0.0, atol=1e-6)
    assert np.linalg.norm(c, axis=1).mean() == pytest.approx(1.0, rel=1e-5)
    # a new item's vector goes through the same centre and scale, not its own
    np.testing.assert_allclose(centred(text[:1], centre, scale), c[:1], rtol=1e-6)


def _train(noise: float, ids: bool, epochs: int = 40) -> tuple[np.ndarray, np.ndarray, TowerLayout]:
    layout = TowerLayout(TEXT_DIM, N_ITEMS, FACTORS, ids=ids)
    rng = np.random.default_rng(0)
    users = rng.standard_normal((2, FACTORS)).astype(np.float32) * 0.1
    # user 0 takes items 0-1, user 1 items 3-4; items 2 and 5 are never seen (cold)
    u = np.repeat([0, 0, 1, 1], 8)
    i = np.repeat([0, 1, 3, 4], 8)
    config = LocalConfig(
        factors=FACTORS,
        learning_rate=0.05,
        regularization=0.0,
        epochs=epochs,
        batch_size=8,
        noise_multiplier=noise,
        max_grad_norm=1.0,
    )
    res = local_update(layout.init(1), users, u, i, config, rng, tower=(_text(), layout))
    assert res.items.shape == layout.shape and np.isfinite(res.items).all()
    return res.items, res.users, layout


@pytest.mark.parametrize("ids", [False, True])
def test_the_tower_learns_a_preference_that_reaches_cold_items(ids: bool) -> None:
    packed, users, layout = _train(0.0, ids)
    table = layout.table(packed, _text())
    scores = users @ table[:, :-1].T + table[:, -1]
    # each user prefers the never-seen item whose text is like their items' over the other cold item
    assert scores[0, 2] > scores[0, 5] and scores[1, 5] > scores[1, 2]
    # the text path alone (what places an item added later, which has no ID row) does it too
    proj, _ = layout.split(packed)
    text_only = project(_text(), proj)
    scores = users @ text_only[:, :-1].T + text_only[:, -1]
    assert scores[0, 2] > scores[0, 5] and scores[1, 5] > scores[1, 2]


def test_dp_sgd_trains_the_tower_through_opacus() -> None:
    pytest.importorskip("opacus")
    start = TowerLayout(TEXT_DIM, N_ITEMS, FACTORS, ids=True).init(1)
    packed, _, layout = _train(1.0, ids=True, epochs=2)
    proj, ids = layout.split(packed)
    p0, _ = layout.split(start)
    # noise reaches every federated entry, the cold items' ID rows included
    assert ids is not None and ids[[2, 5]].any() and not np.allclose(proj, p0)


def test_project_matches_the_torch_layer() -> None:
    layout = TowerLayout(TEXT_DIM, N_ITEMS, FACTORS, ids=False)
    packed = np.random.default_rng(2).standard_normal(layout.shape).astype(np.float32)
    module = TowerBPR(np.zeros((1, FACTORS), np.float32), packed, _text(), layout)
    with torch.no_grad():
        ours = module.proj(torch.from_numpy(_text())).numpy()
    np.testing.assert_allclose(project(_text(), packed), ours, rtol=1e-5, atol=1e-6)
