"""Evaluation reports: JSON (everything), Markdown (the tables people read), the same as one
self-contained HTML file, and PNG plots: metric@K with confidence bands, and metrics per segment.

All carry 95% bootstrap confidence intervals for the headline metrics (NDCG and Recall at K = 10,
or the K evaluated) and a paired test of each model against the strongest other model, computed
from the per-user values (see :mod:`lmrec.evaluation.significance`); the plots' bands come from
the same bootstrap (:mod:`lmrec.evaluation.plots`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmrec._atomic import atomic_write_bytes
from lmrec.evaluation.evaluate import EvalResult
from lmrec.evaluation.plots import plot_metrics_at_k, plot_segments
from lmrec.evaluation.report_html import markdown_to_html
from lmrec.evaluation.significance import TTEST, WILCOXON, compare_results


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def markdown_table(results: Sequence[EvalResult], columns: Sequence[str] | None = None) -> str:
    """One row per model; default columns are the ranking metrics at every K plus AUC/coverage."""
    if not results:
        return ""
    if columns is None:
        ks = sorted({int(c.split("@")[1]) for c in results[0].metrics if "@" in c})
        k = 10 if 10 in ks else ks[len(ks) // 2] if ks else 10
        wanted = [f"{m}@{k}" for m in ("recall", "precision", "ndcg", "mrr", "map")]
        wanted += ["auc", f"coverage@{k}", f"novelty@{k}", f"ild@{k}"]
        columns = [c for c in wanted if c in results[0].metrics]
    header = ["model", *columns, "fit s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        fit = r.info.get("fit_seconds")
        row = [
            r.model,
            *(_fmt(r.metrics.get(c, float("nan"))) for c in columns),
            _fmt(fit) if fit is not None else "–",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def segment_table(results: Sequence[EvalResult], metric: str = "ndcg@10") -> str:
    segs = sorted({s for r in results for s in r.segments})
    if not segs:
        return ""
    lines = [
        "| model | " + " | ".join(f"{s} {metric} (n)" for s in segs) + " |",
        "|" + "---|" * (len(segs) + 1),
    ]
    for r in results:
        cells = []
        for s in segs:
            seg = r.segments.get(s)
            cells.append(f"{_fmt(seg.get(metric, float('nan')))} ({int(seg['n_users'])})" if seg else "–")
        lines.append(f"| {r.model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _p(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "–"
    return "<1e-4" if v < 1e-4 else f"{v:.4f}"


def _interval(lo: float | None, hi: float | None) -> str:
    return "–" if lo is None or hi is None else f"[{_fmt(lo)}, {_fmt(hi)}]"


def significance_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown for :func:`~lmrec.evaluation.significance.compare_results` rows."""
    if not rows:
        return ""
    header = ["model", "metric", "mean", "95% CI", "vs", "Δ", "Δ 95% CI", "p Wilcoxon", "p t-test", "users"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        has_test = r["diff"] is not None
        cells = [
            r["model"],
            r["metric"],
            _fmt(r["mean"]),
            _interval(r["ci_lo"], r["ci_hi"]),
            r["vs"] if has_test else "–",
            f"{r['diff']:+.4f}" + ("*" if r["significant"] else "") if has_test else "–",
            _interval(r["diff_lo"], r["diff_hi"]),
            _p(r["p_wilcoxon"]),
            _p(r["p_ttest"]),
            str(r["n_users"]) if r["n_users"] is not None else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    results: Sequence[EvalResult],
    out_dir: str | os.PathLike[str],
    title: str = "lmrec evaluation",
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``report.html``, ``metrics_at_k.png`` and (when there
    are segments) ``segments.png`` into ``out_dir``; returns their paths by kind.

    ``n_boot``/``alpha``/``seed`` set the bootstrap behind the confidence intervals, the paired
    tests and the plots' bands.
    """
    out = Path(out_dir)
    rows = compare_results(results, n_boot=n_boot, alpha=alpha, seed=seed)
    significance = {
        "confidence": 1 - alpha,
        "interval": f"percentile bootstrap over users ({n_boot} resamples, seed {seed})",
        "tests": [WILCOXON, TTEST],
        "compared_with": "the strongest other model by the first metric (mean over users)",
        "rows": rows,
    }
    payload = {"title": title, "results": [r.to_dict() for r in results], "significance": significance}
    atomic_write_bytes(out / "report.json", json.dumps(payload, indent=2, default=str).encode())
    info = results[0].info if results else {}
    md = [f"# {title}", ""]
    if info:
        md += [
            f"- dataset: **{info.get('dataset')}** (interactions checksum `{info.get('dataset_checksum')}`)",
            f"- split: `{json.dumps(info.get('split'))}`",
            f"- phase: {info.get('phase')}; history at query time: {info.get('history_at_query_time')}; "
            f"model fitted on: {info.get('fit_on')}",
            f"- ranking: {info.get('ranking')}",
            f"- versions: {', '.join(f'{k} {v}' for k, v in info.get('versions', {}).items())}",
            "",
        ]
    md += ["## Metrics", "", markdown_table(results), ""]
    ks = sorted(
        {int(c.split("@")[1]) for c in (results[0].metrics if results else {}) if c.startswith("ndcg@")}
    )
    if len(ks) > 1:
        cols = [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks]
        md += ["## Recall and NDCG at every K", "", markdown_table(results, cols), ""]
    sig = significance_table(rows)
    if sig:
        conf = f"{1 - alpha:.0%}"
        md += [
            f"## Confidence intervals and paired tests ({conf})",
            "",
            f"Mean over test users with its {conf} percentile-bootstrap interval ({n_boot} resamples of the "
            f"users, seed {seed}). Each model is compared with the strongest other model by "
            f"{rows[0]['metric']} (`vs`) on the same users: Δ = model − vs, with its bootstrap interval "
            f"and two-sided p-values from the {WILCOXON} and the {TTEST}; * marks Δ where both are below "
            f"{alpha:g}.",
            "",
            sig,
            "",
        ]
    png = plot_metrics_at_k(results, out / "metrics_at_k.png", n_boot=n_boot, alpha=alpha, seed=seed)
    md += [
        f"![Recall@K and NDCG@K with {1 - alpha:.0%} bootstrap bands]({png.name})",
        "",
    ]
    seg = segment_table(results)
    seg_png = plot_segments(results, out / "segments.png") if seg else None
    if seg:
        md += ["## Segments (NDCG@10)", "", seg, ""]
        if seg_png is not None:
            md += [f"![NDCG@10 by segment]({seg_png.name})", ""]
    md += ["## Configs", ""]
    for r in results:
        md.append(f"- {r.model}: `{json.dumps(r.info.get('config', {}))}`")
    md.append("")
    text = "\n".join(md)
    atomic_write_bytes(out / "report.md", text.encode())
    atomic_write_bytes(out / "report.html", markdown_to_html(text, out, title=title).encode())
    paths = {"json": out / "report.json", "markdown": out / "report.md", "html": out / "report.html"}
    paths["plot"] = png
    if seg_png is not None:
        paths["segments"] = seg_png
    return paths
