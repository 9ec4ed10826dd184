"""A tiny world whose best long-term policy is known: the likeliest clicks drive users away.

Every user's history points one way (``e₀``). Half the pool are *bait* items close to ``e₀`` (and so
to each other): the likeliest clicks (``p ≈ 0.73``). The other half are *diverse* items, each in its
own random direction (``p ≈ 0.27``). Showing bait after bait is repetitive and empties satisfaction,
and unsatisfied users leave; diverse items keep them. So the myopic click-maximiser
(:class:`~lmrec.rl.policies.MyopicPolicy`) ends sessions early, and a policy that mixes in diverse
items (e.g. alternates bait and diverse with ``recent_len=1``) earns more over the session. Tests
use it to check that the learned policies find the long-term optimum.
"""

from __future__ import annotations

import numpy as np

from lmrec.rl.simulator import ClickModel, DynamicsConfig, World


def toy_world(n_users: int = 64, pool: int = 40, dim: int = 8, seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    e0 = np.zeros(dim)
    e0[0] = 1.0
    n_bait = n_div = pool // 2
    bait = e0 + 0.05 * rng.standard_normal((n_bait, dim))
    ortho = rng.standard_normal((n_div, dim))
    ortho[:, 0] = 0.0
    ortho /= np.linalg.norm(ortho, axis=1, keepdims=True)
    diverse = 0.5 * e0 + 0.87 * ortho
    history = e0 + 0.05 * rng.standard_normal((5, dim))
    items = np.concatenate([history, bait, diverse])
    n_items = len(items)
    # the pool alternates bait and diverse, so both kinds are always among the candidates
    order = np.empty(pool, dtype=np.int64)
    order[0::2] = 5 + np.arange(n_bait)
    order[1::2] = 5 + n_bait + np.arange(n_div)
    pools = np.tile(order, (n_users, 1))
    scores = np.tile(np.linspace(1.0, 0.5, pool), (n_users, 1))
    # clicks depend only on the largest cosine to the history: logit = 4·(max cos − 0.75)
    click = ClickModel(weights=np.array([0.0, 0.0, 4.0, 0.0]), bias=-3.0, mean=np.zeros(4), std=np.ones(4))
    return World(
        item_vectors=items,
        popularity=np.ones(n_items),
        user_vectors=np.tile(e0, (n_users, 1)),
        histories=[np.arange(5) for _ in range(n_users)],
        pools=pools,
        pool_scores=scores,
        click_model=click,
    )


def toy_dynamics(**overrides: float | int) -> DynamicsConfig:
    """Dynamics under which repeating bait empties satisfaction within two steps."""
    base: dict[str, float | int] = {
        "n_candidates": 6,
        "pool_size": 40,
        "horizon": 20,
        "history_len": 5,
        "recent_len": 1,
        "gain_click": 0.0,
        "loss_noclick": 0.0,
        "loss_repeat": 1.5,
        "repeat_threshold": 0.6,
        "leave_base": 0.02,
        "leave_slope": 0.5,
        "continue_bonus": 0.1,
    }
    base.update(overrides)
    return DynamicsConfig(**base)  # type: ignore[arg-type]


__all__ = ["toy_dynamics", "toy_world"]
