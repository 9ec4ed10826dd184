"""Test doubles for tuning: a tiny clustered dataset and a fake epoch-trained ("neural") model.

The fake model has what the tuner looks for in a neural model (a ``train`` table with
``max_epochs``, a ``val_fraction``, ``fit(data, *, valid, callbacks)``, ``report_.best_epoch``)
without torch: its "training" replays a validation curve that peaks at a known epoch, calling the
Lightning-style callbacks the way ``fit_module`` does, and it scores like popularity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Self

import numpy as np
import polars as pl
import pytest
from pydantic import BaseModel, ConfigDict, Field

from lmrec.data.dataset import Dataset
from lmrec.data.split import Split, leave_last_out
from lmrec.models import registry
from lmrec.models.base import ModelConfig, QueryBatch, Recommender
from lmrec.tuning import spaces

#: the fake curve peaks after this many epochs (when training is long enough)
PEAK = 3


def clustered(n_users: int = 90, n_items: int = 45, per_user: int = 12, seed: int = 0) -> Dataset:
    """Three user groups, each drawing its items from one third of the catalogue, with timestamps."""
    rng = np.random.default_rng(seed)
    rows = []
    third = n_items // 3
    for u in range(n_users):
        pool = np.arange(third) + (u % 3) * third
        items = rng.choice(pool, size=min(per_user, third), replace=False)
        rows += [(u, int(i), u * 1000 + t) for t, i in enumerate(items)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(df, name="clustered")


def clustered_split() -> Split:
    return leave_last_out(clustered())


class FakeTrain(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_epochs: int = Field(default=8, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    progress_bar: bool = True


class FakeNeuralConfig(ModelConfig):
    val_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    train: FakeTrain = FakeTrain()


@dataclass
class FakeReport:
    best_epoch: int | None = None
    epochs: list[Any] = field(default_factory=list)

    @property
    def n_epochs(self) -> int:
        return len(self.epochs)


class FakeNeural(Recommender):
    """Replays ``curve(lr, epoch)`` (peak at ``PEAK``, higher for larger lr); scores by popularity."""

    name = "fake_neural"
    Config = FakeNeuralConfig
    config: FakeNeuralConfig
    #: every fit's (n_interactions, valid given, max_epochs, val_fraction), across instances
    fits: list[tuple[int, bool, int, float]] = []

    @staticmethod
    def curve(lr: float, epoch: int) -> float:
        return lr * (1.0 - 0.1 * abs(epoch - PEAK))

    def fit(self, data: Dataset, *, valid: pl.DataFrame | None = None, callbacks: Sequence[Any] = ()) -> Self:
        cfg = self.config
        FakeNeural.fits.append(
            (data.n_interactions, valid is not None, cfg.train.max_epochs, cfg.val_fraction)
        )
        self.report_ = FakeReport()
        validates = valid is not None or cfg.val_fraction > 0
        best = None
        module = SimpleNamespace(train_cfg=SimpleNamespace(val_every=1))
        for epoch in range(cfg.train.max_epochs):
            value = self.curve(cfg.train.lr, epoch + 1) if validates else None
            self.report_.epochs.append(SimpleNamespace(epoch=epoch, val_metric=value))
            if value is not None and (best is None or value > best):
                best, self.report_.best_epoch = value, epoch + 1
            metrics = {} if value is None else {"val_ndcg@10": value}
            trainer = SimpleNamespace(
                callback_metrics=metrics, current_epoch=epoch, max_epochs=cfg.train.max_epochs
            )
            for cb in callbacks:
                cb.on_train_epoch_end(trainer, module)
        if self.report_.best_epoch is None:
            self.report_.best_epoch = cfg.train.max_epochs
        return super().fit(data)

    def _fit(self, data: Dataset) -> None:
        self.popularity_ = data.item_popularity().astype(np.float32)

    def _score(self, batch: QueryBatch) -> np.ndarray:
        return np.repeat(self.popularity_[None, :], len(batch), axis=0)


def _fake_space(s: spaces.Suggest) -> None:
    s.float("train.lr", 1e-3, 1e-1, log=True)


@pytest.fixture()
def fake_neural(monkeypatch: pytest.MonkeyPatch) -> type[FakeNeural]:
    """Register ``fake_neural`` (model + space) for one test."""
    monkeypatch.setitem(registry._MODELS, "fake_neural", f"{__name__}:FakeNeural")
    monkeypatch.setitem(spaces.SPACES, "fake_neural", _fake_space)
    monkeypatch.setattr(FakeNeural, "fits", [])
    return FakeNeural
