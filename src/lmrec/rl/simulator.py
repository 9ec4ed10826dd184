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

One step shows a *slate* of ``slate_size`` items (one by default) and:

1. the user scans the slate top-down (the cascade model) and clicks the first item that appeals:
   position ``j`` is examined with probability ``position_decay^j`` and clicked with probability
   ``σ(w·f(u, i, history) + click_shift)``, the learned :class:`ClickModel` (base score, popularity,
   similarity to the history); at most one click per step, so a slate of one is the plain case;
2. satisfaction moves: ``s ← clip(s + gain_click·click − loss_noclick·(1 − click)
   − loss_repeat·mean_j max(0, rep_j − repeat_threshold))`` where ``rep_j`` is slate item ``j``'s
   largest cosine similarity to the items shown in the last ``recent_len`` steps and to the items
   above it in the slate: relevant (clicked) and diverse slates raise it, ignored and repetitive
   ones lower it;
3. the user leaves with probability ``leave_base·m + leave_slope·(1 − s)``, where the session's
   patience ``m`` is a log-normal draw of mean 1 and spread ``leave_spread``;
4. the reward is ``click + continue_bonus·(stayed)``.

The myopic trap this builds in: items closest to the history are the likeliest clicks and also the
most alike, so always taking the top-scored candidates wears satisfaction down and ends sessions early.

**State from the sequence encoder.** When the world holds a :class:`~lmrec.rl.state.HistoryEncoder`
(a fitted sequence model), the user's history, training part plus this session's clicks, is
re-encoded after every click: candidates arrive in the order of the *current* state's scores, and the
policy sees them (``seq_score``) and how far the state has moved (``seq_drift``); see
:mod:`lmrec.rl.state`. Without one, the base model's session-start scores stand in for both.

:class:`Simulator` runs a *batch* of users in numpy (the benchmark simulates thousands of sessions);
:class:`lmrec.rl.env.RecSimEnv` wraps one user of it as a standard ``gymnasium.Env``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lmrec.rl.state import HistoryEncoder

#: columns of :attr:`Observation.cand_feats`
CANDIDATE_FEATURES = (
    "base_score",
    "log_popularity",
    "hist_max_cos",
    "hist_mean_cos",
    "repeat",
    "click_logit",
    "seq_score",
)
#: columns of :attr:`Observation.state_feats`
STATE_FEATURES = ("progress", "recent_ctr", "recent_repeat", "last_click", "seq_drift", "bias")


class DynamicsConfig(BaseModel):
    """Session dynamics of the simulator; the calibrated fields are fitted to real session lengths."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: actions per step: the best not-yet-shown items of the pool, in base-model order
    n_candidates: int = Field(default=20, ge=2)
    #: items shown per step (a slate); the user clicks at most one of them (cascade)
    slate_size: int = Field(default=1, ge=1)
    #: probability that the user examines slate position ``j`` is ``position_decay ** j``
    position_decay: float = Field(default=1.0, gt=0.0, le=1.0)
    #: base-model top items per user that the candidates are drawn from
    pool_size: int = Field(default=100, ge=3)
    #: steps per session at most (truncation)
    horizon: int = Field(default=50, ge=1)
    #: consumed items the click features look at
    history_len: int = Field(default=10, ge=1)
    #: steps whose shown items count towards an item's repetitiveness
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


def candidate_features(
    click_feats: np.ndarray, repeat: np.ndarray, click_logit: np.ndarray, seq_score: np.ndarray
) -> np.ndarray:
    """``(..., N, len(CANDIDATE_FEATURES))``: :func:`click_features` then the rest, in
    :data:`CANDIDATE_FEATURES` order (the simulator and the serving re-ranker both build them here)."""
    return np.concatenate(
        [click_feats, repeat[..., None], click_logit[..., None], seq_score[..., None]], axis=-1
    )


def state_features(
    progress: Any, recent_ctr: Any, recent_repeat: Any, last_click: Any, seq_drift: Any
) -> np.ndarray:
    """``(..., len(STATE_FEATURES))`` in :data:`STATE_FEATURES` order (scalars or per-user arrays;
    the bias column is added here)."""
    return np.stack(
        np.broadcast_arrays(progress, recent_ctr, recent_repeat, last_click, seq_drift, 1.0), axis=-1
    )


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
    #: the sequence encoder that re-encodes histories each step (None: session-start scores only);
    #: its item indices and vectors must be the world's (the base model is the sequence model)
    encoder: HistoryEncoder | None = None

    def __post_init__(self) -> None:
        self.item_unit = _unit(np.asarray(self.item_vectors, dtype=np.float64))
        self.log_pop = np.log1p(np.asarray(self.popularity, dtype=np.float64))
        if self.encoder is not None and self.encoder.item_vectors.shape != np.shape(self.item_vectors):
            raise ValueError(
                f"the state encoder has item vectors of shape {self.encoder.item_vectors.shape}, the "
                f"world {np.shape(self.item_vectors)}: the base model must be the sequence model"
            )
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

    #: (B, N) item indices of the candidates, in the order of the current base scores
    items: np.ndarray
    #: (B, N) the base model's current scores of the candidates (re-encoded state, if any)
    base_scores: np.ndarray
    #: (B, N, len(CANDIDATE_FEATURES))
    cand_feats: np.ndarray
    #: (B, len(STATE_FEATURES))
    state_feats: np.ndarray
    #: (B,) users still in session
    alive: np.ndarray
    #: (B, N) the simulator's true click probabilities (ground truth for OPE; policies must not read it)
    click_prob: np.ndarray
    #: items to show per step
    slate_size: int = 1

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
            self.slate_size,
        )


@dataclass
class StepResult:
    reward: np.ndarray
    #: (B,) 1.0 where the user clicked one of the slate's items
    click: np.ndarray
    left: np.ndarray
    #: (B,) the slate items' mean repetitiveness (max cosine to recently shown items)
    repeat: np.ndarray
    #: (B,) slate position of the clicked item, -1 for none
    clicked_slot: np.ndarray


class Simulator:
    """A batch of simulated sessions (see the module docstring for the dynamics)."""

    def __init__(self, world: World, config: DynamicsConfig | None = None) -> None:
        self.world = world
        self.config = config or DynamicsConfig()
        c = self.config
        if c.n_candidates < c.slate_size:
            raise ValueError(f"n_candidates {c.n_candidates} must be >= slate_size {c.slate_size}")
        need = c.horizon * c.slate_size + c.n_candidates
        if c.pool_size < need:
            raise ValueError(
                f"pool_size {c.pool_size} must be >= horizon * slate_size + n_candidates ({need})"
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
        self.recent = np.full((b, c.recent_len * c.slate_size), -1, dtype=np.int64)
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
        self.current = self.pool_scores
        if w.encoder is not None:
            self.seqs = [np.asarray(w.histories[u], dtype=np.int64) for u in self.users]
            self.state0 = w.encoder.encode(self.seqs)
            self.state = self.state0.copy()
            self.pool_vecs = w.encoder.item_vectors[self.pool]
            self.current = np.einsum("bd,bpd->bp", self.state, self.pool_vecs)
        return self.observe()

    def _reencode(self, rows: np.ndarray, items: np.ndarray) -> None:
        """Append ``items`` to the histories of ``rows`` and re-encode them (state and pool scores)."""
        enc = self.world.encoder
        if enc is None or not len(rows):
            return
        for r, i in zip(rows, items, strict=True):
            self.seqs[r] = np.append(self.seqs[r], i)
        self.state[rows] = enc.encode([self.seqs[r] for r in rows])
        self.current[rows] = np.einsum("bd,bpd->bp", self.state[rows], self.pool_vecs[rows])

    def _drift(self) -> np.ndarray:
        if self.world.encoder is None:
            return np.zeros(len(self.users))
        num = np.einsum("bd,bd->b", self.state, self.state0)
        den = np.linalg.norm(self.state, axis=1) * np.linalg.norm(self.state0, axis=1) + 1e-12
        return 1.0 - num / den

    def observe(self) -> Observation:
        c, w = self.config, self.world
        current = self.current
        # the best n_candidates not yet shown, by the current scores
        key = np.where(self.shown, -np.inf, current)
        self._pos = np.argsort(-key, axis=1, kind="stable")[:, : c.n_candidates]
        items = np.take_along_axis(self.pool, self._pos, 1)
        taste = np.take_along_axis(self.pool_scores, self._pos, 1)
        scores = np.take_along_axis(current, self._pos, 1)
        cu = w.item_unit[items]
        hmask = self.hist >= 0
        f = click_features(taste, w.log_pop[items], cu, w.item_unit[np.maximum(self.hist, 0)], hmask)
        logit = w.click_model.logits(f) + c.click_shift
        self._rep = self._repetitiveness(cu)
        n_r = np.maximum(self.n_recent, 1)
        return Observation(
            items=items,
            base_scores=scores,
            cand_feats=candidate_features(f, self._rep, logit, scores),
            state_feats=state_features(
                self.t / c.horizon,
                self.recent_click.sum(1) / n_r,
                self.recent_rep.sum(1) / n_r,
                self.last_click,
                self._drift(),
            ),
            alive=self.alive.copy(),
            click_prob=1.0 / (1.0 + np.exp(-logit)),
            slate_size=c.slate_size,
        )

    def _repetitiveness(self, cand_unit: np.ndarray) -> np.ndarray:
        """(B, N) each candidate's largest cosine to the items shown in the last ``recent_len`` steps."""
        w = self.world
        rmask = self.recent >= 0
        rcos = np.einsum("bnd,brd->bnr", cand_unit, w.item_unit[np.maximum(self.recent, 0)])
        rep = np.where(rmask[:, None, :], rcos, -1.0).max(-1)
        return np.where(np.any(rmask, axis=1)[:, None], rep, 0.0)

    def _slate(self, actions: np.ndarray, b: int) -> np.ndarray:
        c = self.config
        a = np.asarray(actions, dtype=np.int64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or len(a) != b or a.shape[1] != c.slate_size:
            raise ValueError(
                f"actions must be ({b}, {c.slate_size}) candidate positions, got shape {a.shape}"
            )
        if (a < 0).any() or (a >= c.n_candidates).any():
            raise ValueError(f"actions must be positions in [0, {c.n_candidates}), got {a!r}")
        return a

    def step(self, actions: np.ndarray, obs: Observation) -> StepResult:
        """Show the slate ``actions[b]`` (positions in ``obs.items[b]``; shape ``(B,)`` for one item or
        ``(B, slate_size)``) to every live user. A position repeated within a slate is shown once."""
        c, w = self.config, self.world
        b = len(self.users)
        a = self._slate(actions, b)
        k = a.shape[1]
        rows = np.arange(b)[:, None]
        live = self.alive.copy()
        # duplicates within a slate are empty slots
        dup = np.zeros(a.shape, dtype=bool)
        for j in range(1, k):
            dup[:, j] = (a[:, :j] == a[:, j : j + 1]).any(1)
        items = obs.items[rows, a]
        p = np.where(dup, 0.0, obs.click_prob[rows, a]) * c.position_decay ** np.arange(k)
        hit = self.rng.random((b, k)) < p
        first = np.where(hit.any(1), hit.argmax(1), -1)
        click = (first >= 0) & live
        clicked_slot = np.where(click, first, -1)
        # repetitiveness: to the recent steps' items and to the items above in the slate
        rep = self._rep[rows, a]
        if k > 1:
            su = w.item_unit[items]
            within = np.einsum("bjd,bkd->bjk", su, su)
            above = np.tril(np.ones((k, k), dtype=bool), -1)[None] & ~dup[:, None, :]
            rep = np.maximum(rep, np.where(above, within, -1.0).max(-1))
        over = np.where(dup, 0.0, np.maximum(rep - c.repeat_threshold, 0.0))
        n_shown = np.maximum((~dup).sum(1), 1)
        over_mean = over.sum(1) / n_shown
        rep_mean = np.where(dup, 0.0, rep).sum(1) / n_shown
        # satisfaction and leaving
        self.sat = np.clip(
            self.sat + c.gain_click * click - c.loss_noclick * (~click) - c.loss_repeat * over_mean, 0.0, 1.0
        )
        p_leave = np.clip(self.leave_base + c.leave_slope * (1.0 - self.sat), 0.0, 1.0)
        left = (self.rng.random(b) < p_leave) & live
        reward = np.where(live, click + c.continue_bonus * (~left), 0.0)
        # book-keeping for live users only
        lr = np.flatnonzero(live)
        pos = np.take_along_axis(self._pos, a, 1)
        self.shown[lr[:, None], pos[lr]] = True
        shown_items = np.where(dup, -1, items)
        self.recent[live] = np.concatenate([self.recent[live, k:], shown_items[live]], axis=1)
        self.recent_click[live] = np.concatenate(
            [self.recent_click[live, 1:], click[live, None].astype(float)], axis=1
        )
        self.recent_rep[live] = np.concatenate([self.recent_rep[live, 1:], rep_mean[live, None]], axis=1)
        self.n_recent = np.minimum(self.n_recent + live, c.recent_len)
        cl = np.flatnonzero(click)
        got = items[cl, clicked_slot[cl]]
        self.hist[cl] = np.concatenate([self.hist[cl, 1:], got[:, None]], axis=1)
        self._reencode(cl, got)
        self.last_click = np.where(live, click.astype(float), self.last_click)
        self.alive = live & ~left
        self.t += 1
        return StepResult(
            reward=reward, click=click.astype(float), left=left, repeat=rep_mean, clicked_slot=clicked_slot
        )

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
    "candidate_features",
    "click_features",
    "state_features",
]
