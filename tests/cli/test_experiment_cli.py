"""The experiment commands, run in process through typer's CliRunner on real data."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lmrec.cli import app

runner = CliRunner()


def test_train_then_recommend_known_user_history_and_bad_input(tmp_path, data_home):
    out = tmp_path / "pop"
    res = runner.invoke(
        app, ["train", "--model", "popularity", "--out", str(out), "--data-dir", str(data_home)]
    )
    assert res.exit_code == 0, res.output
    assert (
        (out / "model.json").exists()
        and (out / "state.safetensors").exists()
        and (out / "catalog.parquet").exists()
    )

    res = runner.invoke(app, ["recommend", str(out), "--user", "196", "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3] and all(r["title"] for r in rows)

    res = runner.invoke(app, ["recommend", str(out), "--history", "50,181", "-k", "5", "--json"])
    items = [json.loads(line)["item_id"] for line in res.output.strip().splitlines()]
    assert res.exit_code == 0 and 50 not in items and 181 not in items

    # an unknown user: the popularity fallback, flagged, with a one-line warning; --strict refuses
    res = runner.invoke(app, ["recommend", str(out), "--user", "999999", "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert [r["fallback"] for r in rows] == ["popularity"] * 3
    assert "warning: unknown user_id" in res.stderr and "999999" in res.stderr
    res = runner.invoke(app, ["recommend", str(out), "--user", "999999", "--strict"])
    assert res.exit_code == 2 and "999999" in res.stderr  # one error line, exit 2

    for k in ("0", "-1"):  # a usage error naming -k, not a ValueError traceback
        res = runner.invoke(app, ["recommend", str(out), "--user", "1", "-k", k])
        assert res.exit_code == 2 and not isinstance(res.exception, ValueError), res.output

    for args, needle in (
        (["--text", ""], "--text is blank"),
        (["--text", "   "], "--text is blank"),
        (["--history", ""], "--history is empty"),
        (["--history", " , "], "--history is empty"),
    ):
        res = runner.invoke(app, ["recommend", str(out), *args])
        assert res.exit_code == 2 and needle in res.stderr, (args, res.output)


def test_evaluate_with_config_and_overrides(tmp_path, data_home):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[dataset]\nname = "ml-100k"\n[split]\nprotocol = "leave_last_out"\n'
        '[[models]]\nname = "popularity"\n[[models]]\nname = "random"\n[evaluation]\nks = [10]\n'
    )
    out = tmp_path / "rep"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--data-dir",
            str(data_home),
            "--set",
            "models.1.params.seed=5",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["results"][0]["metrics"]["recall@10"] > 0.08
    assert report["results"][1]["info"]["config"]["seed"] == 5
