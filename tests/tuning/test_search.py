"""The tuner: validation-only studies within a budget, pruning, the refit protocol."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import optuna
import pytest

from lmrec.data.split import Split
from lmrec.errors import LmrecError
from lmrec.models.registry import get_model_class
from lmrec.tuning import (
    SPACES,
    OptunaPruning,
    Suggest,
    evaluate_refit,
    fit_on_train,
    refit,
    refit_params,
    refit_split,
    search,
    tune,
)
from lmrec.tuning.spaces import flatten, unflatten
from tests.tuning.fakes import PEAK, FakeNeural, clustered_split, fake_neural

__all__ = ["fake_neural"]  # the fixture, imported for pytest


@pytest.fixture(scope="module")
def split() -> Split:
    return clustered_split()


def test_study_runs_within_trial_budget_and_is_seeded(split):
    a = tune("ease", split, n_trials=5, seed=3)
    b = tune("ease", split, n_trials=5, seed=3)
    assert a.n_trials == 5 and set(a.trials["state"]) == {"complete"}
    assert a.best_value == pytest.approx(a.trials["value"].max())
    assert 1.0 <= a.params["l2"] <= 1e4
    assert a.params == b.params  # seeded TPE: a rerun proposes the same values
    assert a.best_epoch is None and a.epochs is None and a.seconds > 0


def test_first_trial_is_the_shipped_defaults(split):
    res = tune("item_knn", split, n_trials=2, seed=0)
    first = res.trials.row(0, named=True)
    assert (first["k"], first["shrink"], first["weighting"]) == (50, 50.0, "tfidf")
    # the defaults stay the answer unless a later trial beats them on validation
    assert res.best_value >= first["value"]


def test_default_trial_skips_defaults_outside_the_space():
    from lmrec.tuning.search import default_trial

    def space(s):
        s.float("l2", 1.0, 10.0, log=True)  # EASE's default 100 is outside this range

    assert default_trial("ease", space, {}) == {}


def test_timeout_budget_stops_the_study(split):
    res = tune("item_knn", split, timeout=0.3, seed=0)
    assert res.n_trials >= 1 and res.seconds < 30


def test_only_the_validation_phase_is_scored(split, monkeypatch):
    phases = []
    real = search.evaluate

    def spy(model: Any, sp: Split, *args: Any, **kwargs: Any) -> Any:
        phases.append(kwargs.get("phase"))
        assert kwargs.get("phase") == "valid", "the tuner must never look at test"
        return real(model, sp, *args, **kwargs)

    monkeypatch.setattr(search, "evaluate", spy)
    tune("item_knn", split, n_trials=3)
    assert phases == ["valid"] * 3


def test_empty_space_runs_once_and_fixed_params_are_not_searched(split):
    assert tune("popularity", split, n_trials=10).n_trials == 1
    res = tune("item_knn", split, n_trials=3, fixed_params={"weighting": "none"})
    assert "weighting" not in res.trials.columns and {"k", "shrink"} <= set(res.trials.columns)
    assert res.params["weighting"] == "none"


def test_split_without_validation_and_bad_metric_are_refused(split):
    no_valid = Split(train=split.train, test=split.test, valid=None)
    with pytest.raises(LmrecError, match="validation"):
        tune("ease", no_valid, n_trials=1)
    with pytest.raises(LmrecError, match="metric"):
        tune("ease", split, n_trials=1, metric="ndcg")


#: the models the tuner promises a space for (others are fitted once with their defaults)
SEARCHED = ["item_knn", "user_knn", "ease", "als", "bpr", "content", "two_tower", "sasrec", "bert4rec"]


@pytest.mark.parametrize("name", SEARCHED)
def test_every_model_has_a_space_its_config_accepts(name):
    try:
        cls = get_model_class(name)
    except (LmrecError, ImportError) as exc:  # an optional extra missing (or mid-install)
        pytest.skip(f"{name} not importable here: {exc}")
    assert name in SPACES
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        s = Suggest(study.ask())
        SPACES[name](s)
        assert s.axes, f"{name}: empty search space"
        cls.Config(**unflatten(s.params))  # every draw is a valid config


def test_flatten_unflatten_round_trip():
    params = {"dim": 64, "train": {"lr": 1e-3, "weight_decay": 0.0}}
    assert flatten(params) == {"dim": 64, "train.lr": 1e-3, "train.weight_decay": 0.0}
    assert unflatten(flatten(params)) == params


# ---------------------------------------------------------------------------------- pruning
class FakeTrial:
    def __init__(self, prune_after: int) -> None:
        self.reports: list[tuple[int, float]] = []
        self.prune_after = prune_after

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return len(self.reports) >= self.prune_after


def _trainer(epoch: int, metrics: dict[str, float], max_epochs: int = 10) -> SimpleNamespace:
    return SimpleNamespace(callback_metrics=metrics, current_epoch=epoch, max_epochs=max_epochs)


def test_pruning_callback_reports_and_prunes():
    trial = FakeTrial(prune_after=2)
    cb = OptunaPruning(trial)
    module = SimpleNamespace(train_cfg=SimpleNamespace(val_every=1))
    cb.on_train_epoch_end(_trainer(0, {}), module)  # no validation metric: skipped
    assert trial.reports == []
    cb.on_train_epoch_end(_trainer(0, {"val_ndcg@10": 0.05}), module)
    assert trial.reports == [(1, 0.05)]
    with pytest.raises(optuna.TrialPruned):
        cb.on_train_epoch_end(_trainer(1, {"val_ndcg@10": 0.04}), module)
    assert trial.reports == [(1, 0.05), (2, 0.04)]


def test_pruning_callback_skips_epochs_without_a_validation_round():
    trial = FakeTrial(prune_after=99)
    cb = OptunaPruning(trial)
    module = SimpleNamespace(train_cfg=SimpleNamespace(val_every=2))
    for epoch in range(5):  # a stale metric stays in callback_metrics between rounds
        cb.on_train_epoch_end(_trainer(epoch, {"val_ndcg@10": 0.1}, max_epochs=5), module)
    assert [step for step, _ in trial.reports] == [2, 4, 5]  # every 2nd epoch, and the last


def test_neural_trials_get_valid_and_pruning_and_record_the_best_epoch(split, fake_neural):
    res = tune("fake_neural", split, n_trials=8, seed=0)
    # every trial fitted on train with the validation frame (early stopping picks the epoch)
    assert {f[0] for f in fake_neural.fits} == {split.train.n_interactions}
    assert all(valid for _, valid, _, _ in fake_neural.fits)
    states = res.trials["state"].to_list()
    assert "pruned" in states and "complete" in states  # the median pruner stopped weak trials
    assert res.best_epoch == PEAK and res.epochs == PEAK
    assert "progress_bar" not in res.params.get("train", {})  # quiet trials, clean params
    pruned = res.trials.filter(res.trials["state"] == "pruned")
    assert (pruned["value"] < res.best_value).all()  # optuna keeps a pruned trial's last report


def test_fit_without_callbacks_falls_back(split):
    class Old(FakeNeural):
        def fit(self, data, valid=None):  # the pre-refactor signature: no callbacks
            return super().fit(data, valid=valid)

    model = Old()
    assert fit_on_train(model, split.train, split.valid, [object()]) is False
    assert model.report_.best_epoch == PEAK


# ---------------------------------------------------------------------------------- refit
def test_refit_params_fix_the_epoch_count_and_drop_validation(fake_neural):
    p = refit_params("fake_neural", {"train": {"lr": 0.01}}, best_epoch=3)
    assert p == {"train": {"lr": 0.01, "max_epochs": 3}, "val_fraction": 0.0}
    assert refit_params("ease", {"l2": 10.0}, best_epoch=None) == {"l2": 10.0}
    with pytest.raises(LmrecError):
        refit_params("fake_neural", {}, best_epoch=0)


def test_refit_uses_best_epoch_and_train_plus_valid(split, fake_neural):
    res = tune("fake_neural", split, n_trials=4, seed=0)
    fake_neural.fits.clear()
    model = refit("fake_neural", res.params, split, res.best_epoch)
    n_rows, valid_given, max_epochs, val_fraction = fake_neural.fits[-1]
    assert n_rows == split.train.n_interactions + split.valid.height  # train + valid
    assert not valid_given and val_fraction == 0.0 and max_epochs == res.best_epoch
    assert model.report_.n_epochs == res.best_epoch

    entry = res.to_model_entry()
    assert entry["epochs_tuned"] is True and entry["params"]["train"]["max_epochs"] == res.best_epoch
    assert entry["tuning"]["phase"] == "valid"


def test_evaluate_refit_counts_the_validation_history_once(split):
    model = refit("ease", {"l2": 10.0}, split)
    assert model.train_history.sum() == split.full.n_interactions  # fitted on train + valid
    rs = refit_split(split)
    assert rs.valid is None and rs.train.n_interactions == split.full.n_interactions
    res = evaluate_refit(model, split, ks=(10,))
    assert res.info["protocol"] == "refit" and res.info["fit_on"] == "train+valid"
    assert res.info["split"]["valid_rows"] == split.valid.height
    assert res.metrics["n_users"] == split.test["user_idx"].n_unique()


def test_pruning_stops_a_real_lightning_fit(split):
    pytest.importorskip("lightning")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    train = {"max_epochs": 5, "batch_size": 32, "progress_bar": False, "accelerator": "cpu"}
    model = get_model_class("sasrec")(dim=8, max_len=8, n_blocks=1, train=train)
    trial = FakeTrial(prune_after=1)
    with pytest.raises(optuna.TrialPruned):
        fit_on_train(model, split.train, split.valid, [OptunaPruning(trial)])
    assert [step for step, _ in trial.reports] == [1]  # pruned after the first validation round
