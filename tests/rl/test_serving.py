"""``policy: "rl"`` in /recommend: slots filled by a saved RL policy, propensities logged."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.models.ease import EASE
from tests.rl.helpers import saved_toy_policy
from tests.serving.conftest import AUTH, Served, _read_mls


@pytest.fixture(scope="module")
def served(tmp_path_factory, data_home):
    tmp = tmp_path_factory.mktemp("rl-serve")
    ratings, _movies = _read_mls(data_home)
    popular = ratings.group_by("item_id").len().filter(pl.col("len") >= 60)["item_id"]
    ratings = ratings.filter(pl.col("item_id").is_in(popular.implode()))
    EASE(l2=100.0).fit(Dataset.from_frames(ratings, name="mls-rl")).save(tmp / "model")
    saved_toy_policy(tmp / "rl")
    s = Served(tmp / "model", tmp / "events.db", rl_policy=str(tmp / "rl"), epsilon=0.1)
    yield s
    s.close()


def test_rl_policy_fills_the_list_and_logs_propensities(served):
    r = served.client.post("/recommend", json={"user_id": 1, "k": 8, "policy": "rl"}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["policy"] == "rl" and body["explored"]
    ids = [it["item_id"] for it in body["items"]]
    assert len(ids) == len(set(ids)) == 8
    props = [it["propensity"] for it in body["items"]]
    assert all(0.1 / 6 <= p <= 1 for p in props)  # ε = 0.1 over 6 candidates at least
    served.state.store.flush()
    imp = list(served.state.store.impressions())[-1]
    assert imp.policy == "rl" and imp.propensities == pytest.approx(props, rel=1e-5)
    assert len(imp.candidates) == served.state.config.candidates


def test_off_policy_estimates_read_rl_lists_from_the_serving_log(served):
    from lmrec.bandits import UniformPolicy, decisions_from_log
    from lmrec.rl.ope import estimate_logged

    st = served.state
    for user in (2, 3, 4, 5):
        body = served.client.post(
            "/recommend", json={"user_id": user, "k": 5, "policy": "rl"}, headers=AUTH
        ).json()
        ev = {
            "user_id": user,
            "item_id": body["items"][0]["item_id"],
            "event": "click",
            "request_id": body["request_id"],
        }
        assert served.client.post("/feedback", json=ev, headers=AUTH).status_code == 200
    st.store.flush()
    vectors = lambda ids: st.features[st.model.item_vocab.indices(ids)]  # noqa: E731
    decisions = decisions_from_log(st.store, vectors)
    assert len(decisions) >= 20 and sum(d.reward for d in decisions) >= 4
    uniform = UniformPolicy()
    est = estimate_logged(decisions, lambda x: uniform.probabilities(x), n_boot=50)
    assert all(np.isfinite(e.value) and e.ci_low <= e.ci_high for e in est.values())


def test_rl_without_a_policy_is_refused(serve_plain):
    r = serve_plain.client.post("/recommend", json={"user_id": 1, "k": 5, "policy": "rl"}, headers=AUTH)
    assert r.status_code == 400 and "--rl-policy" in r.json()["detail"]


@pytest.fixture()
def serve_plain(served, tmp_path):
    s = Served(served.artifact, tmp_path / "e.db")
    yield s
    s.close()


def test_slate_policy_fills_the_list_a_slate_at_a_time():
    from lmrec.rl.learners import ReinforceConfig, train_reinforce
    from lmrec.rl.policies import SoftmaxBasePolicy, rollout
    from lmrec.rl.serving import RLReranker
    from lmrec.rl.simulator import Simulator
    from lmrec.rl.synthetic import toy_dynamics, toy_world
    from lmrec.serving.pipeline import Ranked

    world = toy_world(n_users=16, pool=80)
    sim = Simulator(world, toy_dynamics(slate_size=3, pool_size=80))
    logs = rollout(sim, SoftmaxBasePolicy(), np.arange(16), np.random.default_rng(0), record=True)
    pi = train_reinforce(logs["trajectories"], ReinforceConfig(epochs=2, hidden=8))
    rr = RLReranker(pi, sim.config, world.click_model, epsilon=0.1)
    pool = world.pools[0, :30]
    ranked = Ranked(pool=pool, scores=world.pool_scores[0, :30], order=np.arange(7), propensities=np.ones(7))
    unit = world.item_vectors / np.linalg.norm(world.item_vectors, axis=1, keepdims=True)
    out = rr.rerank(ranked, unit, 7, history=np.arange(5), popularity=world.popularity)
    assert len(set(out.order.tolist())) == 7 and out.policy == "rl"
    assert ((out.propensities >= 0.1 / 6) & (out.propensities <= 1)).all()
