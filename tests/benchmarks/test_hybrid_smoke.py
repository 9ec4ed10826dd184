"""Smoke runs of the hybrid benchmarks on ml-100k with cheap models (the full runs live in
``benchmarks/``): the refit protocol, extra seeds and the validation studies end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_hybrid_benchmark_and_validation_studies(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "run"
    cheap = ["--models", "popularity", "ease", "item_knn", "--generators", "ease", "item_knn"]
    args = ["--datasets", "ml-100k", *cheap, "--trials", "2", "--timeout", "20", "--extra-seeds", "1"]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert _script("hybrid").main([*args, *cache, "--data-dir", str(data_home), "--out", str(out)]) == 0
    doc = json.loads((out / "hybrid.json").read_text())
    ds = doc["datasets"][0]
    assert set(ds["models"]) == {"popularity", "ease", "item_knn", "hybrid"}
    hybrid = ds["models"]["hybrid"]
    assert hybrid["n_targets"] == 3  # auto on ml-100k: 3 targets hold out under 10%
    assert set(hybrid["ndcg@10_by_seed"]) == {"0", "1"}  # JSON keys
    assert "ndcg@10_by_seed" not in ds["models"]["ease"]  # deterministic: one run
    assert ds["baseline_by_valid"] in {"popularity", "ease", "item_knn"}
    assert {"hybrid_vs_ease", "hybrid_vs_every_single_min", "seed_mean_hybrid_vs_ease"} <= set(ds["targets"])
    assert (out / "hybrid.md").read_text().count("| ml-100k |") == 4
    assert (out / "hybrid.png").stat().st_size > 0

    study = tmp_path / "valid.json"
    valid_args = ["--tuned", str(out / "hybrid.json"), "--generators", "ease", "item_knn", *cache]
    valid_args += ["--data-dir", str(data_home)]
    assert _script("hybrid_valid").main([*valid_args, "--targets", "1", "auto", "--out", str(study)]) == 0
    rows = json.loads(study.read_text())["rows"]
    assert [r["n_targets"] for r in rows] == [1, 3]
    assert all(0 < r["valid_ndcg@10"] < 1 for r in rows)
