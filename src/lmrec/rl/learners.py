"""Training of the learned policies: DQN for :class:`~lmrec.rl.policies.QPolicy` and REINFORCE with
the top-K off-policy correction for :class:`~lmrec.rl.policies.SoftmaxPolicy` (see the module
docstring of :mod:`lmrec.rl.policies` for why they are written here rather than taken from an RL
library)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from lmrec.rl.policies import QPolicy, Scaler, SoftmaxPolicy, Trajectories, UniformPolicy, make_net, rollout
from lmrec.rl.simulator import CANDIDATE_FEATURES, STATE_FEATURES, Simulator


# ---------------------------------------------------------------------- DQN
class DQNConfig(BaseModel):
    """DQN hyperparameters (chosen on validation users; see benchmarks/longterm.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: discount of future rewards (0.95: an effective horizon of ~20 steps)
    gamma: float = Field(default=0.95, gt=0.0, le=1.0)
    hidden: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0.0)
    #: simulated users per rollout batch, and rollout batches
    batch_users: int = Field(default=64, ge=1)
    iterations: int = Field(default=40, ge=1)
    #: minibatch size, and gradient steps per environment step
    minibatch: int = Field(default=256, ge=1)
    updates_per_step: int = Field(default=1, ge=1)
    buffer: int = Field(default=100_000, ge=1)
    #: exploration: ε decays linearly from start to end over the iterations
    epsilon_start: float = Field(default=0.5, ge=0.0, le=1.0)
    epsilon_end: float = Field(default=0.05, ge=0.0, le=1.0)
    #: Polyak rate of the target network
    tau: float = Field(default=0.05, gt=0.0, le=1.0)
    seed: int = 0


def train_dqn(
    sim: Simulator,
    users: np.ndarray,
    config: DQNConfig | None = None,
    *,
    progress: bool = False,
    callback: Callable[[int, QPolicy], None] | None = None,
) -> QPolicy:
    """Train :class:`QPolicy` online in ``sim`` on sessions of ``users`` (double DQN, replay buffer).

    With slates (``slate_size > 1``) it learns the item-wise ``Q`` of a slate-Q decomposition: the
    slate's value is the mean of its items' ``Q``, regressed on the step's reward plus the discounted
    value of the next state's best slate (its top-k items by ``Q``), as in double DQN.
    """
    cfg = config or DQNConfig()
    rng = np.random.default_rng(cfg.seed)
    c = sim.config
    # scaler from a uniform-policy warm-up batch: inputs on a common scale before any learning
    warm = rollout(
        sim, UniformPolicy(), rng.choice(users, min(len(users), cfg.batch_users)), rng, record=True
    )
    tr = warm["trajectories"]
    scaler = Scaler.fit(tr.state[tr.alive], tr.cand[tr.alive])
    net = make_net(cfg.hidden, cfg.seed)
    target = make_net(cfg.hidden, cfg.seed)
    target.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    policy = QPolicy(net, scaler)
    n_s, n_f, n, k = len(STATE_FEATURES), len(CANDIDATE_FEATURES), c.n_candidates, c.slate_size
    cap = cfg.buffer
    buf = {
        "s": np.zeros((cap, n_s)),
        "c": np.zeros((cap, n, n_f)),
        "a": np.zeros((cap, k), dtype=np.int64),
        "r": np.zeros(cap),
        "s2": np.zeros((cap, n_s)),
        "c2": np.zeros((cap, n, n_f)),
        "d": np.zeros(cap),
    }
    size = ptr = 0
    bar = tqdm(range(cfg.iterations), desc="dqn", disable=not progress)
    for it in bar:
        frac = it / max(cfg.iterations - 1, 1)
        eps = cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start)
        obs = sim.reset(rng.choice(users, cfg.batch_users), rng)
        while not sim.done:
            live = np.flatnonzero(obs.alive)
            policy.epsilon = eps
            a, _ = policy.act(obs, rng)
            res = sim.step(a, obs)
            nxt = sim.observe()
            done = res.left | (sim.t >= c.horizon)
            m = len(live)
            idx = (ptr + np.arange(m)) % cap
            buf["s"][idx] = obs.state_feats[live]
            buf["c"][idx] = obs.cand_feats[live]
            buf["a"][idx] = a[live]
            buf["r"][idx] = res.reward[live]
            buf["s2"][idx] = nxt.state_feats[live]
            buf["c2"][idx] = nxt.cand_feats[live]
            buf["d"][idx] = done[live]
            ptr = (ptr + m) % cap
            size = min(size + m, cap)
            net.train()
            for _ in range(cfg.updates_per_step):
                j = rng.integers(size, size=min(cfg.minibatch, size))
                x = scaler.inputs(buf["s"][j], buf["c"][j])
                # slate-Q: a slate's value is the mean of its items' values
                q = net(x).squeeze(-1).gather(1, torch.from_numpy(buf["a"][j])).mean(1)
                with torch.no_grad():
                    x2 = scaler.inputs(buf["s2"][j], buf["c2"][j])
                    best = net(x2).squeeze(-1).topk(k, dim=1).indices
                    v2 = target(x2).squeeze(-1).gather(1, best).mean(1)
                    y = (
                        torch.from_numpy(buf["r"][j]).float()
                        + cfg.gamma * (1 - torch.from_numpy(buf["d"][j]).float()) * v2
                    )
                loss = torch.nn.functional.smooth_l1_loss(q, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for pt, po in zip(target.parameters(), net.parameters(), strict=True):
                        pt.mul_(1 - cfg.tau).add_(cfg.tau * po)
            obs = nxt
        if callback is not None:
            policy.epsilon = 0.0
            callback(it, policy)
    policy.epsilon = 0.0
    return policy


# ---------------------------------------------------------------------- REINFORCE, top-K corrected
class ReinforceConfig(BaseModel):
    """Off-policy REINFORCE hyperparameters (chosen on validation users)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gamma: float = Field(default=0.95, gt=0.0, le=1.0)
    hidden: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0.0)
    epochs: int = Field(default=100, ge=1)
    #: decisions per gradient step
    minibatch: int = Field(default=4096, ge=1)
    #: K of the top-K correction: items the policy fills per request (1: plain off-policy REINFORCE);
    #: :func:`train_reinforce` uses the logs' slate size when this is None
    top_k: int | None = Field(default=None, ge=1)
    #: importance weights are capped (Chen et al.'s weight capping) to bound the variance
    weight_cap: float = Field(default=10.0, gt=0.0)
    #: entropy bonus that keeps the softmax from collapsing onto the logged choices too early
    entropy: float = Field(default=0.01, ge=0.0)
    seed: int = 0


def topk_correction(pi: torch.Tensor, k: int) -> torch.Tensor:
    """Chen et al.'s multiplier ``λ_K = K·(1 − π)^(K−1)``: the gradient of ``1 − (1 − π)^K``, the
    probability that item ``a`` appears among ``K`` independent draws of the policy."""
    return k * (1.0 - pi) ** (k - 1)


def reinforce_loss(
    scores: torch.Tensor,
    action: torch.Tensor,
    beta: torch.Tensor,
    advantage: torch.Tensor,
    *,
    top_k: int,
    weight_cap: float,
    entropy: float,
) -> torch.Tensor:
    """``−mean(min(π/β, cap) · λ_K · A · log π(a|s)) − entropy·H(π)``, weights held fixed.

    ``scores (M, N)``, ``action``/``beta``/``advantage`` ``(M,)``. The weight and λ_K multiply the
    gradient but are not differentiated (the first-order approximation of the paper).
    """
    logp = torch.log_softmax(scores, dim=1)
    logp_a = logp.gather(1, action[:, None]).squeeze(1)
    with torch.no_grad():
        pi_a = logp_a.exp()
        w = torch.clamp(pi_a / beta, max=weight_cap) * topk_correction(pi_a, top_k)
    ent = -(logp.exp() * logp).sum(1).mean()
    return -(w * advantage * logp_a).mean() - entropy * ent


def train_reinforce(
    logs: Trajectories, config: ReinforceConfig | None = None, *, progress: bool = False
) -> SoftmaxPolicy:
    """Fit :class:`SoftmaxPolicy` on logged sessions (off-policy, top-K corrected REINFORCE).

    The advantage is the discounted return minus its mean at the same time step (a baseline that
    removes the drift of returns over the session without needing a critic). With slates every
    shown item is one draw of the policy (Chen et al.'s K independent draws): each gets the step's
    advantage, its own logged propensity, and the ``λ_K`` multiplier with ``K`` = the slate size.
    """
    cfg = config or ReinforceConfig()
    rng = np.random.default_rng(cfg.seed)
    g = logs.returns(cfg.gamma)
    alive = logs.alive.astype(bool)
    base = (g * alive).sum(1) / np.maximum(alive.sum(1), 1)
    adv = (g - base[:, None])[alive]
    adv = adv / (adv.std() + 1e-9)
    state, cand = logs.state[alive], logs.cand[alive]
    action, beta = logs.action[alive], logs.propensity[alive]
    k = action.shape[1]
    top_k = cfg.top_k or k
    scaler = Scaler.fit(state, cand)
    net = make_net(cfg.hidden, cfg.seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    x_all = scaler.inputs(state, cand)
    a_all = torch.from_numpy(action.astype(np.int64))
    b_all = torch.from_numpy(beta.astype(np.float32))
    adv_all = torch.from_numpy(np.repeat(adv[:, None], k, axis=1).astype(np.float32))
    n = len(action)
    for _ in tqdm(range(cfg.epochs), desc="reinforce", disable=not progress):
        perm = torch.from_numpy(rng.permutation(n))
        for s in range(0, n, cfg.minibatch):
            j = perm[s : s + cfg.minibatch]
            scores = net(x_all[j]).squeeze(-1)
            loss = reinforce_loss(
                scores.repeat_interleave(k, dim=0),
                a_all[j].reshape(-1),
                b_all[j].reshape(-1),
                adv_all[j].reshape(-1),
                top_k=top_k,
                weight_cap=cfg.weight_cap,
                entropy=cfg.entropy,
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return SoftmaxPolicy(net, scaler)


__all__ = [
    "DQNConfig",
    "ReinforceConfig",
    "reinforce_loss",
    "topk_correction",
    "train_dqn",
    "train_reinforce",
]
