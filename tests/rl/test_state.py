"""The state from the sequence encoder: histories re-encoded after every click."""

import numpy as np
import pytest

from lmrec.models.query import Query
from lmrec.models.sasrec import SASRec
from lmrec.rl.simulator import CANDIDATE_FEATURES, STATE_FEATURES, Simulator
from lmrec.rl.state import HistoryEncoder
from lmrec.rl.synthetic import toy_dynamics, toy_world
from tests.models.test_sasrec import chain_data, small


class MeanOfHistory:
    """A stand-in embedding model: the query vector is the mean of the last three history items."""

    def __init__(self, item_vectors: np.ndarray) -> None:
        self._items = item_vectors

    def item_vectors(self) -> np.ndarray:
        return self._items

    def query_vectors(self, batch) -> np.ndarray:
        return np.stack([self._items[s[-3:]].mean(0) for s in batch.sequences])


def test_encoder_matches_the_models_own_history_queries():
    data = chain_data(n_users=40)
    model = SASRec(**small(train={"max_epochs": 2})).fit(data)
    enc = HistoryEncoder(model, max_len=12)
    ids = [[3, 4, 5], [10, 11, 12, 13, 14]]
    got = enc.encode([model.item_vocab.indices(h) for h in ids])
    want = model.query_vectors(model.encode_queries([Query(history=h) for h in ids]))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="history item indices"):
        enc.encode([np.array([0, 10_000])])
    with pytest.raises(TypeError, match="embedding model"):
        HistoryEncoder(object())


def _encoded_sim(shift: float) -> Simulator:
    world = toy_world(n_users=8)
    world.encoder = HistoryEncoder(MeanOfHistory(world.item_vectors))
    # 30 candidates: the current scores rank all 20 bait items first, so diverse ones must fit too
    return Simulator(world, toy_dynamics(click_shift=shift, n_candidates=30, horizon=10))


def test_clicks_move_the_state_and_reorder_the_candidates():
    sim = _encoded_sim(50.0)  # every shown item is clicked
    obs = sim.reset(np.arange(8), np.random.default_rng(0))
    drift = STATE_FEATURES.index("seq_drift")
    seq = CANDIDATE_FEATURES.index("seq_score")
    assert np.allclose(obs.state_feats[:, drift], 0.0)
    # candidates arrive in the order of the current state's scores, which are the seq_score feature
    assert (np.diff(obs.cand_feats[..., seq], axis=1) <= 1e-12).all()
    np.testing.assert_allclose(obs.base_scores, obs.cand_feats[..., seq])
    for _ in range(3):  # show diverse items
        diverse = np.argmin(obs.cand_feats[..., CANDIDATE_FEATURES.index("hist_max_cos")], axis=1)
        sim.step(diverse, obs)
        obs = sim.observe()
    assert (obs.state_feats[:, drift] > 0.05).all()
    want = np.einsum("bd,bnd->bn", sim.state, sim.world.encoder.item_vectors[obs.items])
    np.testing.assert_allclose(obs.cand_feats[..., seq], want)
    # the user's taste, the click model's base score, did not move
    assert not np.allclose(obs.cand_feats[..., seq], obs.cand_feats[..., 0])


def test_no_click_leaves_the_state_alone():
    sim = _encoded_sim(-50.0)
    obs = sim.reset(np.arange(8), np.random.default_rng(0))
    start = sim.state.copy()
    sim.step(np.zeros(8, dtype=int), obs)
    obs = sim.observe()
    np.testing.assert_array_equal(sim.state, start)
    assert np.allclose(obs.state_feats[:, STATE_FEATURES.index("seq_drift")], 0.0)


def test_encoder_item_vectors_must_be_the_worlds():
    world = toy_world(n_users=2)
    with pytest.raises(ValueError, match="sequence model"):
        type(world)(
            world.item_vectors,
            world.popularity,
            world.user_vectors,
            world.histories,
            world.pools,
            world.pool_scores,
            world.click_model,
            HistoryEncoder(MeanOfHistory(world.item_vectors[:, :3])),
        )
