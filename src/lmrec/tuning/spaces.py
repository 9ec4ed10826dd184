"""Search spaces: for each registered model, the few hyperparameters worth searching and their ranges.

A space is a function ``space(s: Suggest) -> None`` that names each parameter once through ``s``
(``s.float("l2", 1.0, 1e4, log=True)``); the names are the model's config fields, with
``train.<field>`` for the :class:`~lmrec.nn.training.NeuralTrainConfig` of neural models. Ranges
are deliberately small: they bracket the values that work on MovieLens-sized data, so a 20-50
trial budget covers them. A parameter the caller fixes (``tune(..., fixed_params=...)``) is not
searched: :class:`Suggest` returns the fixed value and Optuna never sees the axis, so the sampler
spends no trials on it. Models with no space (``popularity``, ``random``) are fitted once.

Register a space for a third-party model with :func:`register_space`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna

__all__ = ["SPACES", "Space", "Suggest", "flatten", "get_space", "register_space", "unflatten"]


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}`` (one level per nested table)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def unflatten(params: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten`."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


class Suggest:
    """What a space function draws from: Optuna's ``trial.suggest_*``, minus the fixed parameters.

    ``params`` collects the drawn (and fixed) values under their dotted names; ``trial=None`` gives
    every parameter its fixed value or nothing (used to list a space's axes without a study).
    """

    def __init__(self, trial: optuna.Trial | None, fixed: Mapping[str, Any] | None = None) -> None:
        self.trial = trial
        self.fixed = flatten(fixed or {})
        self.params: dict[str, Any] = {}
        self.axes: list[str] = []

    def _take(self, name: str, draw: Callable[[optuna.Trial], Any]) -> Any:
        if name in self.fixed:
            return self.fixed[name]
        self.axes.append(name)
        if self.trial is None:
            return None
        value = draw(self.trial)
        self.params[name] = value
        return value

    def float(
        self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None
    ) -> Any:
        def draw(t: optuna.Trial) -> float:
            value = t.suggest_float(name, low, high, log=log, step=step)
            # a stepped draw is low + i * step: 0.30000000000000004 would land in configs as is
            return round(value, 10) if step is not None else value

        return self._take(name, draw)

    def int(self, name: str, low: int, high: int, *, log: bool = False, step: int = 1) -> Any:
        return self._take(name, lambda t: t.suggest_int(name, low, high, log=log, step=step))

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._take(name, lambda t: t.suggest_categorical(name, list(choices)))

    def value(self, name: str, default: Any) -> Any:
        """A fixed parameter's value (or ``default``): lets a space depend on what the caller fixed."""
        return self.fixed.get(name, default)


Space = Callable[[Suggest], None]


# ------------------------------------------------------------------------------------ the spaces
def _none(s: Suggest) -> None:
    """Nothing to tune: fitted once."""


def _item_knn(s: Suggest) -> None:
    s.int("k", 10, 500, log=True)
    s.float("shrink", 0.0, 100.0)
    s.categorical("weighting", ["none", "tfidf", "bm25"])


def _user_knn(s: Suggest) -> None:
    s.int("k", 5, 200, log=True)
    s.float("shrink", 0.0, 100.0)
    s.categorical("weighting", ["none", "tfidf", "bm25"])


def _ease(s: Suggest) -> None:
    # λ matters on a log scale (Steck used 200-1000 on large data; ml-100k wants ~100)
    s.float("l2", 1.0, 1e4, log=True)


def _als(s: Suggest) -> None:
    s.categorical("factors", [16, 32, 64, 128])
    s.float("regularization", 1e-3, 10.0, log=True)
    s.float("alpha", 0.5, 50.0, log=True)


def _bpr(s: Suggest) -> None:
    s.categorical("factors", [16, 32, 64, 128])
    s.float("learning_rate", 1e-3, 0.1, log=True)
    s.float("regularization", 1e-4, 0.1, log=True)
    s.int("iterations", 50, 400, step=50)


def _content(s: Suggest) -> None:
    s.float("recency_half_life", 2.0, 500.0, log=True)
    s.categorical("center", [True, False])


# weight decay: 0 is a real option, so a short categorical list rather than a log range
_WEIGHT_DECAY = [0.0, 1e-5, 1e-4, 1e-3, 1e-2]


def _neural_train(s: Suggest, lr: tuple[float, float]) -> None:
    s.float("train.lr", *lr, log=True)
    s.categorical("train.weight_decay", _WEIGHT_DECAY)


def _two_tower(s: Suggest) -> None:
    s.categorical("dim", [32, 64, 128])
    s.float("dropout", 0.0, 0.5, step=0.1)
    if s.value("fusion", "sum") in ("sum", "gate"):
        s.float("id_dropout", 0.0, 0.5, step=0.1)
    s.float("temperature", 0.02, 0.2, log=True)
    _neural_train(s, (3e-4, 1e-2))


def _sasrec(s: Suggest) -> None:
    # dim x dropout is the pair the SASRec defaults were chosen on (width 128 / dropout 0.4)
    s.categorical("dim", [32, 64, 128])
    s.float("dropout", 0.1, 0.5, step=0.1)
    _neural_train(s, (3e-4, 5e-3))


def _bert4rec(s: Suggest) -> None:
    s.categorical("dim", [32, 64, 128])  # all divisible by BERT4Rec's 2 heads
    s.float("dropout", 0.1, 0.5, step=0.1)
    s.float("mask_prob", 0.1, 0.4, step=0.05)
    _neural_train(s, (3e-4, 5e-3))


#: registry name -> search space
SPACES: dict[str, Space] = {
    "popularity": _none,
    "random": _none,
    "item_knn": _item_knn,
    "user_knn": _user_knn,
    "ease": _ease,
    "als": _als,
    "bpr": _bpr,
    "content": _content,
    "two_tower": _two_tower,
    "sasrec": _sasrec,
    "bert4rec": _bert4rec,
}


def register_space(model_name: str, space: Space) -> None:
    """Give a (third-party) registered model a search space."""
    SPACES[model_name] = space


def get_space(model_name: str) -> Space:
    """The space of ``model_name``; a model without one is fitted once with its defaults."""
    return SPACES.get(model_name, _none)
