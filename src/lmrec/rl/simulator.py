"""A user simulator for long-term reward: a click model learned from logs plus satisfaction dynamics.

The simulator answers the question the next-click models cannot: what happens to a *session* when a
policy keeps showing what the user is most likely to click right now. Each simulated user carries

* a **history** (consumed item indices, oldest first) and a **user vector** from the base model
  (:class:`World` holds them; any model with user and item vectors plugs in, see
  :func:`lmrec.rl.calibrate.world_from_model`);
* a **candidate pool**: the base model's top-``pool_size`` items, of which the ``n_candidates``
  best not yet shown are the actions at each step (the policy re-ranks the base model, it never
  invents items);
* a hidden **satisfaction** ``s ∈ [0, 1]`` (starts at 1).

One step shows one item ``i`` and:

1. the user clicks with probability ``σ(w·f(u, i, history) + click_shift)``: the learned
   :class:`ClickModel` (base score, popularity, similarity to the history);
2. satisfaction moves: ``s ← clip(s + gain_click·click − loss_noclick·(1 − click)
   − loss_repeat·max(0, rep − repeat_threshold))`` where ``rep`` is the item's largest cosine
   similarity to the last ``recent_len`` *shown* items: relevant (clicked) and diverse items raise it,
   ignored and repetitive ones lower it;
3. the user leaves with probability ``leave_base·m + leave_slope·(1 − s)``, where the session's
   patience ``m`` is a log-normal draw of mean 1 and spread ``leave_spread``;
4. the reward is ``click + continue_bonus·(stayed)``.

The myopic trap this builds in: items closest to the history are the likeliest clicks and also the
most alike, so always taking the top-scored candidate wears satisfaction down and ends sessions early.

:class:`Simulator` runs a *batch* of users in numpy (the benchmark simulates thousands of sessions);
:class:`lmrec.rl.env.RecSimEnv` wraps one user of it as a standard ``gymnasium.Env``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: columns of :attr:`Observation.cand_feats`
CANDIDATE_FEATURES = (
    "base_score",
    "log_popularity",
    "hist_max_cos",
    "hist_mean_cos",
    "repeat",
    "click_logit",
)
#: columns of :attr:`Observation.state_feats`
STATE_FEATURES = ("progress", "recent_ctr", "recent_repeat", "last_click", "bias")


class DynamicsConfig(BaseModel):
    """Session dynamics of the simulator; the calibrated fields are fitted to real session lengths."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: actions per step: the best not-yet-shown items of the pool, in base-model order
    n_candidates: int = Field(default=20, ge=2)
    #: base-model top items per user that the candidates are drawn from
    pool_size: int = Field(default=100, ge=3)
    #: steps per session at most (truncation)
    horizon: int = Field(default=50, ge=1)
    #: consumed items the click features look at
    history_len: int = Field(default=10, ge=1)
    #: shown items that count towards an item's repetitiveness
    recent_len: int = Field(default=5, ge=1)
    #: satisfaction gained by a click
    gain_click: float = Field(default=0.05, ge=0.0)
    #: satisfaction lost by an ignored item (calibrated)
    loss_noclick: float = Field(default=0.05, ge=0.0)
    #: satisfaction lost per unit of similarity above ``repeat_threshold`` (calibrated)
    loss_repeat: float = Field(default=1.0, ge=0.0)
    #: cosine similarity to a recently shown item above which an item feels repetitive
    repeat_threshold: float = Field(default=0.5, ge=-1.0, le=1.0)
    #: leave probability of a fully satisfied user (calibrated)
    leave_base: float = Field(default=0.01, ge=0.0, le=1.0)
    #: spread of users' patience: each session's ``leave_base`` is multiplied by a log-normal draw
    #: ``exp(σz − σ²/2)`` (mean 1) with this σ; real session lengths are bimodal (many one-item
    #: sessions and many long ones), which one shared leave rate cannot produce (calibrated)
    leave_spread: float = Field(default=0.0, ge=0.0)
    #: extra leave probability per unit of lost satisfaction (calibrated)
    leave_slope: float = Field(default=0.2, ge=0.0, le=1.0)
    #: reward for each step the user stays (the continuation term)
    continue_bonus: float = Field(default=0.1, ge=0.0)
    #: added to every click logit: shifts the click rate (robustness variants)
    click_shift: float = 0.0


@dataclass
class ClickModel:
    """Logistic click model over :func:`click_features` (standardised), fitted by L-BFGS.

    Why hand-written: five features and a ridge penalty; a dependency would add nothing but weight.
    """

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, *, l2: float = 1e-3) -> ClickModel:
        from scipy.optimize import minimize

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if len(X) != len(y) or len(X) == 0:
            raise ValueError(f"click model needs matching non-empty X and y, got {len(X)} and {len(y)}")
        mean, std = X.mean(0), X.std(0) + 1e-9
        Z = (X - mean) / std
        n, d = Z.shape

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            z = Z @ theta[:d] + theta[d]
            p = 1.0 / (1.0 + np.exp(-z))
            nll = np.logaddexp(0.0, z) - y * z
            g = p - y
            grad = np.r_[Z.T @ g / n + l2 * theta[:d], g.mean()]
            return float(nll.mean() + 0.5 * l2 * theta[:d] @ theta[:d]), grad

        res = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B")
        return cls(weights=res.x[:d], bias=float(res.x[d]), mean=mean, std=std)

    def logits(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, dtype=np.float64) - self.mean) / self.std) @ self.weights + self.bias

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ClickModel:
        return cls(
            weights=np.asarray(obj["weights"], dtype=np.float64),
            bias=float(obj["bias"]),
            mean=np.asarray(obj["mean"], dtype=np.float64),
            std=np.asarray(obj["std"], dtype=np.float64),
        )


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


def click_features(
    base_scores: np.ndarray,
    log_pop: np.ndarray,
    cand_unit: np.ndarray,
    hist_unit: np.ndarray,
    hist_mask: np.ndarray,
) -> np.ndarray:
    """``[base score, log popularity, max and mean cosine to the history]`` per candidate.

    Shapes: scores and log_pop ``(..., N)``, cand_unit ``(..., N, d)``, hist_unit ``(..., H, d)``,
    hist_mask ``(..., H)`` (True where a history slot holds an item). Returns ``(..., N, 4)``. The same
    function builds the click model's training rows and the simulator's features, so the two agree.
    """
    cos = np.einsum("...nd,...hd->...nh", cand_unit, hist_unit)
    m = hist_mask[..., None, :]
    n_hist = np.maximum(m.sum(-1), 1)
    cmax = np.where(m, cos, -1.0).max(-1)
    cmax = np.where(m.any(-1), cmax, 0.0)
    cmean = np.where(m, cos, 0.0).sum(-1) / n_hist
    return np.stack([base_scores, log_pop, cmax, cmean], axis=-1)


@dataclass
class World:
    """What the simulator knows about users and items, in base-model indices.

    ``pools[u]`` are the base model's top items for user ``u`` (best first, training history
    excluded) and ``pool_scores[u]`` their base scores.
    """

    item_vectors: np.ndarray
    popularity: np.ndarray
    user_vectors: np.ndarray
    histories: list[np.ndarray]
    pools: np.ndarray
    pool_scores: np.ndarray
    click_model: ClickModel

    def __post_init__(self) -> None:
        self.item_unit = _unit(np.asarray(self.item_vectors, dtype=np.float64))
        self.log_pop = np.log1p(np.asarray(self.popularity, dtype=np.float64))
        if len(self.pools) != len(self.user_vectors) or len(self.histories) != len(self.user_vectors):
            raise ValueError(
                f"world has {len(self.user_vectors)} user vectors, {len(self.pools)} pools and "
                f"{len(self.histories)} histories; they must match"
            )

    @property
    def n_users(self) -> int:
        return len(self.user_vectors)


@dataclass
class Observation:
    """What a policy sees for a batch of users at one step."""

    #: (B, N) item indices of the candidates, base-model order
    items: np.ndarray
    #: (B, N) the base model's scores of the candidates
    base_scores: np.ndarray
    #: (B, N, len(CANDIDATE_FEATURES))
    cand_feats: np.ndarray
    #: (B, len(STATE_FEATURES))
    state_feats: np.ndarray
    #: (B,) users still in session
    alive: np.ndarray
    #: (B, N) the simulator's true click probabilities (ground truth for OPE; policies must not read it)
    click_prob: np.ndarray

    def flat(self) -> np.ndarray:
        """``[state features, candidate features row by row]`` as one float32 vector per user."""
        b = len(self.items)
        return np.concatenate([self.state_feats, self.cand_feats.reshape(b, -1)], axis=1).astype(np.float32)

    def take(self, rows: np.ndarray) -> Observation:
        return Observation(
            self.items[rows],
            self.base_scores[rows],
            self.cand_feats[rows],
            self.state_feats[rows],
            self.alive[rows],
            self.click_prob[rows],
        )


@dataclass
class StepResult:
    reward: np.ndarray
    click: np.ndarray
    left: np.ndarray
    #: the step's shown items' repetitiveness (max cosine to the recent shown items)
    repeat: np.ndarray


class Simulator:
    """A batch of simulated sessions (see the module docstring for the dynamics)."""

    def __init__(self, world: World, config: DynamicsConfig | None = None) -> None:
        self.world = world
        self.config = config or DynamicsConfig()
        c = self.config
        if c.pool_size < c.horizon + c.n_candidates:
            raise ValueError(
                f"pool_size {c.pool_size} must be >= horizon + n_candidates ({c.horizon + c.n_candidates})"
            )
        if world.pools.shape[1] < c.pool_size:
            raise ValueError(f"world pools hold {world.pools.shape[1]} items, config wants {c.pool_size}")

    # ------------------------------------------------------------------ state
    def reset(self, users: np.ndarray, rng: np.random.Generator) -> Observation:
        c, w = self.config, self.world
        self.rng = rng
        self.users = np.asarray(users, dtype=np.int64)
        b = len(self.users)
        self.pool = w.pools[self.users, : c.pool_size]
        self.pool_scores = w.pool_scores[self.users, : c.pool_size].astype(np.float64)
        self.shown = np.zeros((b, c.pool_size), dtype=bool)
        self.hist = np.full((b, c.history_len), -1, dtype=np.int64)
        for r, u in enumerate(self.users):
            h = w.histories[u][-c.history_len :]
            if len(h):
                self.hist[r, -len(h) :] = h
        self.recent = np.full((b, c.recent_len), -1, dtype=np.int64)
        self.recent_click = np.zeros((b, c.recent_len))
        self.recent_rep = np.zeros((b, c.recent_len))
        self.n_recent = np.zeros(b, dtype=np.int64)
        self.last_click = np.zeros(b)
        self.sat = np.ones(b)
        sigma = c.leave_spread
        self.leave_base = np.clip(
            c.leave_base * np.exp(sigma * rng.standard_normal(b) - sigma**2 / 2), 0.0, 1.0
        )
        self.alive = np.ones(b, dtype=bool)
        self.t = 0
        return self.observe()

    def _candidates(self) -> np.ndarray:
        """(B, N) pool positions of the best ``n_candidates`` items not yet shown."""
        key = self.shown * self.config.pool_size + np.arange(self.config.pool_size)
        return np.argsort(key, axis=1, kind="stable")[:, : self.config.n_candidates]

    def observe(self) -> Observation:
        c, w = self.config, self.world
        self._pos = self._candidates()
        items = np.take_along_axis(self.pool, self._pos, 1)
        scores = np.take_along_axis(self.pool_scores, self._pos, 1)
        cu = w.item_unit[items]
        hmask = self.hist >= 0
        f = click_features(scores, w.log_pop[items], cu, w.item_unit[np.maximum(self.hist, 0)], hmask)
        logit = w.click_model.logits(f) + c.click_shift
        rmask = self.recent >= 0
        rcos = np.einsum("bnd,brd->bnr", cu, w.item_unit[np.maximum(self.recent, 0)])
        rep = np.where(rmask[:, None, :], rcos, -1.0).max(-1)
        rep = np.where(np.any(rmask, axis=1)[:, None], rep, 0.0)
        self._rep = rep
        n_r = np.maximum(self.n_recent, 1)
        state = np.stack(
            [
                np.full(len(items), self.t / c.horizon),
                self.recent_click.sum(1) / n_r,
                self.recent_rep.sum(1) / n_r,
                self.last_click,
                np.ones(len(items)),
            ],
            axis=1,
        )
        cand = np.concatenate([f, rep[..., None], logit[..., None]], axis=-1)
        return Observation(
            items=items,
            base_scores=scores,
            cand_feats=cand,
            state_feats=state,
            alive=self.alive.copy(),
            click_prob=1.0 / (1.0 + np.exp(-logit)),
        )

    def step(self, actions: np.ndarray, obs: Observation) -> StepResult:
        """Show candidate ``actions[b]`` (a position in ``obs.items[b]``) to every live user."""
        c = self.config
        b = len(self.users)
        a = np.asarray(actions, dtype=np.int64)
        if a.shape != (b,) or (a < 0).any() or (a >= c.n_candidates).any():
            raise ValueError(f"actions must be {b} positions in [0, {c.n_candidates}), got {a!r}")
        rows = np.arange(b)
        live = self.alive.copy()
        p = obs.click_prob[rows, a]
        click = (self.rng.random(b) < p) & live
        rep = self._rep[rows, a]
        item = obs.items[rows, a]
        # satisfaction and leaving
        over = np.maximum(rep - c.repeat_threshold, 0.0)
        self.sat = np.clip(
            self.sat + c.gain_click * click - c.loss_noclick * (~click) - c.loss_repeat * over, 0.0, 1.0
        )
        p_leave = np.clip(self.leave_base + c.leave_slope * (1.0 - self.sat), 0.0, 1.0)
        left = (self.rng.random(b) < p_leave) & live
        reward = np.where(live, click + c.continue_bonus * (~left), 0.0)
        # book-keeping for live users only
        self.shown[rows[live], self._pos[rows, a][live]] = True
        self.recent[live] = np.concatenate([self.recent[live, 1:], item[live, None]], axis=1)
        self.recent_click[live] = np.concatenate(
            [self.recent_click[live, 1:], click[live, None].astype(float)], axis=1
        )
        self.recent_rep[live] = np.concatenate([self.recent_rep[live, 1:], rep[live, None]], axis=1)
        self.n_recent = np.minimum(self.n_recent + live, c.recent_len)
        cl = click & live
        self.hist[cl] = np.concatenate([self.hist[cl, 1:], item[cl, None]], axis=1)
        self.last_click = np.where(live, click.astype(float), self.last_click)
        self.alive = live & ~left
        self.t += 1
        return StepResult(reward=reward, click=click.astype(float), left=left, repeat=rep)

    @property
    def done(self) -> bool:
        return self.t >= self.config.horizon or not self.alive.any()


__all__ = [
    "CANDIDATE_FEATURES",
    "STATE_FEATURES",
    "ClickModel",
    "DynamicsConfig",
    "Observation",
    "Simulator",
    "StepResult",
    "World",
    "click_features",
]
