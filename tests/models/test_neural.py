"""The NeuralRecommender contract: ``fit(data, *, valid, callbacks)``, the validation metric a
callback reads, exceptions from callbacks, ``report_.best_epoch`` and the fixed-epoch refit."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lmrec.data.dataset import Dataset
from lmrec.data.split import leave_last_out
from lmrec.models.bert4rec import BERT4Rec
from lmrec.models.neural import NeuralRecommender
from lmrec.models.sasrec import SASRec
from lmrec.models.two_tower import TwoTower
from lmrec.nn.training import _EarlyStopBest
from tests.models.test_sasrec import chain_data

torch.set_num_threads(1)  # tiny models: extra threads only spin on a shared machine

TRAIN = {"batch_size": 32, "lr": 5e-3, "progress_bar": False, "accelerator": "cpu"}
PARAMS: dict[type[NeuralRecommender], dict[str, Any]] = {
    SASRec: {"dim": 16, "max_len": 8, "n_blocks": 1},
    BERT4Rec: {"dim": 16, "max_len": 8, "n_blocks": 1},
    TwoTower: {"dim": 16, "max_len": 8, "n_layers": 1, "fusion": "id_only"},
}
MODELS = list(PARAMS)


def make(cls: type[NeuralRecommender], **train: Any) -> NeuralRecommender:
    return cls(**PARAMS[cls], train={**TRAIN, **train})


@pytest.fixture(scope="module")
def chain() -> Dataset:
    return chain_data(n_users=40, length=6)


class Recorder(Callback):
    """Reads the validation metric where a pruning callback would."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.saw_stopper_first = False

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        cbs = trainer.callbacks
        self.saw_stopper_first = cbs.index(self) > next(
            i for i, c in enumerate(cbs) if isinstance(c, _EarlyStopBest)
        )

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        value = trainer.callback_metrics["val_ndcg@10"]
        assert isinstance(value, torch.Tensor) and value.is_floating_point()
        self.values.append(float(value))


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_fit_signature(cls: type[NeuralRecommender]) -> None:
    sig = inspect.signature(cls.fit)
    assert list(sig.parameters) == ["self", "data", "valid", "callbacks"]
    assert sig.parameters["valid"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["valid"].default is None
    assert tuple(sig.parameters["callbacks"].default) == ()


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_callback_reads_the_validation_metric(cls: type[NeuralRecommender], chain: Dataset) -> None:
    split = leave_last_out(chain)
    rec = Recorder()
    model = make(cls, max_epochs=3, patience=10)
    model.fit(split.train, valid=split.valid, callbacks=[rec])
    rep = model.report_
    assert rep is not None and rec.saw_stopper_first
    assert rec.values == pytest.approx([e.val_metric for e in rep.epochs], abs=1e-6)
    assert rep.best_epoch is not None and 1 <= rep.best_epoch <= 3
    assert rep.best_metric == pytest.approx(max(rec.values), abs=1e-6)
    assert rec.values.index(max(rec.values)) + 1 == rep.best_epoch


class Prune(Exception):
    """Stands in for optuna.TrialPruned (any exception must leave fit)."""


class PruneAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch + 1 == self.epoch:
            raise Prune(f"pruned at {float(trainer.callback_metrics['val_ndcg@10']):.3f}")


@pytest.mark.parametrize("cls", [SASRec, TwoTower], ids=lambda c: c.name)
def test_exception_from_a_callback_leaves_fit(cls: type[NeuralRecommender], chain: Dataset) -> None:
    split = leave_last_out(chain)
    with pytest.raises(Prune, match="pruned at"):
        make(cls, max_epochs=5, patience=10).fit(split.train, valid=split.valid, callbacks=[PruneAt(2)])


def test_optuna_trial_pruned_propagates(chain: Dataset) -> None:
    optuna = pytest.importorskip("optuna")

    class OptunaPrune(Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            raise optuna.TrialPruned()

    split = leave_last_out(chain)
    with pytest.raises(optuna.TrialPruned):
        make(SASRec, max_epochs=3).fit(split.train, valid=split.valid, callbacks=[OptunaPrune()])


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_refit_trains_exactly_max_epochs(cls: type[NeuralRecommender], chain: Dataset) -> None:
    model = cls(**PARAMS[cls], val_fraction=0.0, train={**TRAIN, "max_epochs": 3, "patience": 1000})
    model.fit(chain)
    rep = model.report_
    assert rep is not None and rep.n_epochs == 3 and not rep.stopped_early
    assert all(e.val_metric is None for e in rep.epochs)
    assert rep.best_epoch == 3 and rep.best_metric is None


def test_sequential_names_and_hooks_stay() -> None:
    from lmrec.models import sasrec

    for name in ("SequentialRecommender", "SequenceNet", "SequentialConfig"):
        assert hasattr(sasrec, name)
    for hook in ("_collator", "_training_windows", "_prepare", "_item_text", "_get_extra", "_set_state"):
        assert callable(getattr(sasrec.SequentialRecommender, hook))
    assert issubclass(sasrec.SequentialRecommender, NeuralRecommender)
