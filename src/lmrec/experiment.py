"""Experiments from one config: dataset -> split -> fit models -> evaluate -> report.

The CLI (`lmrec evaluate`, `lmrec train`, `lmrec quickstart`) calls these functions; so can you::

    cfg = ExperimentConfig.from_toml("configs/ml100k.toml")
    results = run_experiment(cfg, out_dir="runs/ml100k")

Protocols (``[evaluation] protocol``; every result records which one in ``info["protocol"]``):

* ``"refit"`` (default, the headline): hyperparameters are chosen on the validation phase
  (``lmrec tune`` writes them into the config), the model is refitted on train + valid, and the
  test phase queries every user with train + valid history. Neural models whose epoch count was
  not tuned (no ``epochs_tuned = true``) first fit on train with early stopping on the validation
  interactions, and the refit trains that many epochs without validation data
  (:mod:`lmrec.tuning`).
* ``"train-only"``: the model is fitted on train only; the test phase still queries with
  train + valid history (the validation events are known at test time), but never trains on them.

With ``phase = "valid"`` nothing is refitted (the validation interactions are the targets), so the
protocol is train-only whatever the config says.
"""

from __future__ import annotations

import inspect
import os
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import polars as pl
import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lmrec._atomic import atomic_write
from lmrec.data.dataset import Dataset
from lmrec.data.split import PROTOCOLS, Split, split, split_function
from lmrec.errors import LmrecError
from lmrec.evaluation.evaluate import EvalResult, evaluate
from lmrec.evaluation.report import write_report
from lmrec.models.base import Recommender
from lmrec.models.registry import check_params, describe_validation_error, get_model_class


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    name: str = "ml-100k"
    #: folder holding ``<name>/`` copies; default: $LMREC_DATA_HOME, then the loaders' cache
    data_dir: str | None = None


class SplitSpec(_Strict):
    protocol: str = "leave_last_out"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("protocol", mode="before")
    @classmethod
    def _known_protocol(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().replace("-", "_")  # "leave-last-out" as the CLI spells it
        if v not in PROTOCOLS:
            raise ValueError(f"unknown split protocol {v!r}; choose one of {', '.join(PROTOCOLS)}")
        return v

    def check(self) -> None:
        """The parameters name arguments of the protocol (values are checked when splitting)."""
        func = split_function(self.protocol)
        try:
            inspect.signature(func).bind(None, **self.params)
        except TypeError as exc:
            allowed = [p for p in inspect.signature(func).parameters if p != "data"]
            raise LmrecError(
                f"split.params: {exc} for protocol {self.protocol!r} (parameters: {', '.join(allowed)})"
            ) from None


class ModelSpec(_Strict):
    name: str
    #: label in reports (defaults to ``name``); lets one config compare two settings of a model
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    #: ``train.max_epochs`` in ``params`` was chosen on validation (``lmrec tune``): the refit
    #: protocol trains exactly that many epochs on train + valid instead of choosing again
    epochs_tuned: bool = False
    #: provenance written by ``lmrec tune`` (metric, validation score, trials, seconds); not used to fit
    tuning: dict[str, Any] | None = None

    def build(self) -> Recommender:
        return get_model_class(self.name)(**self.params)

    def check(self, where: str = "models") -> None:
        """The name is registered and ``params`` are valid for it (one-line :class:`LmrecError`)."""
        check_params(self.name, self.params, where=f"{where}.params")

    @property
    def title(self) -> str:
        return self.label or self.name


class EvaluationSpec(_Strict):
    #: cut-offs; the report plots metric@K over all of them
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20, 50], min_length=1)
    phase: Literal["test", "valid"] = "test"
    cold_user_threshold: int = Field(default=5, ge=0)
    #: "refit": fit on train + valid, test with train + valid history (params chosen on valid);
    #: "train-only": fit on train only (see the module docstring)
    protocol: Literal["refit", "train-only"] = "refit"

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, v: list[int]) -> list[int]:
        bad = [k for k in v if k < 1]
        if bad:
            raise ValueError(f"every k must be a positive integer, got {', '.join(map(str, bad))}")
        return v


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
        return cls.parse(raw, source=f"config file {path}")

    @classmethod
    def parse(cls, raw: Any, *, source: str = "config") -> ExperimentConfig:
        """Validate a raw (TOML/JSON) mapping; a bad value is one line naming the key and the reason."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise LmrecError(f"{source}: {describe_validation_error(exc)}") from None

    def check(self) -> ExperimentConfig:
        """Everything that can be checked without data, before any loading or fitting: every
        model name is registered and its parameters are valid, the split parameters exist. Raises a
        one-line :class:`LmrecError` naming the key; returns ``self``."""
        for i, spec in enumerate(self.models):
            spec.check(where=f"models.{i} ({spec.title})")
        self.split.check()
        return self

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


def fit_and_evaluate(spec: ModelSpec, sp: Split, ev: EvaluationSpec) -> EvalResult:
    """Fit one model under ``ev.protocol`` and evaluate it on ``ev.phase``."""
    kw: dict[str, Any] = {"ks": ev.ks, "cold_user_threshold": ev.cold_user_threshold, "name": spec.title}
    if ev.protocol == "train-only" or ev.phase != "test":
        model, fit_s = fit_model(spec, sp.train)
        res = evaluate(model, sp, phase=ev.phase, fit_seconds=fit_s, **kw)
        res.info["protocol"] = "train-only"
        return res

    from lmrec.tuning import evaluate_refit, fit_on_train, is_neural, refit

    best_epoch = None
    select_s = 0.0
    has_valid = sp.valid is not None and sp.valid.height > 0
    if is_neural(spec.name) and not spec.epochs_tuned and has_valid:
        # the epoch count is a hyperparameter: choose it by early stopping on the validation
        # interactions (fit on train only), then refit that many epochs on train + valid
        probe = spec.build()
        t0 = time.perf_counter()
        fit_on_train(probe, sp.train, sp.valid)
        select_s = time.perf_counter() - t0
        report = getattr(probe, "report_", None)
        best_epoch = None if report is None else report.best_epoch
        del probe
    t0 = time.perf_counter()
    model = refit(spec.name, spec.params, sp, best_epoch)
    fit_s = time.perf_counter() - t0
    res = evaluate_refit(model, sp, fit_seconds=fit_s, **kw)
    if best_epoch is not None:
        res.info["refit_epochs"] = best_epoch
        res.info["epoch_selection_seconds"] = round(select_s, 3)
    elif spec.epochs_tuned:
        res.info["refit_epochs"] = model.config.model_dump().get("train", {}).get("max_epochs")
    return res


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    data: Dataset | None = None,
    on_model: Callable[[ModelSpec, EvalResult], None] | None = None,
) -> list[EvalResult]:
    """Fit and evaluate every configured model under the configured protocol; write a report.

    The config is checked first (:meth:`ExperimentConfig.check`), so a bad parameter of the last
    model fails before the first one is fitted.
    """
    cfg.check()
    data = data if data is not None else load_data(cfg.dataset)
    sp = make_split(data, cfg.split)
    results = []
    for spec in cfg.models:
        res = fit_and_evaluate(spec, sp, cfg.evaluation)
        results.append(res)
        if on_model is not None:
            on_model(spec, res)
    if out_dir is not None:
        protocol = results[0].info.get("protocol", cfg.evaluation.protocol) if results else ""
        write_report(results, out_dir, title=f"lmrec: {data.name}, {cfg.split.protocol}, {protocol} protocol")
        Path(out_dir, "config.toml").write_text(cfg.to_toml())
    return results


def save_catalog(data: Dataset, model_dir: str | os.PathLike[str]) -> Path:
    """Store the item table next to a saved model (parquet), so recommendations can show titles (and
    pictures: an ``image`` column of the dataset's picture files)."""
    table = data.item_table()
    images = data.images
    if images is not None and images.paths and "image" not in table.columns:
        # the picture files, absolute, so the server can show them (GET /items/{id}/image)
        files = {str(k): str(Path(v).resolve()) for k, v in images.paths.items()}
        table = table.with_columns(
            pl.Series("image", [files.get(str(i)) for i in table["item_id"].to_list()], dtype=pl.String)
        )
    keep = [
        c
        for c in table.columns
        if table[c].dtype in (pl.Utf8, pl.String, pl.Int64, pl.Int32, pl.Float64, pl.Float32)
    ]
    return atomic_write(
        Path(model_dir) / "catalog.parquet", lambda tmp: table.select(keep).write_parquet(tmp)
    )


def load_catalog(model_dir: str | os.PathLike[str]) -> pl.DataFrame | None:
    """The item table stored by :func:`save_catalog`; None when there is none. A damaged file is a
    one-line :class:`LmrecError` naming it."""
    path = Path(model_dir) / "catalog.parquet"
    if not path.exists():
        return None
    from lmrec.data.loaders._read import read_parquet

    try:
        table = read_parquet(path)
    except LmrecError as exc:
        raise LmrecError(f"{path}: damaged item catalogue ({str(exc).split('] ', 1)[-1]})") from None
    if "item_id" not in table.columns:
        raise LmrecError(f"{path}: damaged item catalogue, no 'item_id' column")
    return table
