"""Smoke run of ``benchmarks/longterm.py`` (quick grids, 80 users per group, one seed): SASRec as
base model and state encoder, slates of 3, every policy, OPE, the JSON, table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.test_hybrid_smoke import _script


@pytest.mark.slow
def test_longterm_benchmark_quick(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "lt"
    args = ["--quick", "--seeds", "0", "--sessions", "1", "--data-dir", str(data_home), "--out-dir", str(out)]
    result = _script("longterm").main(args)
    doc = json.loads((out / "longterm.json").read_text())
    assert doc["state_encoder"] == "SASRec" and doc["slate_size"] == 3 == result["slate_size"]
    rows = doc["results"]["calibrated"]
    assert set(rows) == {"greedy", "myopic", "logging", "linucb", "thompson", "dqn", "reinforce"}
    assert rows["greedy"]["ratio_vs_greedy"][0] == pytest.approx(1.0)
    assert all(r["reward"][0] > 0 for r in rows.values())
    assert {r["policy"] for r in doc["ope"]} >= {"greedy", "uniform", "myopic"}
    assert (out / "longterm.png").stat().st_size > 0 and "| reinforce |" in (out / "longterm.md").read_text()
