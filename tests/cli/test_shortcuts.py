"""`lmrec datasets add`, `lmrec evaluate` without a config file, `--set ease.l2=300`, `--version`
and help that reads well at 80 columns."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from lmrec import __version__
from lmrec.cli import app

runner = CliRunner()
EVENTS = "customer,sku,ts\n" + "".join(
    f"u{u},i{(u * 3 + j) % 7},{1000 + 10 * u + j}\n" for u in range(6) for j in range(4)
)


@pytest.fixture()
def mydata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LMREC_USER_DATA_HOME", str(tmp_path / "user"))
    monkeypatch.setenv("LMREC_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "events.csv").write_text(EVENTS)
    res = runner.invoke(
        app,
        ["datasets", "add", "mydata", "--interactions", str(tmp_path / "events.csv"),
         "--map", "user_id=customer,item_id=sku,timestamp=ts"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "mydata: 24 interactions, 6 users, 7 items" in res.output
    return tmp_path


def test_evaluate_without_config_with_short_set(mydata: Path) -> None:
    out = mydata / "rep"
    res = runner.invoke(
        app,
        ["evaluate", "--dataset", "mydata", "--model", "popularity", "--model", "ease",
         "--set", "ease.l2=7", "--protocol", "train-only", "--split", "leave-last-out", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    models = {r["model"]: r["info"] for r in report["results"]}
    assert set(models) == {"popularity", "ease"}
    assert models["ease"]["config"]["l2"] == 7 and models["ease"]["protocol"] == "train-only"
    assert models["ease"]["dataset"] == "mydata"
    assert (out / "report.html").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "nope.l2=3"], "'nope' is neither a config table"),
        (["--split", "sideways"], "--split 'sideways': choose one of leave-last-out"),
        (["--protocol", "test-only"], "--protocol 'test-only'"),
        (["--model", "no_such_model"], "no_such_model"),
    ],
)
def test_evaluate_shortcut_errors_are_one_line(mydata: Path, args: list[str], needle: str) -> None:
    res = runner.invoke(app, ["evaluate", "--dataset", "mydata", "--model", "ease", *args])
    assert res.exit_code == 2 and needle in res.output, res.output


def test_long_set_form_still_works_and_split_alias_in_config(tmp_path: Path) -> None:
    from lmrec.cli.experiment import _apply_sets, _shortcuts
    from lmrec.experiment import ExperimentConfig

    cfg = _shortcuts(ExperimentConfig(), "ml-100k", ["ease", "sasrec"], "refit", "cold-item")
    cfg = _apply_sets(cfg, ["models.ease.params.l2=300", "sasrec.train.max_epochs=2"])
    assert cfg.split.protocol == "cold_item" and [m.name for m in cfg.models] == ["ease", "sasrec"]
    assert cfg.models[0].params == {"l2": 300} and cfg.models[1].params == {"train": {"max_epochs": 2}}
    assert (
        ExperimentConfig.parse({"split": {"protocol": "leave-last-out"}}).split.protocol == "leave_last_out"
    )


def test_datasets_add_bad_file_exits_2_naming_file_and_column(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LMREC_USER_DATA_HOME", str(tmp_path / "user"))
    bad = tmp_path / "events.csv"
    bad.write_text("customer,sku\nalice,\n")
    res = runner.invoke(
        app, ["datasets", "add", "x", "--interactions", str(bad), "--map", "user_id=customer,item_id=sku"]
    )
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and "events.csv" in line and "'item_id'" in line, res.output
    res = runner.invoke(app, ["datasets", "add", "x", "--interactions", str(bad), "--map", "user_id"])
    assert res.exit_code == 2 and "--map expects NAME=COLUMN" in res.output


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"lmrec {__version__}"


COMMANDS = [
    [], ["datasets"], ["datasets", "list"], ["datasets", "info"], ["datasets", "download"],
    ["datasets", "verify"], ["datasets", "add"], ["datasets", "remove"], ["evaluate"], ["train"],
    ["recommend"], ["quickstart"], ["tune"], ["encode"], ["tags"], ["keywords"],
]  # fmt: skip


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "lmrec")
def test_help_reads_well_at_80_columns(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert all(cell_len(line) <= 80 for line in lines), [line for line in lines if cell_len(line) > 80]
    # the docstring's paragraphs are rewrapped: no paragraph line ends in mid-sentence at a short width
    text = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith(("│", "╭", "╰"))]
    for a, b in itertools.pairwise(text):
        if b[:1].islower() and not a.endswith((".", ":", ")")):
            assert len(a) > 55, f"broken line in --help of {cmd}: {a!r} / {b!r}"


def test_every_command_help_is_reflowed() -> None:
    """Typer keeps single line breaks of a docstring; each paragraph must be one line."""
    infos = [*app.registered_commands]
    for group in app.registered_groups:
        infos += group.typer_instance.registered_commands
    assert len(infos) > 10
    for info in infos:
        assert info.help, info.name
        assert "\n" not in info.help.replace("\n\n", ""), (info.name, info.help)
