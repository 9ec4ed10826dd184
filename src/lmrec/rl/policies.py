"""Policies that pick one of the base model's candidates per step, and their training.

Every policy maps an :class:`~lmrec.rl.simulator.Observation` (a batch of users, ``N`` candidates
each) to next-item probabilities ``(B, N)``; acting fills a slate of ``obs.slate_size`` distinct
candidates and returns, per slate item, its probability under the policy's per-draw distribution
(the propensity the serving log, the top-K correction and off-policy evaluation need). Stochastic
policies draw the slate without replacement (Gumbel top-k, which for one item is an exact draw);
deterministic ones take their ``ranking`` top-k, each slot swapped for a random free candidate with
probability ε.

* :class:`GreedyPolicy`: the base model's top candidate (the myopic baseline).
* :class:`SoftmaxBasePolicy`: a softmax over the base scores mixed with uniform: the *logging*
  policy whose propensities the off-policy learners and estimators re-weight.
* :class:`BanditPolicy`: wraps :class:`lmrec.bandits.LinUCB` / :class:`~lmrec.bandits.LinearThompson`
  (features ``[scaled base score, item vector]``; they learn online from clicks).
* :class:`QPolicy`, trained by :func:`lmrec.rl.learners.train_dqn`: a value-based policy. ``Q(s, a) = MLP([state
  features, features of candidate a])``, one network shared by all candidates; a slate is the
  top-k items by ``Q`` and its value the mean of theirs (a slate-Q decomposition). Why hand-written and
  not stable-baselines3's DQN: SB3's Q-network outputs one value per *fixed* action index, but
  here the action set is a different list of items at every step, so the value must be a function
  of the candidate's features (as in SlateQ's item-wise Q, Ie et al. 2019), which SB3's DQN
  cannot express without a custom policy class larger than this loop. The algorithm is DQN as
  published (Mnih et al. 2015: replay buffer, target network) plus the double-DQN target.
* :class:`SoftmaxPolicy`, trained by :func:`lmrec.rl.learners.train_reinforce`: REINFORCE with the top-K off-policy
  correction (Chen et al., WSDM 2019) on *logged* trajectories with their propensities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from lmrec.bandits.base import LinearBandit, make_features
from lmrec.rl.simulator import CANDIDATE_FEATURES, STATE_FEATURES, Observation, Simulator, StepResult

N_INPUT = len(STATE_FEATURES) + len(CANDIDATE_FEATURES)


class Policy(Protocol):
    name: str

    def probabilities(self, obs: Observation) -> np.ndarray: ...

    def act(self, obs: Observation, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...

    def feedback(self, obs: Observation, actions: np.ndarray, result: StepResult) -> None: ...


def _sample(probs: np.ndarray, rng: np.random.Generator, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``k`` distinct draws per row of ``probs`` without replacement (Gumbel top-k: for ``k = 1`` an
    exact draw), and each drawn item's probability. Shapes ``(B, k)``."""
    with np.errstate(divide="ignore"):
        key = np.log(probs) + rng.gumbel(size=probs.shape)
    a = np.argsort(-key, axis=1, kind="stable")[:, :k]
    return a, np.take_along_axis(probs, a, 1)


def _epsilon_top(ranking: np.ndarray, k: int, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """``(B, k)`` positions: the ``k`` best by ``ranking``, each slot replaced with probability
    ``epsilon`` by a uniformly drawn candidate not yet in the slate."""
    order = np.argsort(-ranking, axis=1, kind="stable")
    if epsilon <= 0:
        return order[:, :k]
    b, n = ranking.shape
    out = np.empty((b, k), dtype=np.int64)
    taken = np.zeros((b, n), dtype=bool)
    rows = np.arange(b)
    for j in range(k):
        free_rank = np.where(taken[rows[:, None], order], n, np.arange(n))
        best = order[rows, free_rank.argmin(1)]
        rnd = _sample(np.where(taken, 0.0, 1.0) / np.maximum((~taken).sum(1, keepdims=True), 1), rng)[0][:, 0]
        out[:, j] = np.where(rng.random(b) < epsilon, rnd, best)
        taken[rows, out[:, j]] = True
    return out


class CandidatePolicy:
    """Acting by sampling slates from :meth:`probabilities`; no learning from feedback by default.

    Deterministic policies set ``stochastic = False`` and provide :meth:`ranking` (and ``epsilon``).
    """

    name = "policy"
    stochastic = True
    epsilon = 0.0

    def probabilities(self, obs: Observation) -> np.ndarray:
        raise NotImplementedError

    def ranking(self, obs: Observation) -> np.ndarray:
        """(B, N) what a deterministic policy's slate is the top of."""
        raise NotImplementedError

    def act(self, obs: Observation, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(B, slate_size)`` candidate positions and their propensities."""
        p = self.probabilities(obs)
        if self.stochastic:
            return _sample(p, rng, obs.slate_size)
        a = _epsilon_top(self.ranking(obs), obs.slate_size, self.epsilon, rng)
        return a, np.take_along_axis(p, a, 1)

    def feedback(self, obs: Observation, actions: np.ndarray, result: StepResult) -> None:
        return None


def _greedy_probabilities(ranking: np.ndarray, epsilon: float) -> np.ndarray:
    """``(1 − ε)·onehot(argmax) + ε/N``: the per-draw distribution of an ε-greedy policy."""
    p = np.zeros(ranking.shape)
    p[np.arange(len(p)), ranking.argmax(1)] = 1.0
    return (1 - epsilon) * p + epsilon / ranking.shape[1]


class GreedyPolicy(CandidatePolicy):
    """The base model's best candidates (candidates arrive in current base-model order)."""

    name = "greedy"
    stochastic = False

    def ranking(self, obs: Observation) -> np.ndarray:
        return -np.broadcast_to(np.arange(obs.items.shape[1], dtype=np.float64), obs.items.shape)

    def probabilities(self, obs: Observation) -> np.ndarray:
        return _greedy_probabilities(self.ranking(obs), 0.0)


class MyopicPolicy(CandidatePolicy):
    """The likeliest clicks now: top of the click model's logit (a candidate feature)."""

    name = "myopic"
    stochastic = False

    def ranking(self, obs: Observation) -> np.ndarray:
        return obs.cand_feats[..., CANDIDATE_FEATURES.index("click_logit")]

    def probabilities(self, obs: Observation) -> np.ndarray:
        return _greedy_probabilities(self.ranking(obs), 0.0)


class UniformPolicy(CandidatePolicy):
    name = "uniform"

    def probabilities(self, obs: Observation) -> np.ndarray:
        return np.full(obs.items.shape, 1.0 / obs.items.shape[1])


class SoftmaxBasePolicy(CandidatePolicy):
    """``(1 − ε)·softmax(z / T) + ε/N`` over the base scores ``z`` (standardised within the list)."""

    name = "softmax_base"

    def __init__(self, temperature: float = 1.0, epsilon: float = 0.1) -> None:
        if temperature <= 0 or not 0 <= epsilon <= 1:
            raise ValueError(f"need temperature > 0 and epsilon in [0, 1], got {temperature}, {epsilon}")
        self.temperature = temperature
        self.mix = epsilon

    def probabilities(self, obs: Observation) -> np.ndarray:
        s = obs.base_scores
        z = (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-9) / self.temperature
        e = np.exp(z - z.max(1, keepdims=True))
        n = s.shape[1]
        return (1 - self.mix) * e / e.sum(1, keepdims=True) + self.mix / n


class BanditPolicy(CandidatePolicy):
    """A :class:`~lmrec.bandits.base.LinearBandit` filling each slate, learning from clicks (the
    clicked item is a positive, the slate items above it negatives: the cascade says they were seen;
    a slate without a click makes every item a negative)."""

    def __init__(self, bandit: LinearBandit, item_vectors: np.ndarray) -> None:
        self.bandit = bandit
        self.item_vectors = np.asarray(item_vectors, dtype=np.float64)
        self.name = bandit.name

    def _features(self, obs: Observation, row: int) -> np.ndarray:
        return make_features(obs.base_scores[row], self.item_vectors[obs.items[row]])

    def probabilities(self, obs: Observation) -> np.ndarray:
        return np.stack([self.bandit.probabilities(self._features(obs, r)) for r in range(len(obs.items))])

    def act(self, obs: Observation, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k = obs.slate_size
        a = np.tile(np.arange(k, dtype=np.int64), (len(obs.items), 1))
        p = np.ones((len(obs.items), k))
        for r in np.flatnonzero(obs.alive):
            ranking = self.bandit.rank(self._features(obs, int(r)), k)
            a[r], p[r] = ranking.order[:k], ranking.propensities[:k]
        return a, p

    def feedback(self, obs: Observation, actions: np.ndarray, result: StepResult) -> None:
        actions = np.asarray(actions).reshape(len(obs.items), -1)
        for r in np.flatnonzero(obs.alive):
            x = self._features(obs, int(r))
            slot = int(result.clicked_slot[r])
            seen = actions.shape[1] if slot < 0 else slot + 1
            for j in range(seen):
                self.bandit.update(x[actions[r, j]], float(j == slot))


# ---------------------------------------------------------------------- learned policies
@dataclass
class Scaler:
    """Standardises ``[state, candidate]`` inputs with statistics of the training data."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, state: np.ndarray, cand: np.ndarray) -> Scaler:
        x = np.concatenate(
            [np.broadcast_to(state[:, None, :], (*cand.shape[:2], state.shape[1])), cand], axis=-1
        ).reshape(-1, N_INPUT)
        std = x.std(0)
        return cls(mean=x.mean(0), std=np.where(std > 1e-9, std, 1.0))

    def inputs(self, state: np.ndarray, cand: np.ndarray) -> torch.Tensor:
        """``(B, N, N_INPUT)`` float32 tensor."""
        x = np.concatenate(
            [np.broadcast_to(state[:, None, :], (*cand.shape[:2], state.shape[1])), cand], axis=-1
        )
        return torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))


def make_net(hidden: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_INPUT, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 1),
    )


class ScoredPolicy(CandidatePolicy):
    """A network scoring each (state, candidate) pair; subclasses turn scores into probabilities."""

    def __init__(self, net: torch.nn.Module, scaler: Scaler) -> None:
        self.net = net
        self.scaler = scaler

    @torch.no_grad()
    def scores(self, obs: Observation) -> np.ndarray:
        self.net.eval()
        return self.net(self.scaler.inputs(obs.state_feats, obs.cand_feats)).squeeze(-1).numpy()

    def exploring(self, obs: Observation, epsilon: float) -> np.ndarray:
        """``(1 − ε)·π + ε/N``, where ``π`` is the policy's own rule (DQN: its argmax; REINFORCE: its
        softmax): what the serving re-ranker draws each slot from."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors for safetensors (network weights plus the input scaler)."""
        out = {f"net.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}
        out["scaler.mean"] = torch.from_numpy(self.scaler.mean.astype(np.float64))
        out["scaler.std"] = torch.from_numpy(self.scaler.std.astype(np.float64))
        return out


class QPolicy(ScoredPolicy):
    """ε-greedy on the learned ``Q(s, a)`` (``epsilon`` gives every candidate a propensity); a slate
    is the top-k candidates by ``Q``."""

    name = "dqn"
    stochastic = False

    def __init__(self, net: torch.nn.Module, scaler: Scaler, epsilon: float = 0.0) -> None:
        super().__init__(net, scaler)
        self.epsilon = epsilon

    def ranking(self, obs: Observation) -> np.ndarray:
        return self.scores(obs)

    def exploring(self, obs: Observation, epsilon: float) -> np.ndarray:
        return _greedy_probabilities(self.scores(obs), epsilon)

    def probabilities(self, obs: Observation) -> np.ndarray:
        return self.exploring(obs, self.epsilon)


class SoftmaxPolicy(ScoredPolicy):
    """``softmax(score)``; ``greedy=True`` serves the top-k by score (propensity 1 for the first)."""

    name = "reinforce"

    def __init__(
        self, net: torch.nn.Module, scaler: Scaler, *, greedy: bool = True, epsilon: float = 0.0
    ) -> None:
        super().__init__(net, scaler)
        self.greedy = greedy
        self.epsilon = epsilon
        self.stochastic = not greedy

    def ranking(self, obs: Observation) -> np.ndarray:
        return self.scores(obs)

    def softmax(self, obs: Observation) -> np.ndarray:
        s = self.scores(obs)
        e = np.exp(s - s.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def exploring(self, obs: Observation, epsilon: float) -> np.ndarray:
        p = self.softmax(obs)
        return (1 - epsilon) * p + epsilon / p.shape[1]

    def probabilities(self, obs: Observation) -> np.ndarray:
        if self.greedy:
            return _greedy_probabilities(self.scores(obs), self.epsilon)
        return self.exploring(obs, self.epsilon)


# ---------------------------------------------------------------------- rollouts
@dataclass
class Trajectories:
    """Logged sessions, time-major: ``state (T, B, S)``, ``cand (T, B, N, F)``, the rest ``(T, B)``."""

    state: np.ndarray
    cand: np.ndarray
    action: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray
    click: np.ndarray
    alive: np.ndarray
    #: (T, B, N) true click probabilities (kept for OPE ground truth)
    click_prob: np.ndarray
    per_step: dict[str, Any] = field(default_factory=dict)

    def returns(self, gamma: float) -> np.ndarray:
        g = np.zeros_like(self.reward)
        acc = np.zeros(self.reward.shape[1])
        for t in range(len(self.reward) - 1, -1, -1):
            acc = self.reward[t] + gamma * acc
            g[t] = acc
        return g


def rollout(
    sim: Simulator,
    policy: Policy,
    users: np.ndarray,
    rng: np.random.Generator,
    *,
    batch_size: int = 256,
    record: bool = False,
) -> dict[str, Any]:
    """Run ``policy`` for one session per user. Returns per-user ``reward``/``clicks``/``length``,
    the per-step mean ``reward_curve`` (over all users, zero after they leave), ``first_ctr``, and
    with ``record=True`` the :class:`Trajectories`."""
    c = sim.config
    users = np.asarray(users)
    out_r, out_c, out_len, curve, first, trajs = [], [], [], np.zeros(c.horizon), [], []
    for start in range(0, len(users), batch_size):
        u = users[start : start + batch_size]
        obs = sim.reset(u, rng)
        tot_r, tot_c, length = np.zeros(len(u)), np.zeros(len(u)), np.zeros(len(u))
        rec: dict[str, list[np.ndarray]] = {
            k: [] for k in Trajectories.__dataclass_fields__ if k != "per_step"
        }
        while not sim.done:
            t = sim.t
            a, p = policy.act(obs, rng)
            res = sim.step(a, obs)
            policy.feedback(obs, a, res)
            if t == 0:
                first.append(res.click)
            if record:
                for k, v in (
                    ("state", obs.state_feats),
                    ("cand", obs.cand_feats),
                    ("action", a),
                    ("propensity", p),
                    ("reward", res.reward),
                    ("click", res.click),
                    ("alive", obs.alive),
                    ("click_prob", obs.click_prob),
                ):
                    rec[k].append(v)
            tot_r += res.reward
            tot_c += res.click
            length += obs.alive
            curve[t] += res.reward.sum()
            obs = sim.observe()
        out_r.append(tot_r)
        out_c.append(tot_c)
        out_len.append(length)
        if record:
            trajs.append(rec)
    result: dict[str, Any] = {
        "reward": np.concatenate(out_r),
        "clicks": np.concatenate(out_c),
        "length": np.concatenate(out_len),
        "reward_curve": curve / len(users),
        "first_ctr": float(np.concatenate(first).mean()),
    }
    if record:
        result["trajectories"] = _stack(trajs, c.horizon)
    return result


def _stack(parts: list[dict[str, list[np.ndarray]]], horizon: int) -> Trajectories:
    """Concatenate batches along users, padding early-ended batches to the horizon (dead rows)."""
    arrays: dict[str, Any] = {}
    for k in parts[0]:
        cols = []
        for rec in parts:
            a = np.stack(rec[k])
            if len(a) < horizon:
                pad = np.zeros((horizon - len(a), *a.shape[1:]), dtype=a.dtype)
                if k == "propensity":
                    pad += 1
                a = np.concatenate([a, pad])
            cols.append(a)
        arrays[k] = np.concatenate(cols, axis=1)
    return Trajectories(**arrays)


__all__ = [
    "BanditPolicy",
    "CandidatePolicy",
    "GreedyPolicy",
    "MyopicPolicy",
    "Policy",
    "QPolicy",
    "Scaler",
    "SoftmaxBasePolicy",
    "SoftmaxPolicy",
    "Trajectories",
    "UniformPolicy",
    "rollout",
]
