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
