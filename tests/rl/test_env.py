import numpy as np
import pytest

pytest.importorskip("gymnasium")
from gymnasium.utils.env_checker import check_env

from lmrec.rl.env import RecSimEnv
from lmrec.rl.simulator import CANDIDATE_FEATURES, DynamicsConfig, Simulator
from lmrec.rl.synthetic import toy_dynamics, toy_world


def test_env_follows_gymnasium_api():
    env = RecSimEnv(toy_world(n_users=4), toy_dynamics())
    check_env(env, skip_render_check=True)


def test_episode_ends_by_leaving_or_at_horizon():
    env = RecSimEnv(toy_world(n_users=4), toy_dynamics(horizon=7))
    obs, info = env.reset(seed=3)
    assert obs.shape == env.observation_space.shape
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(0)
        assert reward == pytest.approx(float(info["click"]) + 0.1 * (not terminated))
        steps += 1
        done = terminated or truncated
    assert steps <= 7
    assert truncated == (steps == 7 and not terminated)


def _satisfaction_after(pick, steps=3):
    sim = Simulator(toy_world(n_users=200), toy_dynamics())
    sim.reset(np.arange(200), np.random.default_rng(0))
    for _ in range(steps):
        obs = sim.observe()
        sim.step(pick(obs.cand_feats[..., CANDIDATE_FEATURES.index("hist_max_cos")]), obs)
    return sim.sat.mean()


def test_repetition_empties_satisfaction_and_diversity_keeps_it():
    bait = _satisfaction_after(lambda sim_to_history: sim_to_history.argmax(1))
    diverse = _satisfaction_after(lambda sim_to_history: sim_to_history.argmin(1))
    assert bait < 0.2 < 0.9 < diverse


def test_pool_must_cover_horizon():
    with pytest.raises(ValueError, match="pool_size"):
        Simulator(toy_world(n_users=2), DynamicsConfig(pool_size=30, horizon=20, n_candidates=20))


def test_slate_env_follows_gymnasium_api():
    env = RecSimEnv(toy_world(n_users=4, pool=80), toy_dynamics(slate_size=3, pool_size=80))
    check_env(env, skip_render_check=True)
    assert env.action_space.shape == (3,)
    env.reset(seed=0)
    _obs, _reward, _term, _trunc, info = env.step(np.array([0, 0, 1]))  # a repeat is shown once
    assert env.sim.shown.sum() == 2 and isinstance(info["click"], bool)
