"""Bootstrap intervals and paired tests: properties (Hypothesis), scipy agreement, tables, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from lmrec.data.dataset import Dataset
from lmrec.data.split import leave_last_out
from lmrec.evaluation import EvalResult, bootstrap_ci, compare_results, evaluate, paired_test
from lmrec.evaluation.report import write_report
from lmrec.evaluation.significance import headline_metrics
from lmrec.models import Popularity, RandomModel

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
values = st.lists(st.one_of(unit, st.just(math.nan)), min_size=1, max_size=120).filter(
    lambda v: not all(math.isnan(x) for x in v)
)


# ------------------------------------------------------------------------------------ bootstrap_ci
@settings(max_examples=80, deadline=None)
@given(values, st.integers(0, 2**16))
def test_ci_contains_the_mean_of_the_non_nan_values(v: list[float], seed: int) -> None:
    mean, lo, hi = bootstrap_ci(v, n_boot=200, seed=seed)
    finite = [x for x in v if not math.isnan(x)]
    assert mean == pytest.approx(float(np.mean(finite)), abs=1e-12)
    assert lo <= mean <= hi
    assert min(finite) <= lo and hi <= max(finite)


@settings(max_examples=25, deadline=None)
# p away from 0 and 1: a 100-user sample of a rare event can hold no hit at all, and its CI
# collapses to a point (hypothesis found p = 0.05 with one hit: width .03 against .0086 at 10k users)
@given(st.integers(0, 2**16), st.floats(0.2, 0.8))
def test_ci_narrows_with_more_users(seed: int, p: float) -> None:
    rng = np.random.default_rng(seed)
    small = (rng.random(100) < p).astype(float)
    large = (rng.random(10_000) < p).astype(float)
    _, lo_s, hi_s = bootstrap_ci(small, seed=seed)
    _, lo_l, hi_l = bootstrap_ci(large, seed=seed)
    # width scales as 1/sqrt(n): 10x narrower in expectation; 4x leaves room for sampling noise
    assert (hi_l - lo_l) * 4 < (hi_s - lo_s)


def test_ci_is_seeded_and_covers_the_true_mean_about_95_percent() -> None:
    x = np.random.default_rng(7).random(300)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)
    rng = np.random.default_rng(11)
    covered = 0
    for rep in range(200):
        sample = rng.exponential(1.0, 200)  # skewed, true mean 1
        _, lo, hi = bootstrap_ci(sample, n_boot=500, seed=rep)
        covered += lo <= 1.0 <= hi
    assert 0.88 <= covered / 200 <= 0.99
    # a 90% interval is inside the 95% one (same resamples)
    _, lo95, hi95 = bootstrap_ci(x, alpha=0.05)
    _, lo90, hi90 = bootstrap_ci(x, alpha=0.10)
    assert lo95 <= lo90 < hi90 <= hi95


def test_ci_edge_cases() -> None:
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert all(math.isnan(v) for v in bootstrap_ci([math.nan, math.nan]))
    assert bootstrap_ci([0.25]) == (0.25, 0.25, 0.25)
    assert bootstrap_ci(pl.Series([1.0, math.nan, 1.0])) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0, 2.0], alpha=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([1.0, 2.0], n_boot=0)
    with pytest.raises(ValueError, match="1-d"):
        bootstrap_ci(np.ones((2, 2)))


def test_ci_memory_is_chunked_for_many_users() -> None:
    x = np.random.default_rng(0).random(50_000)
    mean, lo, hi = bootstrap_ci(x, n_boot=300)
    assert lo < mean < hi and hi - lo < 0.01


# ------------------------------------------------------------------------------------- paired_test
@settings(max_examples=60, deadline=None)
@given(st.lists(unit, min_size=1, max_size=100))
def test_identical_models_give_zero_difference_and_p_one(v: list[float]) -> None:
    res = paired_test(v, list(v))
    assert (res.diff, res.diff_lo, res.diff_hi) == (0.0, 0.0, 0.0)
    assert res.p_wilcoxon == 1.0
    assert res.p_ttest == 1.0 or (len(v) == 1 and math.isnan(res.p_ttest))
    assert not res.significant


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16))
def test_clearly_better_model_is_significant_and_symmetric(seed: int) -> None:
    rng = np.random.default_rng(seed)
    b = rng.random(300)
    a = b + 0.1 + rng.normal(0, 0.1, 300)
    res = paired_test(a, b, seed=seed)
    assert res.p_wilcoxon < 0.05 and res.p_ttest < 0.05 and res.significant
    assert 0 < res.diff_lo <= res.diff <= res.diff_hi
    assert res.diff == pytest.approx(res.mean_a - res.mean_b)
    rev = paired_test(b, a, seed=seed)
    assert rev.diff == pytest.approx(-res.diff)
    assert rev.p_ttest == pytest.approx(res.p_ttest) and rev.p_wilcoxon == pytest.approx(res.p_wilcoxon)


def test_noise_alone_is_rarely_significant() -> None:
    rng = np.random.default_rng(5)
    rejections = sum(
        paired_test(rng.random(200), rng.random(200), n_boot=100).p_ttest < 0.05 for _ in range(200)
    )
    assert rejections / 200 < 0.1  # nominal 5%


def test_p_values_match_scipy() -> None:
    rng = np.random.default_rng(1)
    b = rng.random(150)
    a = b + rng.normal(0.02, 0.1, 150)
    res = paired_test(a, b)
    assert res.p_ttest == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert res.t_statistic == pytest.approx(stats.ttest_rel(a, b).statistic, rel=1e-9)
    assert res.p_wilcoxon == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-9)


def test_ties_zeros_and_constant_differences_without_warnings() -> None:
    # leave-one-out hit rates: mostly equal users, a few wins and losses
    b = np.r_[np.zeros(800), np.ones(100), np.zeros(60), np.ones(40)]
    a = np.r_[np.zeros(800), np.ones(100), np.ones(60), np.zeros(40)]
    res = paired_test(a, b)
    assert res.diff == pytest.approx(0.02)
    assert 0 < res.p_wilcoxon < 0.2 and 0 < res.p_ttest < 0.2
    const = paired_test(np.full(10, 0.5), np.full(10, 0.25))
    assert (const.diff, const.p_ttest, const.t_statistic) == (0.25, 0.0, math.inf)
    one = paired_test([1.0], [0.0])
    assert one.diff == 1.0 and math.isnan(one.p_ttest) and one.p_wilcoxon == 1.0


def test_frames_are_aligned_by_user_and_nans_dropped_pairwise() -> None:
    a = pl.DataFrame({"user_id": [1, 2, 3, 4], "ndcg@10": [0.5, 0.2, math.nan, 0.9], "auc": [1.0] * 4})
    b = pl.DataFrame({"user_id": [4, 3, 2, 1], "ndcg@10": [0.1, 0.3, 0.2, 0.4], "auc": [0.5] * 4})
    res = paired_test(a, b, "ndcg@10")
    ref = paired_test([0.5, 0.2, 0.9], [0.4, 0.2, 0.1])
    assert res == ref and res.n_users == 3
    with pytest.raises(ValueError, match="name the metric"):
        paired_test(a, b)
    with pytest.raises(ValueError, match="1 user\\(s\\) only in a"):
        paired_test(a, b.filter(pl.col("user_id") != 2), "ndcg@10")
    with pytest.raises(ValueError, match="no 'recall@10' column"):
        paired_test(a, b, "recall@10")
    with pytest.raises(ValueError, match="twice"):
        paired_test(pl.concat([a, a]), b, "ndcg@10")
    with pytest.raises(TypeError):
        paired_test(a, [1.0, 2.0])
    with pytest.raises(ValueError, match="one length"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no user"):
        paired_test([math.nan], [1.0])


# ------------------------------------------------------------------------------------------- tables
def _result(name: str, ndcg: np.ndarray, users: np.ndarray | None = None) -> EvalResult:
    users = np.arange(len(ndcg)) if users is None else users
    per_user = pl.DataFrame({"user_id": users, "ndcg@10": ndcg, "recall@10": (ndcg > 0.5).astype(float)})
    metrics = {c: float(per_user[c].mean()) for c in ("ndcg@10", "recall@10")}  # type: ignore[arg-type]
    return EvalResult(
        model=name, metrics={**metrics, "ndcg@5": 0.0, "n_users": float(len(ndcg))}, per_user=per_user
    )


def test_compare_results_defaults_to_the_strongest_model() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(400)
    weak = _result("weak", np.clip(base - 0.2, 0, 1))
    strong = _result("strong", np.clip(base + 0.1, 0, 1))
    mid = _result("mid", base)
    assert headline_metrics(strong.metrics) == ["ndcg@10", "recall@10"]
    rows = compare_results([weak, strong, mid], n_boot=300)
    assert [(r["model"], r["metric"]) for r in rows] == [
        (m, k) for m in ("weak", "strong", "mid") for k in ("ndcg@10", "recall@10")
    ]
    by = {(r["model"], r["metric"]): r for r in rows}
    assert by["weak", "ndcg@10"]["vs"] == "strong" and by["mid", "ndcg@10"]["vs"] == "strong"
    assert by["strong", "ndcg@10"]["vs"] == "mid"  # the leader against the runner-up
    for r in rows:
        assert r["ci_lo"] <= r["mean"] <= r["ci_hi"] and r["n_users"] == 400
    assert by["weak", "ndcg@10"]["diff"] < 0 and by["weak", "ndcg@10"]["significant"]
    assert by["strong", "ndcg@10"]["diff"] > 0 and by["strong", "ndcg@10"]["p_wilcoxon"] < 0.05
    named = compare_results([weak, strong, mid], ["ndcg@10"], baseline="weak", n_boot=100)
    assert [r["vs"] for r in named] == ["strong", "weak", "weak"]  # weak vs the strongest other
    with pytest.raises(ValueError, match="baseline 'nope'"):
        compare_results([weak, strong], baseline="nope")
    with pytest.raises(ValueError, match="unique"):
        compare_results([weak, weak])


def test_compare_results_without_per_user_values_keeps_the_mean() -> None:
    a = _result("a", np.linspace(0, 1, 50))
    bare = EvalResult(model="bare", metrics={"ndcg@10": 0.9, "recall@10": 0.8})
    rows = compare_results([a, bare])
    by = {(r["model"], r["metric"]): r for r in rows}
    assert by["bare", "ndcg@10"]["mean"] == 0.9 and by["bare", "ndcg@10"]["ci_lo"] is None
    assert by["a", "ndcg@10"]["vs"] == "bare" and by["a", "ndcg@10"]["diff"] is None
    assert compare_results([]) == []
    solo = compare_results([a])
    assert solo[0]["vs"] is None and solo[0]["ci_lo"] is not None


# ------------------------------------------------------------------------------------------- report
def test_report_gives_cis_and_a_paired_test(tmp_path: Path, ml100k: Dataset) -> None:
    split = leave_last_out(ml100k)
    results = [evaluate(m.fit(split.train), split, ks=(5, 10)) for m in (Popularity(), RandomModel())]
    paths = write_report(results, tmp_path / "rep", n_boot=500)
    sig = json.loads(paths["json"].read_text())["significance"]
    assert sig["confidence"] == 0.95 and "Wilcoxon" in sig["tests"][0] and "t-test" in sig["tests"][1]
    rows = {(r["model"], r["metric"]): r for r in sig["rows"]}
    assert set(rows) == {(m, k) for m in ("popularity", "random") for k in ("ndcg@10", "recall@10")}
    pop = rows["popularity", "ndcg@10"]
    assert pop["mean"] == pytest.approx(results[0]["ndcg@10"])
    assert pop["ci_lo"] < pop["mean"] < pop["ci_hi"] and pop["n_users"] == 943
    assert pop["vs"] == "random" and rows["random", "ndcg@10"]["vs"] == "popularity"
    assert pop["diff"] > 0 and pop["p_wilcoxon"] < 1e-4 and pop["p_ttest"] < 1e-4 and pop["significant"]
    assert rows["random", "recall@10"]["diff"] == pytest.approx(-rows["popularity", "recall@10"]["diff"])
    md = paths["markdown"].read_text()
    assert "## Confidence intervals and paired tests (95%)" in md
    line = next(x for x in md.splitlines() if x.startswith("| popularity | ndcg@10 |"))
    assert f"[{pop['ci_lo']:.4f}, {pop['ci_hi']:.4f}]" in line and "| random |" in line and "<1e-4" in line
    assert "| popularity |" in md  # the metrics table is still there
