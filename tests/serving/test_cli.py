"""``lmrec serve`` / ``lmrec retrain`` registration and start-up checks (no server left running)."""

from __future__ import annotations

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
