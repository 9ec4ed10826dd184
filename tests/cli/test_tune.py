"""`lmrec tune`: searches on validation, writes a TOML that `lmrec evaluate/train --config` read."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.cli.tune import tuned_config_toml
from lmrec.experiment import ExperimentConfig, run_experiment
from lmrec.tuning import tune
from tests.tuning.fakes import PEAK, clustered, clustered_split, fake_neural

__all__ = ["fake_neural"]  # the fixture, imported for pytest

runner = CliRunner()


def test_tune_writes_a_config_that_evaluate_and_train_read(tmp_path, data_home):
    out = tmp_path / "tuned.toml"
    res = runner.invoke(
        app,
        ["tune", "--dataset", "ml-100k", "-m", "popularity", "-m", "item_knn", "--trials", "2",
         "--fix", "item_knn.weighting=tfidf", "--out", str(out), "--data-dir", str(data_home)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "item_knn" in res.output and "best valid" in res.output
    cfg = ExperimentConfig.from_toml(out)
    assert [m.name for m in cfg.models] == ["popularity", "item_knn"]
    knn = cfg.models[1]
    assert knn.params["weighting"] == "tfidf" and {"k", "shrink"} <= set(knn.params)
    assert knn.tuning["phase"] == "valid" and knn.tuning["n_trials"] == 2
    assert cfg.evaluation.protocol == "refit"

    report_dir = tmp_path / "rep"
    res = runner.invoke(
        app, ["evaluate", "--config", str(out), "--out", str(report_dir), "--data-dir", str(data_home)]
    )
    assert res.exit_code == 0, res.output
    assert "refit protocol" in res.output
    report = json.loads((report_dir / "report.json").read_text())
    info = report["results"][1]["info"]
    assert info["protocol"] == "refit" and info["fit_on"] == "train+valid"
    assert info["config"]["k"] == knn.params["k"]

    model_dir = tmp_path / "knn"
    res = runner.invoke(
        app,
        ["train", "--model", "item_knn", "--config", str(out), "--out", str(model_dir),
         "--data-dir", str(data_home)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = json.loads((model_dir / "model.json").read_text())
    assert saved["config"]["k"] == knn.params["k"]


def test_bad_arguments_are_reported():
    res = runner.invoke(app, ["tune", "-m", "ease", "--fix", "als.factors=8"])
    assert res.exit_code == 2 and "als" in res.stderr
    res = runner.invoke(app, ["tune", "-m", "no_such_model"])
    assert res.exit_code == 2 and "no_such_model" in res.stderr
    res = runner.invoke(app, ["tune", "-m", "ease", "--trials", "0"])
    assert res.exit_code == 2 and "--trials" in res.stderr


def test_neural_entry_round_trips_with_the_chosen_epochs(tmp_path, fake_neural):
    split = clustered_split()
    result = tune("fake_neural", split, n_trials=3, seed=0)
    path = tmp_path / "t.toml"
    path.write_text(tuned_config_toml([result], "clustered", "leave_last_out", {}))
    cfg = ExperimentConfig.from_toml(path)
    (spec,) = cfg.models
    assert spec.epochs_tuned and spec.params["train"]["max_epochs"] == PEAK
    assert spec.params["val_fraction"] == 0.0 and spec.tuning["best_epoch"] == PEAK

    fake_neural.fits.clear()
    (res,) = run_experiment(cfg, data=clustered())
    # epochs already chosen on validation: one fit, on train + valid, for exactly that many epochs
    assert fake_neural.fits == [(split.full.n_interactions, False, PEAK, 0.0)]
    assert res.info["protocol"] == "refit" and res.info["refit_epochs"] == PEAK


@pytest.mark.parametrize("option", ["--trials", "--timeout"])
def test_budget_options_are_in_the_help(option):
    res = runner.invoke(app, ["tune", "--help"])
    assert res.exit_code == 0 and option in res.output
