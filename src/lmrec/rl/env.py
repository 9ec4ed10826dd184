"""The simulator as a ``gymnasium`` environment: one simulated user per episode.

The dynamics live in :mod:`lmrec.rl.simulator` (batched numpy, no gymnasium needed); this wrapper
gives RL libraries and ``gymnasium.utils.env_checker`` the standard single-agent API.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    import gymnasium as gym
    from gymnasium import spaces
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("lmrec.rl.env needs gymnasium: pip install 'lmrec[rl]'") from exc

from lmrec.rl.simulator import (
    CANDIDATE_FEATURES,
    STATE_FEATURES,
    DynamicsConfig,
    Observation,
    Simulator,
    World,
)


class RecSimEnv(gym.Env):
    """One simulated user per episode as a ``gymnasium.Env``.

    Observation: ``[state features, candidate features]`` (:meth:`Observation.flat`); action: the
    position of the shown item among the ``n_candidates`` candidates (``Discrete``), or with
    ``slate_size > 1`` the slate's positions (``MultiDiscrete``; a repeated position is shown once);
    reward: click plus the continuation bonus; ``terminated`` when the user leaves, ``truncated`` at the horizon.
    ``info["click"]`` says whether the item was clicked.
    """

    metadata = {"render_modes": []}

    def __init__(
        self, world: World, config: DynamicsConfig | None = None, users: np.ndarray | None = None
    ) -> None:
        super().__init__()
        self.sim = Simulator(world, config)
        c = self.sim.config
        self.users = np.arange(world.n_users) if users is None else np.asarray(users)
        dim = len(STATE_FEATURES) + c.n_candidates * len(CANDIDATE_FEATURES)
        # finite bounds (gymnasium warns on infinite ones); features are scores, log counts and cosines
        self.observation_space = spaces.Box(-1e4, 1e4, shape=(dim,), dtype=np.float32)
        self.action_space: spaces.Space[Any] = (
            spaces.Discrete(c.n_candidates)
            if c.slate_size == 1
            else spaces.MultiDiscrete([c.n_candidates] * c.slate_size)
        )
        self._obs: Observation | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        user = self.users[int(self.np_random.integers(len(self.users)))]
        self._obs = self.sim.reset(np.array([user]), self.np_random)
        return self._obs.flat()[0], {"user": int(user)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        k = self.sim.config.slate_size
        res = self.sim.step(np.asarray(action, dtype=np.int64).reshape(1, k), self._obs)
        self._obs = self.sim.observe()
        terminated = bool(res.left[0])
        truncated = not terminated and self.sim.t >= self.sim.config.horizon
        info = {"click": bool(res.click[0])}
        return self._obs.flat()[0], float(res.reward[0]), terminated, truncated, info


__all__ = ["RecSimEnv"]
