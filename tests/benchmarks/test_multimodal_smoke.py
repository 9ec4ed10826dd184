"""Smoke run of benchmarks/multimodal.py on ml-100k-posters with the model-free encoders (hashing
text, colour-histogram pictures): every arm, the validation-chosen weight, CIs and the examples."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_multimodal_benchmark_runs_end_to_end(tmp_path: Path, data_home: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_multimodal", ROOT / "benchmarks" / "multimodal.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    # one setting of each projection map (the full grid is the benchmark's, not CI's)
    mod.PROJ_FACTORS, mod.PROJ_RIDGES = (16,), (10.0,)
    mod.KNN_FACTORS, mod.KNN_NEIGHBOURS, mod.KNN_TEMPERATURES = (16,), (30,), (0.1,)
    out = tmp_path / "mm.json"
    args = ["--data-dir", str(data_home), "--seeds", "42", "--weights", "0.25,0.5", "--skip-timing"]
    args += ["--text-encoder", "hashing", "--image-encoder", "histogram", "--cache-dir", str(tmp_path / "c")]
    assert mod.main([*args, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    cold, warm = doc["cold"], doc["warm"]
    assert set(cold["rows"]) == {
        "popularity (ties by item id)",
        "popularity (ties at random)",
        "content: text",
        "content: image",
        "content: text + image (w from valid)",
        "content: text -> CF projection (from valid)",
        "content: image -> CF projection (from valid)",
        "content: text+image -> CF projection (from valid)",
    }
    for row in [*cold["rows"].values(), *warm["rows"].values()]:
        assert 0 <= row["lo"] <= row["ndcg@10"] <= row["hi"] <= 1
    assert cold["weights"][0]["weight"] in (0.25, 0.5) and warm["weight"] in (0.25, 0.5)
    assert cold["rows"]["content: text"]["users"] > 500 and warm["rows"]["popularity"]["users"] == 943
    assert {e["effect"] for e in cold["examples"]} == {"helped", "hurt"} and all(
        e["title"] for e in cold["examples"]
    )
    choices = cold["projection_choices"]
    assert {c["modality"] for c in choices} == {"image", "text", "text+image"}
    assert all(c["projection_method"] in ("ridge", "knn") and len(c["valid_ndcg@10"]) >= 2 for c in choices)


def test_multimodal_benchmark_two_tower_arms_smoke(tmp_path: Path, data_home: Path) -> None:
    """``--two-tower --smoke``: the four two-tower arms on both protocols, a validation-chosen
    modality dropout, CIs and the poster examples (tiny network and user subset: numbers mean nothing)."""
    spec = importlib.util.spec_from_file_location(
        "bench_multimodal_tt", ROOT / "benchmarks" / "multimodal.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    out = tmp_path / "mm.json"
    args = ["--data-dir", str(data_home), "--seeds", "42", "--skip-timing", "--two-tower", "--skip-content"]
    args += ["--smoke", "--tt-dropouts", "0,0.5", "--text-encoder", "hashing", "--image-encoder", "histogram"]
    assert mod.main([*args, "--cache-dir", str(tmp_path / "c"), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert "cold" not in doc and "warm" not in doc, "--skip-content runs the two-tower arms only"
    arms = {"two_tower: ID only", "two_tower: text", "two_tower: image", "two_tower: text + image"}
    for key in ("two_tower_cold", "two_tower_warm"):
        part = doc[key]
        assert set(part["rows"]) == arms and part["modality_dropout"] in (0.0, 0.5)
        assert set(part["dropout_valid_ndcg@10"]) == {"0.0", "0.5"}
        for row in part["rows"].values():
            assert 0 <= row["lo"] <= row["ndcg@10"] <= row["hi"] <= 1 and row["users"] > 0
    assert len(doc["two_tower_warm"]["fits"]) == 4 and doc["smoke_users"] == 150
    assert {e["effect"] for e in doc["two_tower_cold"]["examples"]} <= {"helped", "hurt"}
