"""Experiment configs round-trip through TOML and drive a whole run."""

from __future__ import annotations

import pytest

from lmrec.errors import LmrecError
from lmrec.experiment import ExperimentConfig, ModelSpec, SplitSpec, run_experiment
from tests.tuning.fakes import fake_neural

__all__ = ["fake_neural"]  # the fixture, imported for pytest


def test_toml_round_trip(tmp_path):
    cfg = ExperimentConfig(
        models=[ModelSpec(name="popularity", label="pop"), ModelSpec(name="random", params={"seed": 3})],
        split=SplitSpec(protocol="random", params={"test_fraction": 0.3, "seed": 1}),
    )
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    assert ExperimentConfig.from_toml(path) == cfg


def test_unknown_keys_and_bad_toml_are_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[dataset]\nnmae = 'x'\n")
    with pytest.raises(LmrecError, match=r"bad\.toml"):
        ExperimentConfig.from_toml(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[dataset\n")
    with pytest.raises(LmrecError, match="invalid TOML"):
        ExperimentConfig.from_toml(broken)
    with pytest.raises(LmrecError, match="not found"):
        ExperimentConfig.from_toml(tmp_path / "missing.toml")


def test_run_experiment_writes_report(tmp_path, ml100k):
    cfg = ExperimentConfig(models=[ModelSpec(name="popularity"), ModelSpec(name="random")])
    results = run_experiment(cfg, out_dir=tmp_path / "run", data=ml100k)
    assert [r.model for r in results] == ["popularity", "random"]
    assert results[0]["ndcg@10"] > results[1]["ndcg@10"]
    assert (tmp_path / "run" / "report.md").exists() and (tmp_path / "run" / "config.toml").exists()


def test_refit_is_the_default_protocol_and_train_only_stays(tmp_path):
    from tests.tuning.fakes import clustered

    data = clustered()
    cfg = ExperimentConfig(models=[ModelSpec(name="ease", params={"l2": 10.0})])
    assert cfg.evaluation.protocol == "refit"
    (refit,) = run_experiment(cfg, data=data)
    assert refit.info["protocol"] == "refit" and refit.info["fit_on"] == "train+valid"
    assert refit.info["split"]["valid_rows"] > 0  # the original split is reported

    only = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"protocol": "train-only"})})
    (train_only,) = run_experiment(only, data=data)
    assert train_only.info["protocol"] == "train-only" and train_only.info["fit_on"] == "train"

    valid = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"phase": "valid"})})
    (on_valid,) = run_experiment(valid, data=data)
    assert on_valid.info["protocol"] == "train-only"  # nothing is refitted on the targets


def test_refit_chooses_the_epoch_count_of_untuned_neural_models(fake_neural):
    from tests.tuning.fakes import PEAK, clustered

    data = clustered()
    cfg = ExperimentConfig(models=[ModelSpec(name="fake_neural", params={"train": {"max_epochs": 6}})])
    (res,) = run_experiment(cfg, data=data)
    probe, final = fake_neural.fits
    assert probe[1] is True and probe[2] == 6  # fitted on train, early-stopping on the validation frame
    assert final[1:] == (False, PEAK, 0.0)  # refitted for the chosen epochs, no validation data
    assert final[0] > probe[0]  # on train + valid
    assert res.info["refit_epochs"] == PEAK
