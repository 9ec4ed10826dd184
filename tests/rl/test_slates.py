"""Slates: several items per step, at most one click (cascade), repetition inside the slate, policies
that fill distinct slots, and learners that still find the long-term optimum."""

import numpy as np
import pytest
import torch

from lmrec.rl.learners import DQNConfig, ReinforceConfig, train_dqn, train_reinforce
from lmrec.rl.policies import (
    N_INPUT,
    GreedyPolicy,
    MyopicPolicy,
    QPolicy,
    Scaler,
    SoftmaxBasePolicy,
    UniformPolicy,
    make_net,
)
from lmrec.rl.simulator import CANDIDATE_FEATURES, Simulator
from lmrec.rl.synthetic import toy_dynamics, toy_world
from tests.rl.helpers import logged_sessions, session_value


def _sim(n_users=64, **dyn):
    world = toy_world(n_users=n_users, pool=80)
    return Simulator(world, toy_dynamics(**{"slate_size": 3, "pool_size": 80, **dyn}))


def test_a_sure_click_lands_on_the_first_slot_and_a_hopeless_slate_gets_none():
    for shift, want in ((50.0, 0), (-50.0, -1)):
        sim = _sim(click_shift=shift)
        obs = sim.reset(np.arange(64), np.random.default_rng(0))
        res = sim.step(np.tile([2, 0, 1], (64, 1)), obs)
        assert (res.clicked_slot == want).all()
        assert (res.click == (want >= 0)).all()
        if want == 0:  # the clicked item, slot 0 = candidate 2, joins the history
            assert (sim.hist[:, -1] == obs.items[:, 2]).all()


def test_position_decay_moves_clicks_to_the_top():
    sim = _sim(n_users=2000, click_shift=50.0, position_decay=0.01)
    obs = sim.reset(np.arange(2000) % 64, np.random.default_rng(1))
    res = sim.step(np.tile([0, 1, 2], (2000, 1)), obs)
    assert (res.clicked_slot == 0).all()  # slot 0 is examined for sure and clicked for sure


def test_at_most_one_click_and_the_cascade_rate():
    sim = _sim(n_users=4000)
    obs = sim.reset(np.arange(4000) % 64, np.random.default_rng(2))
    a = np.tile([0, 1, 2], (4000, 1))
    p = obs.click_prob[:, :3]
    res = sim.step(a, obs)
    assert set(np.unique(res.clicked_slot)) <= {-1, 0, 1, 2}
    want = 1 - np.prod(1 - p, axis=1)
    assert abs(res.click.mean() - want.mean()) < 0.03


def test_repeated_positions_are_shown_once():
    sim = _sim(n_users=4)
    obs = sim.reset(np.arange(4), np.random.default_rng(0))
    sim.step(np.tile([1, 1, 1], (4, 1)), obs)
    assert (sim.shown.sum(1) == 1).all()


def test_a_slate_of_look_alikes_costs_more_satisfaction_than_a_mixed_one():
    def sat(slate):
        sim = _sim(n_users=200, click_shift=-50.0, loss_noclick=0.0)
        obs = sim.reset(np.arange(200) % 64, np.random.default_rng(0))
        sim.step(np.tile(slate, (200, 1)), obs)
        return sim.sat.mean()

    # the toy pool alternates bait (even positions, near-identical) and diverse (odd) items
    assert sat([0, 2, 4]) < 0.8 < sat([0, 1, 3]) == pytest.approx(1.0)


def test_wrong_slate_shapes_are_refused():
    sim = _sim(n_users=4)
    obs = sim.reset(np.arange(4), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        sim.step(np.zeros((4, 2), dtype=int), obs)
    with pytest.raises(ValueError, match="n_candidates"):
        Simulator(toy_world(n_users=2), toy_dynamics(slate_size=7))


def test_policies_fill_distinct_slots():
    sim = _sim()
    obs = sim.reset(np.arange(64), np.random.default_rng(0))
    rng = np.random.default_rng(3)
    a, p = GreedyPolicy().act(obs, rng)
    assert (a == [0, 1, 2]).all() and a.shape == p.shape == (64, 3)
    a, _ = MyopicPolicy().act(obs, rng)
    logit = obs.cand_feats[..., CANDIDATE_FEATURES.index("click_logit")]
    assert (np.sort(np.take_along_axis(logit, a, 1), 1) == np.sort(logit, 1)[:, -3:]).all()
    torch.manual_seed(0)
    x = np.concatenate([obs.state_feats[:, None].repeat(6, 1), obs.cand_feats], -1).reshape(-1, N_INPUT)
    q = QPolicy(make_net(8, 0), Scaler(x.mean(0), x.std(0) + 1), epsilon=0.5)
    for pol in (UniformPolicy(), SoftmaxBasePolicy(), q):
        a, p = pol.act(obs, rng)
        assert a.shape == (64, 3) and all(len(set(r)) == 3 for r in a.tolist())
        assert ((p > 0) & (p <= 1)).all()


def test_one_item_draws_follow_the_probabilities():
    sim = Simulator(toy_world(n_users=4), toy_dynamics())
    obs = sim.reset(np.zeros(20_000, dtype=int), np.random.default_rng(0))
    pol = SoftmaxBasePolicy(temperature=0.5, epsilon=0.1)
    a, p = pol.act(obs, np.random.default_rng(5))
    want = pol.probabilities(obs)[0]
    freq = np.bincount(a[:, 0], minlength=6) / len(a)
    assert np.abs(freq - want).max() < 0.015
    assert np.allclose(p[:, 0], want[a[:, 0]])


@pytest.fixture(scope="module")
def slate_sim():
    torch.set_num_threads(1)
    return Simulator(toy_world(n_users=64, pool=60), toy_dynamics(slate_size=2, pool_size=60))


_value = session_value


def test_learners_beat_the_click_maximiser_with_slates(slate_sim):
    myopic = _value(slate_sim, MyopicPolicy())
    q = train_dqn(slate_sim, np.arange(64), DQNConfig(iterations=20, batch_users=32, gamma=0.9, hidden=64))
    logs = logged_sessions(slate_sim)
    assert logs.action.shape[-1] == 2
    pi = train_reinforce(logs, ReinforceConfig(epochs=30))
    assert _value(slate_sim, q) > 1.5 * myopic
    assert _value(slate_sim, pi) > 1.5 * myopic
