"""``FedMF.choose_fold_in``: the serving-time fold-in λ is picked on validation, the table untouched
(no Flower simulation: a fixed item table stands in for a trained one)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")

from lmrec.data.dataset import Dataset
from lmrec.data.split import Split, leave_last_out
from lmrec.errors import LmrecError
from lmrec.evaluation import evaluate
from lmrec.federated.model import FedMF


@pytest.fixture(scope="module")
def split(ml100k: Dataset) -> Split:
    return leave_last_out(ml100k)


def _served(split: Split, regularization: float = 0.1) -> FedMF:
    """A FedMF serving a fixed table: log-popularity biases, random factors with a popular direction."""
    model = FedMF(factors=8, regularization=regularization, seed=0)
    model._start_fit(split.train)
    counts = np.bincount(split.train.interactions["item_idx"].to_numpy(), minlength=split.train.n_items)
    table = np.random.default_rng(0).standard_normal((split.train.n_items, 9)).astype(np.float32) * 0.3
    table[:, 0] += np.log1p(counts) / 3
    table[:, -1] = np.log1p(counts)
    model._set_items(table)
    return model


def _valid(model: FedMF, split: Split) -> float:
    res = evaluate(model, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False)
    return float(res.metrics["ndcg@10"])


def test_the_best_validation_lambda_is_kept_and_the_table_is_untouched(split: Split) -> None:
    model = _served(split)
    table = model.item_factors_.copy()
    scores = model.choose_fold_in(split, grid=(0.003, 0.1, 10.0))
    assert list(scores) == [0.003, 0.1, 10.0]
    assert len(set(scores.values())) > 1  # λ matters, else the choice would be vacuous
    best = max(scores, key=lambda lam: scores[lam])
    assert model.config.regularization == best
    assert np.array_equal(model.item_factors_, table)
    # each score is the validation NDCG@10 of the model served with that λ
    for lam, value in scores.items():
        assert _valid(_served(split, regularization=lam), split) == pytest.approx(value)


def test_ties_keep_the_first_lambda_of_the_grid(split: Split) -> None:
    model = _served(split)
    scores = model.choose_fold_in(split, grid=(0.1, 0.1))
    assert list(scores) == [0.1] and model.config.regularization == 0.1


def test_no_validation_or_empty_grid_is_one_line(split: Split) -> None:
    model = _served(split)
    no_valid = Split(train=split.train, test=split.test, valid=None, protocol=dict(split.protocol))
    with pytest.raises(LmrecError, match="needs a split with validation"):
        model.choose_fold_in(no_valid)
    with pytest.raises(LmrecError, match="at least one λ"):
        model.choose_fold_in(split, grid=())


def test_a_failed_search_leaves_the_lambda_as_it_was(split: Split, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _served(split, regularization=0.1)
    calls = []

    def failing(*args: object, **kwargs: object) -> None:
        calls.append(model.config.regularization)
        if len(calls) == 2:
            raise RuntimeError("evaluation failed")
        return evaluate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("lmrec.evaluation.evaluate", failing)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        model.choose_fold_in(split, grid=(0.01, 0.3))
    assert calls == [0.01, 0.3]
    assert model.config.regularization == 0.1
