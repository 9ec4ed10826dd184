"""One call from a dataset to a trained, saved RL policy (what ``lmrec rl train`` runs).

The simulator is calibrated on the dataset (:func:`lmrec.rl.calibrate.fit_simulator`), the policy is
trained on the *fit* users (DQN online in the simulator; REINFORCE on logging-policy sessions), and
the report gives its mean session reward against the greedy base model on the *validation* users.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lmrec.rl.artifact import save_policy
from lmrec.rl.calibrate import FittedSimulator, fit_simulator
from lmrec.rl.learners import DQNConfig, ReinforceConfig, train_dqn, train_reinforce
from lmrec.rl.policies import GreedyPolicy, ScoredPolicy, SoftmaxBasePolicy, rollout
from lmrec.rl.simulator import Simulator

Algo = Literal["reinforce", "dqn"]


@dataclass
class TrainedPolicy:
    policy: ScoredPolicy
    simulator: FittedSimulator
    algo: str
    hidden: int
    report: dict[str, Any]

    def save(self, path: str | os.PathLike[str]) -> Path:
        return save_policy(
            self.policy,
            path,
            kind=self.algo,
            hidden=self.hidden,
            dynamics=self.simulator.dynamics,
            click_model=self.simulator.world.click_model,
            report=self.report,
        )


def train_policy(
    data: Any,
    *,
    algo: Algo = "reinforce",
    model: Any = None,
    seed: int = 0,
    quick: bool = False,
    slate_size: int = 1,
    progress: bool = False,
) -> TrainedPolicy:
    """Calibrate a simulator on ``data`` and train an ``algo`` policy in it (``quick``: a coarse
    calibration grid and short training, for smoke tests). ``slate_size`` items are shown per step;
    a sequence ``model`` re-encodes the simulated histories after every click (:mod:`lmrec.rl.state`)."""
    if algo not in ("reinforce", "dqn"):
        raise ValueError(f"unknown algorithm {algo!r}; choose reinforce or dqn")
    grid: dict[str, Sequence[float]] | None = None
    if quick:
        grid = {"loss_noclick": (0.05,), "loss_repeat": (1.0,), "leave_base": (0.05,), "leave_slope": (0.1,)}
        grid["leave_spread"] = (2.0,)
    fitted = fit_simulator(
        data,
        model=model,
        grid=grid,
        seed=seed,
        max_group_users=60 if quick else None,
        slate_size=slate_size,
        progress=progress,
    )
    fit_u, valid_u, _ = fitted.groups
    sim = Simulator(fitted.world, fitted.dynamics)
    policy: ScoredPolicy
    if algo == "dqn":
        dcfg = DQNConfig(seed=seed, iterations=3 if quick else 25)
        policy, hidden = train_dqn(sim, fit_u, dcfg, progress=progress), dcfg.hidden
    else:
        rcfg = ReinforceConfig(seed=seed, epochs=2 if quick else 20, minibatch=8192)
        logs = rollout(
            sim, SoftmaxBasePolicy(1.0, 0.1), np.repeat(fit_u, 4), np.random.default_rng(seed), record=True
        )
        policy, hidden = train_reinforce(logs["trajectories"], rcfg, progress=progress), rcfg.hidden
    users = np.repeat(valid_u, 2)
    value = float(rollout(sim, policy, users, np.random.default_rng(seed + 999))["reward"].mean())
    greedy = float(rollout(sim, GreedyPolicy(), users, np.random.default_rng(seed + 999))["reward"].mean())
    report = {
        **fitted.report,
        "algo": algo,
        "seed": seed,
        "valid_reward": value,
        "valid_greedy_reward": greedy,
        "valid_ratio_vs_greedy": value / greedy if greedy else float("nan"),
    }
    return TrainedPolicy(policy, fitted, algo, hidden, report)


__all__ = ["TrainedPolicy", "train_policy"]
