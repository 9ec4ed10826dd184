"""Report figures (metric@K with bootstrap bands, per-segment bars) and the self-contained HTML report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.split import leave_last_out
from lmrec.evaluation import evaluate
from lmrec.evaluation import plots as plots_mod
from lmrec.evaluation.report import write_report
from lmrec.models import create_model

KS = (1, 5, 10, 20, 50)


@pytest.fixture(scope="module")
def results(ml100k: Dataset):
    split = leave_last_out(ml100k)
    return [
        evaluate(create_model(n).fit(split.train), split, ks=KS, name=n) for n in ("popularity", "item_knn")
    ]


def test_metrics_at_k_has_integer_ticks_one_legend_and_bands(results, tmp_path, monkeypatch) -> None:
    figs = []
    monkeypatch.setattr(plots_mod, "_save", lambda fig, path: figs.append(fig) or path)
    plots_mod.plot_metrics_at_k(results, tmp_path / "m.png", n_boot=200)
    (fig,) = figs
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == [
        "popularity",
        "item_knn",
    ]
    for ax in fig.axes:
        assert ax.get_legend() is None
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in KS]
        assert len(ax.collections) == len(results)  # one confidence band per model
        band = ax.collections[0].get_paths()[0].vertices[:, 1]
        line = ax.lines[0].get_ydata()
        assert band.min() <= min(line) and band.max() >= max(line)


def test_band_brackets_the_mean(results) -> None:
    lo, hi = plots_mod.band(results[1], "ndcg", KS, n_boot=300, alpha=0.05, seed=0)
    means = [results[1].metrics[f"ndcg@{k}"] for k in KS]
    assert all(a < m < b for a, m, b in zip(lo, means, hi, strict=True))


def test_segment_bars_one_group_per_segment(results, tmp_path, monkeypatch) -> None:
    figs = []
    monkeypatch.setattr(plots_mod, "_save", lambda fig, path: figs.append(fig) or path)
    assert plots_mod.plot_segments(results, tmp_path / "s.png") is not None
    ax = figs[0].axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels and all("users)" in t for t in labels) and any(t.startswith("warm users") for t in labels)
    assert len(ax.patches) == len(labels) * len(results)


def test_html_report_is_one_self_contained_file(results, tmp_path: Path) -> None:
    paths = write_report(results, tmp_path / "rep", n_boot=200)
    assert {"json", "markdown", "html", "plot", "segments"} <= set(paths)
    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,[A-Za-z0-9+/=]+">', page)) == 2
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    assert "<table>" in page and "<td>popularity</td>" in page and "Confidence intervals" in page
    md = paths["markdown"].read_text()
    assert "![" in md and "segments.png" in md and "metrics_at_k.png" in md
    assert (tmp_path / "rep" / "segments.png").read_bytes()[:4] == b"\x89PNG"
