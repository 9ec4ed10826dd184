"""Validation-only hyperparameter search (Optuna TPE) and the refit protocol.

Protocol::

    tune(name, split)        fit on split.train, score phase="valid" only; pick the best params
                             (neural models: early stopping on split.valid picks the epoch count)
    refit(name, params, split, best_epoch)
                             fit once on split.full = train + valid with those params; neural
                             models train exactly best_epoch epochs with no validation data
    evaluate_refit(model, split)
                             phase="test" with train + valid as every user's history; the test
                             interactions are looked at once, after every choice is made

Nothing here ever evaluates ``phase="test"`` while choosing: the study's objective calls
:func:`lmrec.evaluation.evaluate` with ``phase="valid"`` only, so test numbers cannot leak into
the chosen parameters (the mistake a grid read off test makes: optimistic, unreproducible numbers).

The sampler is Optuna's TPE seeded with ``seed``, so a rerun with the same trial budget proposes the
same parameters (a ``timeout`` budget depends on the machine's speed, a trial budget does not).

Several processes (on one machine or many) can work on one study through a shared Optuna storage
(``storage="sqlite:///study.db"`` or any SQLAlchemy URL such as ``postgresql://...``, with
``study_name``): each process joins the study or creates it, trials are shared, and ``n_trials`` is
the study's total (about: processes that start a trial at the same moment may each finish theirs).
A study remembers what it tunes (model, metric, fixed parameters, dataset checksum and split), and a
process asking for something else is refused rather than mixing incomparable trials. Each process
seeds its sampler with ``seed`` and its process id, because processes sharing one seed would
propose the same first trials; a shared study is therefore not reproducible trial by trial (the
interleaving of processes is not either), only its protocol is (:mod:`lmrec.tuning.storage`).
Neural trials are pruned by a ``MedianPruner`` from their per-epoch validation NDCG@10 (see
:mod:`lmrec.tuning.pruning`).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
import polars as pl
import tomli_w

from lmrec.data.dataset import Dataset
from lmrec.data.split import Split
from lmrec.errors import LmrecError
from lmrec.evaluation.evaluate import EvalResult, evaluate
from lmrec.models.base import Recommender
from lmrec.models.registry import create_model, get_model_class
from lmrec.tuning.spaces import Suggest, flatten, get_space, unflatten
from lmrec.tuning.storage import claim_study, open_storage, worker_seed

__all__ = [
    "TuneResult",
    "evaluate_refit",
    "fit_on_train",
    "is_neural",
    "refit",
    "refit_params",
    "refit_split",
    "tune",
]

#: trials run when neither ``n_trials`` nor ``timeout`` is given
DEFAULT_TRIALS = 20


def is_neural(model_name: str) -> bool:
    """Whether the model trains by epochs (its config embeds ``train: NeuralTrainConfig``)."""
    return "train" in get_model_class(model_name).Config.model_fields


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``, nested tables (``train``) merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_metric(metric: str) -> int:
    _name, sep, k = metric.partition("@")
    if not sep or not k.isdigit() or int(k) <= 0:
        raise LmrecError(f"metric must look like 'ndcg@10' (a ranking metric at a cutoff), got {metric!r}")
    return int(k)


def fit_on_train(
    model: Recommender, data: Dataset, valid: pl.DataFrame | None = None, callbacks: list[Any] | None = None
) -> bool:
    """``model.fit(data)``, passing ``valid`` and Lightning ``callbacks`` where ``fit`` takes them.

    Neural models take ``fit(data, *, valid=..., callbacks=[...])``; older ones only ``valid``, and
    the collaborative-filtering models neither. Returns whether the callbacks were passed.
    """
    params = inspect.signature(model.fit).parameters
    kwargs: dict[str, Any] = {}
    if valid is not None and "valid" in params:
        kwargs["valid"] = valid
    if callbacks and "callbacks" in params:
        kwargs["callbacks"] = callbacks
    model.fit(data, **kwargs)
    return "callbacks" in kwargs


# ------------------------------------------------------------------------------------ result
@dataclass
class TuneResult:
    """What a study found: the best parameters, their validation score, and every trial."""

    model: str
    #: the best trial's parameters, fixed ones included (nested: ``{"train": {"lr": ...}}``)
    params: dict[str, Any]
    #: e.g. ``"ndcg@10"``, always measured on ``phase="valid"``
    metric: str
    best_value: float
    #: one row per trial: trial, state ("complete", "pruned", ...), value, seconds, best_epoch and
    #: one column per searched parameter (a pruned trial's value is its last validation report)
    trials: pl.DataFrame
    #: neural models: the best trial's best epoch, counted from 1 as ``TrainingReport.best_epoch``
    #: (the number of epochs behind the weights kept), i.e. the epoch count the refit trains
    best_epoch: int | None = None
    #: wall time of the whole study
    seconds: float = 0.0
    seed: int = 0
    fixed_params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_trials(self) -> int:
        return self.trials.height

    @property
    def epochs(self) -> int | None:
        """Epochs the refit trains (``best_epoch``); None for models that do not train by epochs."""
        return self.best_epoch

    @property
    def neural(self) -> bool:
        return is_neural(self.model)

    def refit_params(self) -> dict[str, Any]:
        """The parameters :func:`refit` fits with (neural: fixed epoch count, no validation)."""
        return refit_params(self.model, self.params, self.best_epoch)

    def to_model_entry(self) -> dict[str, Any]:
        """One ``[[models]]`` table of an experiment TOML (``lmrec evaluate/train --config``).

        Neural models get their refit parameters (``train.max_epochs`` = the epoch count chosen on
        validation, ``val_fraction = 0``) and ``epochs_tuned = true``, the marker that tells the
        refit protocol not to choose the epoch count again.
        """
        entry: dict[str, Any] = {"name": self.model, "params": self.refit_params()}
        if self.neural and self.best_epoch is not None:
            entry["epochs_tuned"] = True
        tuning: dict[str, Any] = {
            "metric": self.metric,
            "phase": "valid",
            "n_trials": self.n_trials,
            "seconds": round(self.seconds, 1),
            "seed": self.seed,
        }
        if math.isfinite(self.best_value):
            tuning["valid"] = round(self.best_value, 5)
        if self.best_epoch is not None:
            tuning["best_epoch"] = self.best_epoch
        entry["tuning"] = tuning
        return entry

    def to_toml_models(self) -> str:
        """The ``[[models]]`` table as TOML text (append it to an experiment config)."""
        return tomli_w.dumps({"models": [self.to_model_entry()]})

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "params": self.params,
            f"valid_{self.metric}": self.best_value,
            "best_epoch": self.best_epoch,
            "n_trials": self.n_trials,
            "seconds": round(self.seconds, 2),
        }


# ------------------------------------------------------------------------------------ the study
def tune(
    model_name: str,
    split: Split,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    metric: str = "ndcg@10",
    seed: int = 0,
    fixed_params: Mapping[str, Any] | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
) -> TuneResult:
    """Search ``model_name``'s space (:mod:`lmrec.tuning.spaces`) on ``split``'s validation phase.

    Every trial fits on ``split.train`` and is scored by ``metric`` on ``phase="valid"``. Budget:
    ``n_trials`` and/or ``timeout`` seconds (whichever ends first; neither: 20 trials); a model
    with nothing to search is fitted once. ``fixed_params`` are passed to every trial and not
    searched (``{"train": {"max_epochs": 30}}`` style nesting for neural models). ``on_trial`` is
    called after each finished trial (progress display).

    ``storage`` (a database URL) makes the study shared and persistent: it is joined if it exists
    (``study_name``, default ``lmrec-<model>``), other processes can run trials on it at the same
    time, and ``n_trials`` counts the study's trials from every process (see the module docstring).
    """
    if split.valid is None or split.valid.height == 0:
        raise LmrecError("tuning needs a split with validation interactions (e.g. leave_last_out n_valid=1)")
    k = _parse_metric(metric)
    fixed = dict(fixed_params or {})
    space = get_space(model_name)
    probe = Suggest(None, fixed)
    space(probe)
    searchable = bool(probe.axes)
    if not searchable:
        n_trials, timeout = 1, None
    elif n_trials is None and timeout is None:
        n_trials = DEFAULT_TRIALS
    neural = is_neural(model_name)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("pid", os.getpid())  # which process ran it (shared studies)
        s = Suggest(trial, fixed)
        space(s)
        params = _merge(fixed, unflatten(s.params))
        if neural and "progress_bar" not in (fixed.get("train") or {}):
            # one tqdm bar per trial would bury the study's own progress; not a hyperparameter, so
            # it stays out of the returned params
            params = _merge(params, {"train": {"progress_bar": False}})
        model = create_model(model_name, **params)
        callbacks = []
        if neural:
            from lmrec.tuning.pruning import OptunaPruning

            callbacks.append(OptunaPruning(trial))
        t0 = time.perf_counter()
        try:
            passed = fit_on_train(model, split.train, split.valid if neural else None, callbacks)
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        report = getattr(model, "report_", None)
        if neural and report is not None:
            trial.set_user_attr("best_epoch", report.best_epoch)
            trial.set_user_attr("n_epochs", report.n_epochs)
            if not passed:  # fit() took no callbacks: give the pruner the curve after the fact
                for rec in report.epochs:
                    if rec.val_metric is not None and math.isfinite(rec.val_metric):
                        trial.report(rec.val_metric, rec.epoch + 1)
        res = evaluate(model, split, ks=(k,), phase="valid", beyond_accuracy=False, auc=False)
        if metric not in res.metrics:
            raise LmrecError(f"evaluate() reports no {metric!r}; it has {sorted(res.metrics)}")
        return float(res.metrics[metric])

    logger = optuna.logging.get_logger("optuna")
    level = logger.level
    optuna.logging.set_verbosity(logging.WARNING)  # one INFO line per trial is noise inside a library call
    try:
        shared = storage is not None
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=worker_seed(seed) if shared else seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
            study_name=study_name or f"lmrec-{model_name}",
            storage=open_storage(storage) if storage is not None else None,
            load_if_exists=shared,
        )
        if shared:
            claim_study(study, storage or "", model_name, metric, fixed, split)
        started = len(study.trials)  # by every process sharing the study, before this one
        if searchable and not started:
            first = default_trial(model_name, space, fixed)
            if first:  # the shipped defaults are trial 0: a small budget never ends below them
                study.enqueue_trial(first)
        callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = []
        if on_trial is not None:
            callbacks.append(lambda _study, trial: on_trial(trial))
        if shared and n_trials is not None:
            # the budget is the study's, not this process's: stop once every process together
            # has started n_trials (running ones count, or each process would run its own n)
            total, n_trials = n_trials, max(n_trials - started, 0)
            callbacks.append(optuna.study.MaxTrialsCallback(total, states=None))
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=callbacks)
        seconds = time.perf_counter() - t0
    finally:
        logger.setLevel(level)

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise LmrecError(
            f"no {model_name} trial completed within the budget ({len(study.trials)} started); "
            "raise --trials or --timeout"
        )
    best = study.best_trial
    return TuneResult(
        model=model_name,
        params=_merge(fixed, unflatten(best.params)),
        metric=metric,
        best_value=float(best.value) if best.value is not None else float("nan"),
        trials=_trials_frame(study, searched=probe.axes),
        best_epoch=best.user_attrs.get("best_epoch"),
        seconds=seconds,
        seed=seed,
        fixed_params=fixed,
    )


def _trials_frame(study: optuna.Study, searched: list[str]) -> pl.DataFrame:
    rows = []
    for t in study.trials:
        row: dict[str, Any] = {
            "trial": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "seconds": t.user_attrs.get("seconds"),
            "best_epoch": t.user_attrs.get("best_epoch"),
        }
        row.update({name: t.params.get(name) for name in searched})
        rows.append(row)
    schema = {
        "trial": pl.Int64,
        "state": pl.String,
        "value": pl.Float64,
        "seconds": pl.Float64,
        "best_epoch": pl.Int64,
    }
    return pl.DataFrame(rows, schema_overrides=schema, strict=False) if rows else pl.DataFrame(schema=schema)


class _RangeProbe:
    """A stand-in for ``optuna.Trial`` that records each axis's range instead of drawing."""

    def __init__(self) -> None:
        self.ranges: dict[str, tuple[str, Any]] = {}

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        self.ranges[name] = ("range", (low, high))
        return low

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        self.ranges[name] = ("range", (low, high))
        return low

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.ranges[name] = ("choices", list(choices))
        return choices[0]


def default_trial(model_name: str, space: Any, fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The model's config defaults for every searched axis that its space can express.

    Enqueued as the study's first trial, so tuning compares against the shipped defaults instead
    of starting from a random draw; axes whose default lies outside the space are left to TPE.
    """
    probe = _RangeProbe()
    space(Suggest(probe, fixed))  # type: ignore[arg-type]
    defaults = flatten(get_model_class(model_name).Config().model_dump(mode="json"))
    out: dict[str, Any] = {}
    for name, (kind, bounds) in probe.ranges.items():
        if name not in defaults:
            continue
        value = defaults[name]
        in_range = isinstance(value, int | float) and bounds[0] <= value <= bounds[1]
        if (kind == "choices" and value in bounds) or (kind == "range" and in_range):
            out[name] = value
    return out


# ------------------------------------------------------------------------------------ refit
def refit_params(model_name: str, params: Mapping[str, Any], best_epoch: int | None = None) -> dict[str, Any]:
    """Parameters for the refit on train + valid.

    Neural models: ``val_fraction = 0`` (no validation data, so no early stopping) and, given
    ``best_epoch`` (counted from 1, as ``TrainingReport.best_epoch``), ``train.max_epochs =
    best_epoch``: the epoch count was chosen on validation, and the refit cannot choose it again
    without validation data. Without
    ``best_epoch`` the params' own ``train.max_epochs`` stands (a tuned config already holds it).
    Other models: ``params`` unchanged.
    """
    out = dict(params)
    if not is_neural(model_name):
        return out
    if "val_fraction" in get_model_class(model_name).Config.model_fields:
        out["val_fraction"] = 0.0
    if best_epoch is not None:
        if best_epoch < 1:
            raise LmrecError(f"best_epoch counts epochs from 1, got {best_epoch}")
        out["train"] = _merge(out.get("train") or {}, {"max_epochs": int(best_epoch)})
    return out


def refit(
    model_name: str, params: Mapping[str, Any], split: Split, best_epoch: int | None = None
) -> Recommender:
    """Fit ``model_name`` with ``params`` on ``split.full`` (train + valid); see :func:`refit_params`."""
    model = create_model(model_name, **refit_params(model_name, params, best_epoch))
    model.fit(split.full)
    return model


def refit_split(split: Split) -> Split:
    """The split a refitted model is tested on: train + valid as training data, no validation part.

    ``evaluate(..., phase="test")`` adds the validation events to every query as extra history;
    a model fitted on train + valid already holds them, so on the original split they would count
    twice (twice in a SASRec sequence, weight 2 in a history vector). On this split the query
    history is train + valid exactly once, and cold items are those absent from train + valid.
    """
    return Split(
        train=split.full,
        test=split.test,
        valid=None,
        test_history=split.test_history,
        protocol={**split.protocol, "fit_on": "train+valid"},
    )


def evaluate_refit(model: Recommender, split: Split, ks: Any = (5, 10, 20), **kwargs: Any) -> EvalResult:
    """``evaluate(phase="test")`` of a model fitted on ``split.full``, labelled as the refit protocol."""
    res = evaluate(model, refit_split(split), ks, phase="test", **kwargs)
    res.info["split"] = split.summary()
    res.info["fit_on"] = "train+valid"
    res.info["history_at_query_time"] = "train + valid" + (
        " + revealed cold-user history" if split.test_history is not None else ""
    )
    res.info["protocol"] = "refit"
    return res


def flat_params(params: Mapping[str, Any]) -> str:
    """``k=50, train.lr=0.001`` for tables and logs."""
    return ", ".join(f"{k}={_short(v)}" for k, v in flatten(params).items()) or "-"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
