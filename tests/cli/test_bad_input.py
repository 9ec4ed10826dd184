"""Bad input through the real CLI (typer's CliRunner): exit status 2, one ``error:`` line, no traceback.

The table covers configs and ``--set`` (checked before any data is loaded or model fitted), CSV files
built here (through a dataset registered for the test), profile templates, and artifacts damaged
here after a real ``save``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.loaders import DatasetSpec, FileSpec, load_table, register_dataset, unregister_dataset
from lmrec.experiment import save_catalog
from lmrec.models.ease import EASE
from lmrec.testing import make_checkerboard

runner = CliRunner()
DATASET = "test-bad-input"

#: CSV files written into the registered dataset's folder, one per case
CSVS = {
    "fine": "user_id,item_id,timestamp\n"
    + "".join(f"{u},{i},{u * 10 + i}\n" for u in range(6) for i in range(5)),
    # every user's last event repeats their first: each test target is already in the history
    "repeats": "user_id,item_id,timestamp\n"
    + "".join(f"{u},{i},{u * 10 + t}\n" for u in range(6) for t, i in enumerate((1, 2, 3, 1))),
    "no_item_column": "user_id,product,timestamp\n1,2,3\n",
    "bad_rating": "user_id,item_id,rating,timestamp\n1,2,4,1\n1,3,lots,2\n",
}


@pytest.fixture()
def csv_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """Writes one of :data:`CSVS` as the registered test dataset; returns its data folder."""
    monkeypatch.setenv("LMREC_CACHE_HOME", str(tmp_path / "cache"))
    spec = DatasetSpec(
        name=DATASET, family="test-csv", description="bad-input test", size="1 KB", archives=(),
        files=(FileSpec("events.csv"),), local_only="written by tests/cli/test_bad_input.py",
    )  # fmt: skip
    register_dataset(
        spec, lambda folder, spec, meta: load_table(folder / "events.csv", name=DATASET), overwrite=True
    )

    def write(case: str) -> Path:
        folder = tmp_path / "data" / DATASET
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "events.csv").write_text(CSVS[case])
        return tmp_path / "data"

    yield write
    unregister_dataset(DATASET)


@pytest.fixture()
def artifact(tmp_path: Path) -> Path:
    data = make_checkerboard()
    folder = EASE(l2=10.0).fit(data).save(tmp_path / "ease")
    save_catalog(data, folder)
    return folder


def _json(file: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    obj = json.loads(file.read_text())
    edit(obj)
    file.write_text(json.dumps(obj))


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _wrong_shape(file: Path) -> None:
    tensors = load_file(str(file))
    tensors["model.weights"] = tensors["model.weights"][:-1]
    save_file(tensors, str(file))


def _toml(tmp_path: Path, body: str) -> str:
    path = tmp_path / "cfg.toml"
    path.write_text(body)
    return str(path)


EASE_CFG = '[dataset]\nname = "no-such-dataset"\n[[models]]\nname = "ease"\n'
BAD_L2_CFG = '[dataset]\nname = "no-such-dataset"\n[[models]]\nname = "popularity"\n[[models]]\nname = "ease"\nparams = { l2 = -5 }\n'

#: case -> (argv builder, texts the error line must contain)
CASES: dict[str, tuple[Callable[[Path], list[str]], tuple[str, ...]]] = {
    # configs and --set: checked before the (nonexistent) dataset is even looked up
    "config: l2=-5 in a config file": (
        lambda t: ["evaluate", "--config", _toml(t, BAD_L2_CFG)],
        ("models.1 (ease).params.l2", "greater than 0", "-5"),
    ),
    "--set model parameter l2=-5 by name": (
        lambda t: ["evaluate", "--config", _toml(t, EASE_CFG), "--set", "models.ease.params.l2=-5"],
        ("params.l2", "greater than 0"),
    ),
    "--set unknown model parameter": (
        lambda t: ["evaluate", "--config", _toml(t, EASE_CFG), "--set", "models.ease.params.l3=5"],
        ("params.l3: unknown key", "ease takes: ", "l2"),
    ),
    "--set ks=[0,-5]": (
        lambda t: ["evaluate", "--config", _toml(t, EASE_CFG), "--set", "evaluation.ks=[0,-5]"],
        ("evaluation.ks", "positive integer", "0, -5"),
    ),
    "--set phase misspelt": (
        lambda t: ["evaluate", "--config", _toml(t, EASE_CFG), "--set", "evaluation.phase=tset"],
        ("evaluation.phase", "'test' or 'valid'"),
    ),
    "--set model name that matches nothing": (
        lambda t: ["evaluate", "--config", _toml(t, EASE_CFG), "--set", "models.als.params.factors=8"],
        ("no model named 'als'", "models: 0 (ease)"),
    ),
    "--set model index out of range": (
        lambda t: ["evaluate", "--config", _toml(t, EASE_CFG), "--set", "models.3.params.l2=1"],
        ("there is no model 3", "models: 0 (ease)"),
    ),
    "--set without =": (
        lambda t: ["evaluate", "--set", "models.0.params.l2"],
        ("--set expects key=value",),
    ),
    "--set unknown split parameter": (
        lambda t: ["evaluate", "--config", _toml(t, EASE_CFG), "--set", "split.params.n_tset=2"],
        ("split.params", "n_tset", "n_test"),
    ),
    "train --set on the trained model": (
        lambda t: ["train", "--model", "ease", "--data-dir", str(t), "--set", "models.ease.params.l2=-5"],
        ("models.1 (ease).params.l2", "greater than 0"),
    ),
    "train an unknown model": (
        lambda t: ["train", "--model", "eas", "--data-dir", str(t)],
        ("unknown model 'eas'",),
    ),
    "tune --fix a bad value": (
        lambda t: ["tune", "--dataset", "no-such-dataset", "--model", "ease", "--fix", "ease.l2=-5"],
        ("--fix ease.l2", "greater than 0"),
    ),
    "tune --metric unknown": (
        lambda t: ["tune", "--dataset", "no-such-dataset", "--model", "ease", "--metric", "ndgc@10"],
        ("--metric 'ndgc@10'", "ndcg"),
    ),
    "tune --metric cutoff 0": (
        lambda t: ["tune", "--dataset", "no-such-dataset", "--model", "ease", "--metric", "ndcg@0"],
        ("--metric 'ndcg@0'", "K >= 1"),
    ),
    "tune --split-param unknown": (
        lambda t: ["tune", "--dataset", "no-such-dataset", "--model", "ease", "--split-param", "n_tset=1"],
        ("split.params", "n_tset"),
    ),
}

#: CSV case -> (argv builder given the data folder, texts the error line must contain)
CSV_CASES: dict[str, tuple[str, Callable[[Path], list[str]], tuple[str, ...]]] = {
    "CSV without an item_id column": (
        "no_item_column",
        lambda d: ["evaluate", "--data-dir", str(d), "--set", f"dataset.name={DATASET}"],
        ("events.csv", "no 'item_id' column", "product"),
    ),
    "CSV with a non-numeric rating": (
        "bad_rating",
        lambda d: [
            "train",
            "--model",
            "popularity",
            "--data-dir",
            str(d),
            "--set",
            f"dataset.name={DATASET}",
        ],
        ("events.csv", "rating", "lots"),
    ),
    "CSV whose every test target repeats a history item": (
        "repeats",
        lambda d: ["evaluate", "--data-dir", str(d), "--set", f"dataset.name={DATASET}"],
        ("every test target", "already in its user's history", "duplicates='last'"),
    ),
    "encode --template with an unknown field": (
        "fine",
        lambda d: ["encode", DATASET, "--data-dir", str(d), "--template", "{nonexistent}", "--no-cache"],
        ("'nonexistent'", "available fields: item_id"),
    ),
}

#: artifact damage -> (what is done, file the message must name)
ARTIFACT_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "format_version 99": (
        lambda a: _json(a / "model.json", lambda m: m.update(format_version=99)),
        "model.json",
    ),
    "model.json without its config": (
        lambda a: _json(a / "model.json", lambda m: m.pop("config")),
        "model.json",
    ),
    "vocab.json broken": (lambda a: _truncate(a / "vocab.json"), "vocab.json"),
    "vocab.json without items": (lambda a: _json(a / "vocab.json", lambda v: v.pop("item")), "vocab.json"),
    "state.safetensors truncated": (lambda a: _truncate(a / "state.safetensors"), "state.safetensors"),
    "tensor of the wrong shape": (lambda a: _wrong_shape(a / "state.safetensors"), "state.safetensors"),
    "catalog.parquet truncated": (lambda a: _truncate(a / "catalog.parquet"), "catalog.parquet"),
}


def _assert_one_line_error(args: list[str], needles: tuple[str, ...]) -> str:
    res = runner.invoke(app, args, env={"COLUMNS": "100"})
    err = res.stderr
    assert res.exit_code == 2, f"{args}: exit {res.exit_code}\n{res.output}"
    assert isinstance(res.exception, SystemExit), f"{args}: {res.exception!r}"
    assert "Traceback" not in res.output, res.output
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{args}: not one error line:\n{err}"
    for needle in needles:
        assert needle in lines[0], f"{args}: {needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_and_options(case: str, tmp_path: Path) -> None:
    build, needles = CASES[case]
    _assert_one_line_error(build(tmp_path), needles)


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_bad_csv_files(case: str, csv_home: Callable[[str], Path]) -> None:
    csv, build, needles = CSV_CASES[case]
    _assert_one_line_error(build(csv_home(csv)), needles)


@pytest.mark.parametrize("case", list(ARTIFACT_CASES))
def test_damaged_artifact(case: str, artifact: Path) -> None:
    ok = runner.invoke(app, ["recommend", str(artifact), "--user", "1", "-k", "3", "--json"])
    assert ok.exit_code == 0, ok.output
    damage, file = ARTIFACT_CASES[case]
    damage(artifact)
    line = _assert_one_line_error(["recommend", str(artifact), "--user", "1", "-k", "3"], (file,))
    assert str(artifact / file) in line


def test_set_addresses_a_model_by_name_or_label(tmp_path: Path) -> None:
    from lmrec.cli.experiment import _load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[[models]]\nname = "popularity"\n[[models]]\nname = "ease"\n'
        '[[models]]\nname = "ease"\nlabel = "ease-strong"\nparams = { l2 = 900.0 }\n'
    )
    got = _load_config(cfg, None, ["models.ease-strong.params.l2=300", "models.1.params.l2=7"])
    assert [m.params.get("l2") for m in got.models] == [None, 7, 300]
    with pytest.raises(Exception, match="2 models are named 'ease'"):
        _load_config(cfg, None, ["models.ease.params.l2=1"])
    # train adds the model it fits, so the README's `--set models.ease.params.l2=300` reaches it
    got = _load_config(None, None, ["models.ease.params.l2=300"], model="ease")
    assert [(m.name, m.params) for m in got.models] == [("popularity", {}), ("ease", {"l2": 300})]


def test_fine_csv_evaluates(csv_home: Callable[[str], Path]) -> None:
    """The registered CSV dataset itself works: the failures above are the bad input, not the setup."""
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--data-dir",
            str(csv_home("fine")),
            "--set",
            f"dataset.name={DATASET}",
            "--set",
            "evaluation.ks=[2]",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "error" not in res.output
