"""Validation-only hyperparameter search (Optuna) and the refit protocol.

::

    from lmrec.tuning import tune, refit, evaluate_refit

    result = tune("ease", split, n_trials=20)            # fits on train, scores phase="valid" only
    model = refit("ease", result.params, split, result.best_epoch)   # fit on train + valid
    test = evaluate_refit(model, split, ks=(10,))         # test once, history = train + valid

``lmrec tune`` runs the same functions and writes an experiment TOML (``to_model_entry``).
:class:`OptunaPruning` (the Lightning pruning callback) is imported on first use: it needs the
``torch`` extra.
"""

from __future__ import annotations

from typing import Any

from lmrec.tuning.search import (
    TuneResult,
    evaluate_refit,
    fit_on_train,
    flat_params,
    is_neural,
    refit,
    refit_params,
    refit_split,
    tune,
)
from lmrec.tuning.spaces import SPACES, Suggest, get_space, register_space

__all__ = [
    "SPACES",
    "OptunaPruning",
    "Suggest",
    "TuneResult",
    "evaluate_refit",
    "fit_on_train",
    "flat_params",
    "get_space",
    "is_neural",
    "refit",
    "refit_params",
    "refit_split",
    "register_space",
    "tune",
]


def __getattr__(name: str) -> Any:
    if name == "OptunaPruning":  # Lightning is the torch extra: import it only when asked
        from lmrec.tuning.pruning import OptunaPruning

        return OptunaPruning
    raise AttributeError(f"module 'lmrec.tuning' has no attribute {name!r}")
