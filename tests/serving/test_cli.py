"""``lmrec serve`` / ``lmrec retrain`` registration and start-up checks (no server left running)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lmrec.cli.serve import register
from lmrec.errors import LmrecError


@pytest.fixture()
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_commands_and_options(cli: typer.Typer) -> None:
    out = CliRunner().invoke(cli, ["serve", "--help"], env={"COLUMNS": "200"}).output
    for opt in (
        "--api-key",
        "--no-auth",
        "--db",
        "--catalogue",
        "--index",
        "--policy",
        "--explore",
        "--diversity",
    ):
        assert opt in out
    assert "LMREC_API_KEY" in out
    assert "--out" in CliRunner().invoke(cli, ["retrain", "--help"], env={"COLUMNS": "200"}).output


def test_serve_refuses_to_start_without_a_key(cli: typer.Typer, ease_artifact: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["serve", str(ease_artifact), "--db", str(tmp_path / "e.db")], env={"LMREC_API_KEY": ""}
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, LmrecError) and "no API key" in str(result.exception)


def test_serve_rejects_a_missing_artifact(cli: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "nope")], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "does not exist" in " ".join(result.output.split())


def test_serve_help_reads_well_at_80_columns(cli: typer.Typer) -> None:
    out = CliRunner().invoke(cli, ["serve", "--help"], env={"COLUMNS": "80"}).output
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out  # nothing cut short
    serve_cmd = typer.main.get_command(cli).commands["serve"]  # type: ignore[attr-defined]
    options = [p for p in serve_cmd.params if p.param_type_name == "option"]
    names = [n for p in options for n in p.opts + p.secondary_opts]
    assert len(names) >= 18
    for name in names:  # every option name in full, on a line of its own words
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", out), name
    # the help text of each option gets room: no column narrower than 30 characters
    widths = [len(m.group(1).rstrip()) for m in re.finditer(r"<[a-z]+>\s+(\S.*?)\s*│$", out, re.M)]
    assert widths and max(widths) >= 30


def test_serve_help_names_the_catalogue_file_the_server_reads(cli: typer.Typer) -> None:
    from lmrec.serving.catalogue import CATALOGUE_FILES

    out = " ".join(CliRunner().invoke(cli, ["serve", "--help"], env={"COLUMNS": "200"}).output.split())
    assert f"Default: the artifact's {CATALOGUE_FILES[0]} (written by `lmrec train`)" in out
    assert "catalogue.*" not in out
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "catalogue.*" not in readme and CATALOGUE_FILES[0] in readme


def test_catalogue_lookup_order(tmp_path: Path) -> None:
    """What the help promises: catalog.parquet first, then catalogue.parquet, then csv/jsonl."""
    from lmrec.serving.catalogue import find_catalogue

    assert find_catalogue(tmp_path) is None
    (tmp_path / "catalogue.csv").write_text("item_id,title\n1,a\n")
    assert find_catalogue(tmp_path) == tmp_path / "catalogue.csv"
    (tmp_path / "catalogue.parquet").write_bytes(b"")
    assert find_catalogue(tmp_path) == tmp_path / "catalogue.parquet"
    (tmp_path / "catalog.parquet").write_bytes(b"")
    assert find_catalogue(tmp_path) == tmp_path / "catalog.parquet"
