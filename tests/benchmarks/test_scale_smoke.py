"""Smoke run of ``benchmarks/scale.py`` at 20k synthetic interactions (the full runs live there),
plus its pieces: the refusal of a fit that cannot fit in memory, and the growth exponents."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lmrec import _memory
from lmrec.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks" / "scale.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_scale_benchmark_end_to_end(tmp_path: Path) -> None:
    scale = _script()
    out = tmp_path / "out"
    args = ["--sizes", "20k", "--models", "popularity", "ease", "--eval-users", "200"]
    assert scale.main([*args, "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    doc = json.loads((out / "scale.json").read_text())
    rows = {r["model"]: r for r in doc["rows"]}
    assert set(rows) == {"popularity", "ease"}
    for r in rows.values():
        assert r["outcome"] == "ok", r
        assert r["n_interactions"] == 20_000 and r["peak_rss_gib"] > 0 and r["recommend_users_per_s"] > 0
        assert r["eval_users"] <= 200
        assert 0 < r["ndcg@10_sampled"] < 1  # which model wins is tested on larger data (tests/data)
    table = (out / "scale.md").read_text()
    assert "NDCG@10 (sampled 200 users)" in table and table.count("| 20k |") == 2
    assert (out / "scale.png").stat().st_size > 0
    assert not (out / "scale.partial.json").exists()


def test_worker_records_a_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scale = _script()
    summary = generate(out=tmp_path / "d", n_interactions=5_000, seed=1)
    monkeypatch.setattr(_memory, "available_memory", lambda: _memory.Available(2**20, "cgroup limit"))
    ns = argparse.Namespace(
        data=str(summary.folder), model="ease", params="{}", threads=1, eval_users=50, seed=0
    )
    row = scale.worker(ns)
    assert row["outcome"].startswith(f"refused: EASE on {summary.n_items:,} items")
    assert "1 MiB is available (cgroup limit)" in row["outcome"] and "fit_s" not in row


def test_growth_exponent_and_sizes() -> None:
    scale = _script()
    rows = [
        {"model": "q", "n_interactions": n, "fit_s": 3e-6 * n**2, "outcome": "ok"}
        for n in (10**5, 10**6, 10**7)
    ]
    rows += [{"model": "r", "n_interactions": 10**5, "fit_s": 1.0, "outcome": "ok"}]
    rows += [{"model": "r", "n_interactions": 10**6, "outcome": "refused: ..."}]
    assert scale.growth(rows, "fit_s") == {"q": 2.0, "r": None}
    assert scale.parse_size("20Mx1M") == ("20Mx1M", 20_000_000, 1_000_000)
    assert scale.parse_size("100k") == ("100k", 100_000, None)
    with pytest.raises(argparse.ArgumentTypeError):
        scale.parse_count("lots")


def test_param_overrides_parse_json_values_and_reject_unknown_models() -> None:
    scale = _script()
    parser = argparse.ArgumentParser()
    got = scale.parse_overrides(["als.use_gpu=false", "als.factors=64", "two_tower.encoder=hashing"], parser)
    assert got == {"als": {"use_gpu": False, "factors": 64}, "two_tower": {"encoder": "hashing"}}
    with pytest.raises(SystemExit):
        scale.parse_overrides(["nosuch.x=1"], parser)
    with pytest.raises(SystemExit):
        scale.parse_overrides(["als=1"], parser)


def test_combine_merges_runs_a_rerun_replacing_its_timeout(tmp_path: Path) -> None:
    scale = _script()

    def row(size: str, n: int, model: str, fit: float | None, outcome: str = "ok") -> dict:
        return {"size": size, "n_interactions": n, "n_users": 10, "n_items": 5, "model": model,
                "outcome": outcome, "fit_s": fit, "peak_rss_gib": 1.0, "eval_users": 100}  # fmt: skip

    first = tmp_path / "a.json"
    first.write_text(
        json.dumps({"rows": [row("1M", 10**6, "als", 2.0), row("10M", 10**7, "als", None, "timeout")]})
    )
    rerun = tmp_path / "b.json"
    rerun.write_text(json.dumps([row("10M", 10**7, "als", 20.0)]))  # a partial file is a plain list
    doc = scale.combine([first, rerun], tmp_path / "out")
    assert [(r["size"], r["outcome"], r["fit_s"]) for r in doc["rows"]] == [
        ("1M", "ok", 2.0),
        ("10M", "ok", 20.0),
    ]
    assert doc["growth"]["fit_s"]["als"] == 1.0  # 10x the data, 10x the time
    assert (tmp_path / "out" / "scale.png").stat().st_size > 0
