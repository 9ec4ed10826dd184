"""A trained RL policy as a serving re-ranker (``policy: "rl"`` in ``/recommend``).

The server hands over the base model's candidate pool (best first). The list is filled a slate at a
time (``slate_size`` items, as the policy was trained), each slate treated as one simulator step:
the candidates are the ``n_candidates`` best free items of the pool, their features are the
simulator's (:data:`~lmrec.rl.simulator.CANDIDATE_FEATURES`: base score, log popularity, cosine to
the user's last items, repetitiveness against the slots already filled, the saved click model's
logit, and the model's current score), and the state features treat the filled slates as the recent
steps, with their predicted click probabilities standing in for the clicks not yet seen.

The request's query vector is the served model's encoding of the user's history *now*, so each
request starts a session in the simulator's terms: the current score is the base score and the
state has not drifted (``seq_drift`` 0).

Each slot is drawn from ``(1 − ε)·π + ε/N`` (``π``: the policy's softmax for REINFORCE, its argmax
for DQN; a slate's later slots without replacement), and the item's probability under it is logged
as the slot's propensity, as the bandits do, so the off-policy estimators can evaluate other
policies on lists served this way.

The features are only those the policy was trained on when the served model is the base model it
was trained with (``lmrec rl train --model ARTIFACT``); with another model the base scores are on
another scale.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lmrec.rl.artifact import load_policy
from lmrec.rl.policies import ScoredPolicy
from lmrec.rl.simulator import (
    ClickModel,
    DynamicsConfig,
    Observation,
    candidate_features,
    click_features,
    state_features,
)


@dataclass
class RLReranker:
    policy: ScoredPolicy
    dynamics: DynamicsConfig
    click_model: ClickModel
    epsilon: float = 0.05
    seed: int = 0
    name: str = "rl"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, epsilon: float = 0.05, seed: int = 0) -> RLReranker:
        policy, meta = load_policy(path)
        return cls(policy, meta["dynamics"], meta["click_model"], epsilon=epsilon, seed=seed)

    def rerank(
        self,
        ranked: Any,
        features: np.ndarray,
        k: int,
        *,
        history: np.ndarray,
        popularity: np.ndarray,
    ) -> Any:
        """Fill ``k`` slots of ``ranked`` (a :class:`lmrec.serving.pipeline.Ranked`).

        ``features``: unit item vectors (n_items, d); ``history``: the user's item indices, oldest
        first; ``popularity``: interactions per item.
        """
        pool = np.asarray(ranked.pool)
        if not len(pool):
            return ranked
        c = self.dynamics
        scores = np.asarray(ranked.scores, dtype=np.float64)
        # the pool arrives best first from the model; keep base order for "the best free items"
        base_order = np.argsort(-scores, kind="stable")
        k = min(int(k), len(pool))
        hist = np.asarray(history, dtype=np.int64)[-c.history_len :]
        hvec = features[hist] if len(hist) else np.zeros((0, features.shape[1]))
        # the pool's log popularity only: the whole catalogue's would be O(n_items) per request
        log_pop = np.log1p(np.asarray(popularity, dtype=np.float64)[pool])
        free = np.ones(len(pool), dtype=bool)
        order = np.empty(k, np.int64)
        props = np.ones(k)
        recent: list[int] = []
        recent_p: list[float] = []
        recent_rep: list[float] = []
        filled = 0
        while filled < k:
            cand = base_order[free[base_order]][: c.n_candidates]
            items = pool[cand]
            cu = features[items]
            f = click_features(
                scores[cand][None],
                log_pop[cand][None],
                cu[None],
                hvec[None] if len(hvec) else np.zeros((1, 1, features.shape[1])),
                np.ones((1, max(len(hvec), 1)), dtype=bool) if len(hvec) else np.zeros((1, 1), dtype=bool),
            )
            logit = self.click_model.logits(f)[0]
            last = recent[-c.recent_len * c.slate_size :]
            rep = (cu @ features[pool[last]].T).max(1) if last else np.zeros(len(cand))
            n_r = max(len(recent_p[-c.recent_len :]), 1)
            # seq_drift 0: the request's query vector is the history encoded now (module docstring)
            state = state_features(
                min(len(recent_p) / c.horizon, 1.0),
                sum(recent_p[-c.recent_len :]) / n_r,
                sum(recent_rep[-c.recent_len :]) / n_r,
                recent_p[-1] if recent_p else 0.0,
                0.0,
            )
            obs = Observation(
                items=items[None],
                base_scores=scores[cand][None],
                cand_feats=candidate_features(f[0], rep, logit, scores[cand])[None],
                state_feats=state[None],
                alive=np.ones(1, dtype=bool),
                click_prob=np.zeros((1, len(cand))),
            )
            p = self.policy.exploring(obs, self.epsilon)[0]
            m = min(c.slate_size, k - filled, len(cand))
            with self._lock:
                picks = self.rng.choice(len(cand), size=m, replace=False, p=p)
            order[filled : filled + m], props[filled : filled + m] = cand[picks], p[picks]
            free[cand[picks]] = False
            filled += m
            recent += [int(x) for x in cand[picks]]
            p_click = 1.0 / (1.0 + np.exp(-logit[picks]))
            recent_p.append(float(1.0 - np.prod(1.0 - p_click)))
            recent_rep.append(float(rep[picks].mean()))
        return replace(ranked, order=order, propensities=props, policy=self.name, n_logged=len(pool))


__all__ = ["RLReranker"]
