import numpy as np
import pytest
import torch

from lmrec.rl.learners import (
    DQNConfig,
    ReinforceConfig,
    reinforce_loss,
    topk_correction,
    train_dqn,
    train_reinforce,
)
from lmrec.rl.policies import MyopicPolicy
from lmrec.rl.simulator import Simulator
from lmrec.rl.synthetic import toy_dynamics, toy_world
from tests.rl.helpers import logged_sessions, session_value


@pytest.fixture(scope="module")
def sim():
    torch.set_num_threads(1)
    return Simulator(toy_world(n_users=64), toy_dynamics())


_value = session_value


def test_dqn_beats_the_click_maximiser_where_clicks_cause_churn(sim):
    myopic = _value(sim, MyopicPolicy())
    q = train_dqn(sim, np.arange(64), DQNConfig(iterations=20, batch_users=32, gamma=0.9, hidden=64))
    learned = _value(sim, q)
    # the known optimum mixes diverse items in (about 10 per session); bait-only gets about 2.6
    assert learned > 2.0 * myopic
    assert learned > 8.0


def test_off_policy_reinforce_beats_the_click_maximiser(sim):
    myopic = _value(sim, MyopicPolicy())
    logs = logged_sessions(sim)
    pi = train_reinforce(logs, ReinforceConfig(epochs=30))
    assert _value(sim, pi) > 2.0 * myopic


def test_topk_correction_is_the_derivative_of_appearing_in_k_draws():
    pi = torch.tensor([0.1, 0.5, 0.9], requires_grad=True)
    k = 3
    (1 - (1 - pi) ** k).sum().backward()
    assert torch.allclose(topk_correction(pi.detach(), k), pi.grad)
    assert torch.equal(topk_correction(pi.detach(), 1), torch.ones(3))


def test_importance_weight_is_capped_and_not_differentiated():
    scores = torch.zeros(2, 4, requires_grad=True)
    loss = reinforce_loss(
        scores,
        torch.tensor([0, 1]),
        torch.tensor([0.25, 1e-6]),
        torch.tensor([1.0, 1.0]),
        top_k=1,
        weight_cap=2.0,
        entropy=0.0,
    )
    loss.backward()
    # row 0: weight π/β = 1; row 1: 0.25/1e-6 capped at 2; grad of -w·log softmax = -w·(onehot - π) / 2
    expected = -torch.tensor([[0.75, -0.25, -0.25, -0.25], [-0.5, 1.5, -0.5, -0.5]]) / 2
    assert torch.allclose(scores.grad, expected)
