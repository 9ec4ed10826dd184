"""A small REINFORCE policy trained on the toy world and saved, shared by the artifact and serving tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmrec.rl.artifact import save_policy
from lmrec.rl.learners import ReinforceConfig, train_reinforce
from lmrec.rl.policies import Policy, SoftmaxBasePolicy, SoftmaxPolicy, Trajectories, rollout
from lmrec.rl.simulator import Simulator
from lmrec.rl.synthetic import toy_dynamics, toy_world


def saved_toy_policy(folder: Path) -> tuple[SoftmaxPolicy, Simulator]:
    """Train REINFORCE for two epochs on 16 toy users' logged sessions and save it to ``folder``."""
    world = toy_world(n_users=16)
    sim = Simulator(world, toy_dynamics())
    logs = rollout(sim, SoftmaxBasePolicy(), np.arange(16), np.random.default_rng(0), record=True)
    pi = train_reinforce(logs["trajectories"], ReinforceConfig(epochs=2, hidden=8))
    save_policy(pi, folder, kind="reinforce", hidden=8, dynamics=sim.config, click_model=world.click_model)
    return pi, sim


def session_value(sim: Simulator, policy: Policy, n_users: int = 64) -> float:
    """Mean session reward of ``policy`` over 4 sessions of each of the first ``n_users`` users."""
    users = np.repeat(np.arange(n_users), 4)
    return float(rollout(sim, policy, users, np.random.default_rng(11))["reward"].mean())


def logged_sessions(sim: Simulator, n_users: int = 64) -> Trajectories:
    """8 sessions per user under an exploring logging policy (softmax base scores, ε 0.2)."""
    users = np.repeat(np.arange(n_users), 8)
    return rollout(sim, SoftmaxBasePolicy(epsilon=0.2), users, np.random.default_rng(2), record=True)[
        "trajectories"
    ]
