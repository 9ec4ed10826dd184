"""Report figures: metric@K with bootstrap confidence bands, and a per-segment bar chart.

Both are drawn with matplotlib's Agg backend (no display needed) and written atomically as PNG.
The bands come from the same per-user percentile bootstrap as the report's tables
(:func:`~lmrec.evaluation.significance.bootstrap_ci`), so a band and its table row agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmrec._atomic import atomic_write
from lmrec.evaluation.evaluate import EvalResult
from lmrec.evaluation.significance import bootstrap_ci

#: segment order on the bar chart, with the label under each group
SEGMENTS = {
    "cold_users": "cold users",
    "warm_users": "warm users",
    "cold_items": "cold items",
    "warm_items": "warm items",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def metric_ks(results: Sequence[EvalResult], metric: str) -> list[int]:
    """The cut-offs K at which every result has ``metric@K``, ascending."""
    sets = [{int(k.split("@")[1]) for k in r.metrics if k.startswith(f"{metric}@")} for r in results]
    return sorted(set.intersection(*sets)) if sets else []


def band(result: EvalResult, metric: str, ks: Sequence[int], *, n_boot: int, alpha: float, seed: int):
    """``(lo, hi)`` lists: the bootstrap interval of ``metric@K`` for each K (None without per-user
    values)."""
    frame = result.per_user
    if frame is None or any(f"{metric}@{k}" not in frame.columns for k in ks):
        return None
    cis = [bootstrap_ci(frame[f"{metric}@{k}"], n_boot=n_boot, alpha=alpha, seed=seed) for k in ks]
    return [c[1] for c in cis], [c[2] for c in cis]


def plot_metrics_at_k(
    results: Sequence[EvalResult],
    path: Path,
    metrics: Sequence[str] = ("recall", "ndcg"),
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Path:
    """metric@K against K (log axis, a tick at every evaluated K), one line per model with its
    ``1 - alpha`` bootstrap band, one panel per metric and one legend for the figure."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, metric in zip(axes[0], metrics, strict=True):
        ks = metric_ks(results, metric)
        for i, r in enumerate(results):
            if not ks:
                break
            color = f"C{i % 10}"
            (line,) = ax.plot(ks, [r.metrics[f"{metric}@{k}"] for k in ks], marker="o", color=color)
            handles.setdefault(r.model, line)
            ci = band(r, metric, ks, n_boot=n_boot, alpha=alpha, seed=seed)
            if ci is not None:
                ax.fill_between(ks, *ci, color=color, alpha=0.15, linewidth=0)
        if ks:
            if len(ks) > 1 and ks[-1] / ks[0] >= 10:
                ax.set_xscale("log")
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.minorticks_off()
        ax.set_xlabel("K")
        ax.set_ylabel(f"{metric}@K")
        ax.set_title(f"{metric}@K")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=min(len(handles), 6),
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.5, -0.02),
        )
    info = results[0].info if results else {}
    fig.suptitle(
        f"{info.get('dataset', '')} — {info.get('split', {}).get('name', '')}, phase {info.get('phase', '')} "
        f"(bands: {1 - alpha:.0%} bootstrap CI over users)",
        fontsize=10,
    )
    rows = -(-len(handles) // 6) if handles else 0
    fig.tight_layout(rect=(0, 0.06 * rows, 1, 1))
    return _save(fig, path)


def plot_segments(results: Sequence[EvalResult], path: Path, metric: str = "ndcg@10") -> Path | None:
    """Grouped bars of ``metric`` per segment (cold/warm users, cold/warm items), one bar per model;
    each group is labelled with its number of users. None when no result has segments."""
    segs = [s for s in SEGMENTS if any(s in r.segments and metric in r.segments[s] for r in results)]
    if not segs or not results:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(segs) * max(1, len(results)) ** 0.5 + 2), 3.8))
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        xs = [j + (i - (len(results) - 1) / 2) * width for j in range(len(segs))]
        ys = [r.segments.get(s, {}).get(metric, float("nan")) for s in segs]
        bars = ax.bar(xs, ys, width=width, label=r.model, color=f"C{i % 10}")
        if len(results) * len(segs) <= 24:  # a zero bar is otherwise invisible
            ax.bar_label(bars, fmt="%.3f", fontsize=6, padding=1)
    labels = []
    for s in segs:
        n = max((int(r.segments[s].get("n_users", 0)) for r in results if s in r.segments), default=0)
        labels.append(f"{SEGMENTS[s]}\n({n:,} users)")
    ax.set_xticks(range(len(segs)), labels)
    ax.set_ylabel(metric)
    ax.set_ylim(bottom=0)
    ax.set_title(f"{metric} by segment", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        fontsize=8, frameon=False, ncol=min(len(results), 6), loc="upper center", bbox_to_anchor=(0.5, -0.22)
    )
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["SEGMENTS", "band", "metric_ks", "plot_metrics_at_k", "plot_segments"]
