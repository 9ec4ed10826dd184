"""Uncertainty for offline results: bootstrap confidence intervals and paired significance tests.

An offline metric is a mean over test users, so two questions come with every table: how precise
is each mean, and is model A's lead over model B more than luck of the user sample? Both are
answered from the per-user values that :func:`~lmrec.evaluation.evaluate` keeps
(``EvalResult.per_user``: ``user_id`` + one column per metric).

* :func:`bootstrap_ci`: percentile bootstrap of the mean over users. Users are resampled with
  replacement ``n_boot`` times (seeded, so a report is reproducible); the interval is the
  ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled means. No normality assumption, which
  matters because per-user ranking metrics are far from normal (leave-one-out Recall@10 is 0 or 1).
* :func:`paired_test`: the two models are scored on the *same* users, so the test is on per-user
  differences ``d = a - b`` (pairing removes the between-user variance that dominates these
  metrics). Reported: the mean difference with its bootstrap CI, the two-sided **Wilcoxon
  signed-rank** p-value (``scipy.stats.wilcoxon``, zero differences dropped: "wilcox" zero method)
  and the two-sided **paired t-test** p-value (``t = mean(d) / (sd(d) / sqrt(n))`` with ``n - 1``
  degrees of freedom, the statistic of ``scipy.stats.ttest_rel``). Computing t directly lets the
  degenerate cases be answered exactly instead of with a warning: identical models (every
  ``d = 0``) give difference 0 and p = 1; a constant non-zero difference gives p = 0.
* :func:`compare_results`: the table for reports and benchmarks, one row per (model, metric) with
  the mean, its CI and a paired test against a baseline (by default the strongest model by the
  headline metric; the strongest model itself is tested against the runner-up).

Users with a NaN value for a metric (e.g. AUC of a user whose targets cover every item) are
dropped for that metric, in both models of a pair.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy import stats

if TYPE_CHECKING:
    from lmrec.evaluation.evaluate import EvalResult

#: the tests named in reports
WILCOXON = "Wilcoxon signed-rank (two-sided, zero differences dropped)"
TTEST = "paired t-test (two-sided)"
#: resampled values held in memory at once (n_boot x n_users is split into chunks of this size)
_CHUNK = 1 << 22


def _clean(values: Any) -> np.ndarray:
    arr = np.asarray(values.to_numpy() if isinstance(values, pl.Series) else values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected one value per user (a 1-d array), got shape {arr.shape}")
    return arr[~np.isnan(arr)]


def _check(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``values``, drawn in memory-bounded chunks."""
    n = len(values)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK // n)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, per_chunk):
        stop = min(n_boot, start + per_chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def bootstrap_ci(
    per_user_values: Any, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean over users and its percentile-bootstrap ``1 - alpha`` interval.

    NaNs are dropped first; no values at all give ``(nan, nan, nan)``. The interval always contains
    the mean and lies within the range of the values (it is adjusted for rounding error at most).
    """
    _check(n_boot, alpha)
    values = _clean(per_user_values)
    if len(values) == 0:
        return (math.nan, math.nan, math.nan)
    vmin, vmax = float(values.min()), float(values.max())
    if vmin == vmax:
        return (vmin, vmin, vmin)
    # Rounding (summation order, dividing n equal values by n) can move a mean an ulp outside what
    # it is mathematically bound by: the range of the values, and (for the interval) the sample mean.
    mean = min(max(float(values.mean()), vmin), vmax)
    means = _bootstrap_means(values, n_boot, seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (mean, max(min(float(lo), mean), vmin), min(max(float(hi), mean), vmax))


@dataclass(frozen=True)
class PairedTest:
    """Model ``a`` against model ``b`` on one metric, over the users both have a value for."""

    n_users: int
    mean_a: float
    mean_b: float
    #: mean of the per-user differences a - b (= mean_a - mean_b over the paired users)
    diff: float
    diff_lo: float
    diff_hi: float
    p_wilcoxon: float
    p_ttest: float
    t_statistic: float
    alpha: float

    @property
    def significant(self) -> bool:
        """Both tests reject "no difference" at ``alpha``."""
        return max(self.p_wilcoxon, self.p_ttest) < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant, "tests": [WILCOXON, TTEST]}


def _wilcoxon_p(d: np.ndarray) -> float:
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return 1.0  # no user differs: nothing to rank, no evidence of a difference
    return float(stats.wilcoxon(nonzero, zero_method="wilcox").pvalue)


def _ttest(d: np.ndarray) -> tuple[float, float]:
    n = len(d)
    mean = float(d.mean())
    if n < 2:
        return (math.nan, math.nan)
    sd = float(d.std(ddof=1))
    # a spread within rounding of the mean is no spread: the difference is the same for every user
    if sd <= 1e-12 * max(1.0, abs(mean)):
        if mean == 0.0 or bool(np.all(d == 0)):
            return (0.0, 1.0)
        return (math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(n))
    return (t, float(2 * stats.t.sf(abs(t), n - 1)))


def _aligned(a: Any, b: Any, metric: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Two value arrays over the same users: frames are joined on ``user_id``, arrays taken as aligned."""
    if isinstance(a, pl.DataFrame) != isinstance(b, pl.DataFrame):
        raise TypeError("pass two per-user frames (user_id + metric) or two aligned arrays, not one of each")
    if not isinstance(a, pl.DataFrame):
        va = np.asarray(a, dtype=np.float64)
        vb = np.asarray(b, dtype=np.float64)
        if va.shape != vb.shape or va.ndim != 1:
            raise ValueError(
                f"paired values must be two 1-d arrays of one length, got {va.shape} and {vb.shape}"
            )
        return va, vb
    assert isinstance(b, pl.DataFrame)
    col = metric or _only_metric(a)
    for side, frame in (("a", a), ("b", b)):
        for need in ("user_id", col):
            if need not in frame.columns:
                raise ValueError(
                    f"per-user frame {side} has no {need!r} column (columns: {', '.join(frame.columns)})"
                )
        dup = frame["user_id"].is_duplicated()
        if dup.any():
            raise ValueError(
                f"per-user frame {side} lists user {frame['user_id'][int(dup.arg_true()[0])]!r} twice"
            )
    left = a.select("user_id", pl.col(col).cast(pl.Float64).alias("_a"))
    right = b.select(pl.col("user_id").cast(a["user_id"].dtype), pl.col(col).cast(pl.Float64).alias("_b"))
    for side, x, y in (("a", left, right), ("b", right, left)):
        only = x.join(y, on="user_id", how="anti")
        if only.height:
            raise ValueError(
                f"a paired test needs the same users on both sides: {only.height} user(s) only in {side} "
                f"(e.g. {only['user_id'][0]!r}); evaluate both models on the same split and phase"
            )
    joined = left.join(right, on="user_id", how="inner")
    return joined["_a"].to_numpy(), joined["_b"].to_numpy()


def _only_metric(frame: pl.DataFrame) -> str:
    cols = [c for c in frame.columns if c != "user_id"]
    if len(cols) != 1:
        raise ValueError(f"name the metric to compare (columns: {', '.join(cols)})")
    return cols[0]


def paired_test(
    a: Any,
    b: Any,
    metric: str | None = None,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedTest:
    """Compare two models' per-user values of one metric over the same users.

    ``a``/``b`` are per-user frames (``user_id`` + the ``metric`` column, e.g. ``EvalResult.per_user``),
    joined on ``user_id`` (both must cover the same users), or two arrays already aligned by user.
    Users with NaN on either side are dropped. See the module docstring for the tests.
    """
    _check(n_boot, alpha)
    va, vb = _aligned(a, b, metric)
    keep = ~(np.isnan(va) | np.isnan(vb))
    va, vb = va[keep], vb[keep]
    if len(va) == 0:
        raise ValueError("no user has a value for both models")
    d = va - vb
    diff, lo, hi = bootstrap_ci(d, n_boot=n_boot, alpha=alpha, seed=seed)
    t, p_t = _ttest(d)
    return PairedTest(
        n_users=len(d),
        mean_a=float(va.mean()),
        mean_b=float(vb.mean()),
        diff=diff,
        diff_lo=lo,
        diff_hi=hi,
        p_wilcoxon=_wilcoxon_p(d),
        p_ttest=p_t,
        t_statistic=t,
        alpha=alpha,
    )


# ------------------------------------------------------------------------------------------ tables
def headline_metrics(metrics: Mapping[str, float] | Sequence[str]) -> list[str]:
    """NDCG and Recall at K = 10, or at the middle K evaluated when 10 was not (as report tables do)."""
    names = list(metrics)
    ks = sorted({int(c.split("@")[1]) for c in names if c.startswith(("ndcg@", "recall@"))})
    if not ks:
        return []
    k = 10 if 10 in ks else ks[len(ks) // 2]
    return [m for m in (f"ndcg@{k}", f"recall@{k}") if m in names]


def compare_results(
    results: Sequence[EvalResult],
    metrics: Sequence[str] | None = None,
    *,
    baseline: str | None = None,
    headline: str | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows ``{model, metric, n_users, mean, ci_lo, ci_hi, vs, diff, diff_lo, diff_hi, p_wilcoxon, p_ttest,
    significant}`` for a benchmark table, one per model and metric, in ``results`` order.

    ``metrics`` default to :func:`headline_metrics`; ``headline`` (default: the first of them) picks
    the default baseline, the model with the highest mean. Every other model is tested against the
    ``baseline`` (``vs``, ``diff = model - vs``); the baseline itself against the strongest other
    model, so a table always says whether the leader's lead holds. A model evaluated without
    per-user values gets its mean and no interval or test.
    """
    if not results:
        return []
    names = [r.model for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique to compare them, got {names}")
    metrics = list(metrics) if metrics is not None else headline_metrics(results[0].metrics)
    if not metrics:
        return []
    headline = headline or metrics[0]
    by_name = {r.model: r for r in results}
    if baseline is not None and baseline not in by_name:
        raise ValueError(f"baseline {baseline!r} is not one of the models: {', '.join(names)}")
    ranked = sorted(names, key=lambda n: -_mean(by_name[n], headline))
    base = baseline or ranked[0]
    runner_up = next((n for n in ranked if n != base), None)
    rows: list[dict[str, Any]] = []
    for r in results:
        vs = base if r.model != base else runner_up
        for metric in metrics:
            rows.append(_row(r, by_name.get(vs) if vs else None, metric, n_boot, alpha, seed))
    return rows


def _mean(r: EvalResult, metric: str) -> float:
    v = r.metrics.get(metric, math.nan)
    return -math.inf if v is None or math.isnan(v) else float(v)


def _per_user(r: EvalResult, metric: str) -> pl.DataFrame | None:
    if r.per_user is None or metric not in r.per_user.columns or "user_id" not in r.per_user.columns:
        return None
    return r.per_user.select("user_id", metric)


def _row(
    r: EvalResult, other: EvalResult | None, metric: str, n_boot: int, alpha: float, seed: int
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": r.model,
        "metric": metric,
        "n_users": None,
        "mean": r.metrics.get(metric, math.nan),
        "ci_lo": None,
        "ci_hi": None,
        "vs": other.model if other is not None else None,
        "diff": None,
        "diff_lo": None,
        "diff_hi": None,
        "p_wilcoxon": None,
        "p_ttest": None,
        "significant": None,
    }
    mine = _per_user(r, metric)
    if mine is not None:
        values = mine[metric].cast(pl.Float64)
        mean, lo, hi = bootstrap_ci(values, n_boot=n_boot, alpha=alpha, seed=seed)
        row.update(n_users=int(values.is_not_nan().sum()), mean=mean, ci_lo=lo, ci_hi=hi)
    theirs = _per_user(other, metric) if other is not None else None
    if mine is not None and theirs is not None:
        test = paired_test(mine, theirs, metric, n_boot=n_boot, alpha=alpha, seed=seed)
        row.update(
            diff=test.diff,
            diff_lo=test.diff_lo,
            diff_hi=test.diff_hi,
            p_wilcoxon=test.p_wilcoxon,
            p_ttest=test.p_ttest,
            significant=test.significant,
        )
    return row


__all__ = [
    "TTEST",
    "WILCOXON",
    "PairedTest",
    "bootstrap_ci",
    "compare_results",
    "headline_metrics",
    "paired_test",
]
