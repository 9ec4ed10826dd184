"""Long-term reward: a calibrated user simulator, RL policies over a base model's candidates, and OPE.

* :mod:`lmrec.rl.simulator`: the batched simulator (click model + satisfaction dynamics);
  :mod:`lmrec.rl.env`: the same as a ``gymnasium.Env`` (needs the ``rl`` extra).
* :mod:`lmrec.rl.calibrate`: building the simulator from data and a fitted base model.
* :mod:`lmrec.rl.policies`: greedy, logging, bandit, DQN and top-K-corrected REINFORCE policies.
* :mod:`lmrec.rl.ope`: IPS, SNIPS and doubly robust estimates with bootstrap CIs.
"""

from lmrec.rl.learners import DQNConfig, ReinforceConfig, train_dqn, train_reinforce
from lmrec.rl.ope import Estimate, estimate, fit_reward_model
from lmrec.rl.policies import (
    BanditPolicy,
    GreedyPolicy,
    MyopicPolicy,
    QPolicy,
    SoftmaxBasePolicy,
    SoftmaxPolicy,
    UniformPolicy,
    rollout,
)
from lmrec.rl.simulator import ClickModel, DynamicsConfig, Observation, Simulator, World

__all__ = [
    "BanditPolicy",
    "ClickModel",
    "DQNConfig",
    "DynamicsConfig",
    "Estimate",
    "GreedyPolicy",
    "MyopicPolicy",
    "Observation",
    "QPolicy",
    "ReinforceConfig",
    "Simulator",
    "SoftmaxBasePolicy",
    "SoftmaxPolicy",
    "UniformPolicy",
    "World",
    "estimate",
    "fit_reward_model",
    "rollout",
    "train_dqn",
    "train_reinforce",
]
