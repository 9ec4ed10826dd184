"""`lmrec quickstart` with a small config: the table, a free-text query, a new item from its text."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.cli.quickstart import TEXT_QUERY

runner = CliRunner()


def test_quickstart_shows_text_query_new_item_and_report(tmp_path: Path, data_home: Path) -> None:
    cfg = tmp_path / "q.toml"
    cfg.write_text(
        '[dataset]\nname = "ml-100k"\n[evaluation]\nks = [1, 10]\n'
        '[[models]]\nname = "popularity"\n[[models]]\nname = "ease"\n[[models]]\nname = "content"\n'
    )
    out = tmp_path / "qs"
    res = runner.invoke(
        app, ["quickstart", "--config", str(cfg), "--out", str(out), "--data-dir", str(data_home)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    text = res.output
    assert "content" in text and "ease: top 3" in text
    assert TEXT_QUERY in text
    # titles for the free-text query: at least one children's/animated classic of ml-100k
    kids = ("Pinocchio", "Aristocats", "Toy Story", "Winnie the Pooh", "Swan Princess", "Lion King")
    query_block = text.split(TEXT_QUERY, 1)[1].split("A new movie", 1)[0]
    assert any(t in query_block for t in kids), query_block
    assert "A new movie with no interactions" in text and "users it would be recommended to" in text
    assert "nearest movies:" in text
    assert f"report: {out / 'report.html'}" in text and (out / "report.html").is_file()
    assert (out / "metrics_at_k.png").is_file()
