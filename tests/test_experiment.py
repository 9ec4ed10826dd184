"""Experiment configs round-trip through TOML and drive a whole run."""

from __future__ import annotations

import pytest

from lmrec.errors import LmrecError
from lmrec.experiment import ExperimentConfig, ModelSpec, SplitSpec, run_experiment


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
