"""Experiments from one config: dataset -> split -> fit models -> evaluate -> report.

The CLI (`lmrec evaluate`, `lmrec train`, `lmrec quickstart`) calls these functions; so can you::

    cfg = ExperimentConfig.from_toml("configs/ml100k.toml")
    results = run_experiment(cfg, out_dir="runs/ml100k")
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import tomli_w
from pydantic import BaseModel, ConfigDict, Field

from lmrec._atomic import atomic_write
from lmrec.data.dataset import Dataset
from lmrec.data.split import Split, split
from lmrec.errors import LmrecError
from lmrec.evaluation.evaluate import EvalResult, evaluate
from lmrec.evaluation.report import write_report
from lmrec.models.base import Recommender
from lmrec.models.registry import get_model_class


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    name: str = "ml-100k"
    #: folder holding ``<name>/`` copies; default: $LMREC_DATA_HOME, then the loaders' cache
    data_dir: str | None = None


class SplitSpec(_Strict):
    protocol: str = "leave_last_out"
    params: dict[str, Any] = Field(default_factory=dict)


class ModelSpec(_Strict):
    name: str
    #: label in reports (defaults to ``name``); lets one config compare two settings of a model
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    def build(self) -> Recommender:
        return get_model_class(self.name)(**self.params)

    @property
    def title(self) -> str:
        return self.label or self.name


class EvaluationSpec(_Strict):
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    phase: str = "test"
    cold_user_threshold: int = 5


class ExperimentConfig(_Strict):
    """Everything a run needs, in one place; round-trips to TOML."""

    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec(name="popularity")])
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> ExperimentConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise LmrecError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise LmrecError(f"config file {path}: invalid TOML ({exc})") from None
        try:
            return cls.model_validate(raw)
        except Exception as exc:
            raise LmrecError(f"config file {path}: {exc}") from None

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))


def load_data(spec: DatasetSpec) -> Dataset:
    from lmrec.data.loaders import load_dataset

    return load_dataset(spec.name, data_dir=spec.data_dir)


def make_split(data: Dataset, spec: SplitSpec) -> Split:
    return split(data, spec.protocol, **spec.params)


def fit_model(spec: ModelSpec, train: Dataset) -> tuple[Recommender, float]:
    model = spec.build()
    t0 = time.perf_counter()
    model.fit(train)
    return model, time.perf_counter() - t0


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    data: Dataset | None = None,
    on_model: Callable[[ModelSpec, EvalResult], None] | None = None,
) -> list[EvalResult]:
    """Fit every configured model on the split's training part and evaluate it; write a report."""
    data = data if data is not None else load_data(cfg.dataset)
    sp = make_split(data, cfg.split)
    results = []
    for spec in cfg.models:
        model, fit_s = fit_model(spec, sp.train)
        res = evaluate(
            model,
            sp,
            ks=cfg.evaluation.ks,
            phase=cfg.evaluation.phase,
            cold_user_threshold=cfg.evaluation.cold_user_threshold,
            name=spec.title,
            fit_seconds=fit_s,
        )
        results.append(res)
        if on_model is not None:
            on_model(spec, res)
    if out_dir is not None:
        write_report(results, out_dir, title=f"lmrec: {data.name}, {cfg.split.protocol}")
        Path(out_dir, "config.toml").write_text(cfg.to_toml())
    return results


def save_catalog(data: Dataset, model_dir: str | os.PathLike[str]) -> Path:
    """Store the item table next to a saved model (parquet), so recommendations can show titles."""
    table = data.item_table()
    keep = [
        c
        for c in table.columns
        if table[c].dtype in (pl.Utf8, pl.String, pl.Int64, pl.Int32, pl.Float64, pl.Float32)
    ]
    return atomic_write(
        Path(model_dir) / "catalog.parquet", lambda tmp: table.select(keep).write_parquet(tmp)
    )


def load_catalog(model_dir: str | os.PathLike[str]) -> pl.DataFrame | None:
    path = Path(model_dir) / "catalog.parquet"
    return pl.read_parquet(path) if path.exists() else None
