"""`lmrec encode`, `lmrec tags`, `lmrec keywords` (hashing encoder: fast, no model download)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from lmrec.cli import app

runner = CliRunner()


def _json(output: str) -> dict:
    return json.loads(output[output.index("{") :])


def test_encode_reports_throughput_and_uses_the_cache(tmp_path: Path, data_home: Path) -> None:
    args = ["encode", "ml-latest-small", "--data-dir", str(data_home), "--model", "hashing"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "vectors.safetensors"), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    rep = _json(first.output)
    assert rep["n_items"] == 9742 and rep["dim"] == 256 and rep["cache_hits"] == 0 and rep["encoded"] == 9742
    assert rep["texts_per_second"] > 0
    vecs = load_file(str(tmp_path / "vectors.safetensors"))["vectors"]
    assert vecs.shape == (9742, 256)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and _json(second.output)["cache_hits"] == 9742


def test_encode_table_output_and_errors(tmp_path: Path, data_home: Path) -> None:
    ok = runner.invoke(
        app,
        [
            "encode",
            "ml-latest-small",
            "--data-dir",
            str(data_home),
            "--model",
            "hashing",
            "--no-cache",
            "--fields",
            "title",
            "--show",
            "1",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "texts_per_second" in ok.output and "Toy Story (1995)." in ok.output and "Genres" not in ok.output
    bad = runner.invoke(
        app, ["encode", "no-such-dataset", "--data-dir", str(data_home), "--model", "hashing"]
    )
    assert bad.exit_code == 2 and "unknown dataset" in bad.output


def test_tags_command_trains_evaluates_and_saves(tmp_path: Path, data_home: Path) -> None:
    res = runner.invoke(
        app,
        [
            "tags",
            "ml-latest-small",
            "--data-dir",
            str(data_home),
            "--model",
            "hashing",
            "--no-cache",
            "--show",
            "3",
            "--out",
            str(tmp_path / "tagger"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    rep = _json(res.output)
    assert rep["n_tagged_items"] == 1572 and rep["n_heldout_items"] == round(0.2 * 1572)
    assert 0 < rep["p@5"] <= 1 and 0 <= rep["micro_f1"] <= 1 and 0 <= rep["macro_f1"] <= 1
    assert len(rep["untagged_examples"]) == 3 and all(
        len(e["predicted"]) == 5 for e in rep["untagged_examples"]
    )
    assert (tmp_path / "tagger" / "tagger.safetensors").exists()


def test_keywords_command(data_home: Path) -> None:
    res = runner.invoke(
        app,
        [
            "keywords",
            "amazon-2014-musical-instruments",
            "--data-dir",
            str(data_home),
            "--model",
            "hashing",
            "--no-cache",
            "--items",
            "2",
            "--top-n",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.strip().startswith("•")]
    assert len(lines) == 2 and all(line.count(",") == 2 for line in lines)
    none = runner.invoke(
        app, ["keywords", "ml-latest-small", "--data-dir", str(data_home), "--model", "hashing"]
    )
    assert none.exit_code == 2 and "no reviews" in none.output


@pytest.mark.slow  # loads and saves a 90 MB model: ~30 s idle, 75 s on a loaded 2-core machine
def test_finetune_command_writes_a_model_and_reports(tmp_path: Path, data_home: Path) -> None:
    out = tmp_path / "ft"
    args = [
        "finetune",
        "ml-100k",
        "--data-dir",
        str(data_home),
        "--out",
        str(out),
        "--split",
        "leave-last-out",
    ]
    args += ["--max-steps", "1", "--batch-size", "2", "--max-seq-length", "8", "--valid-fraction", "0"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    rep = _json(res.output)
    assert rep["steps"] == 1 and rep["split"] == "leave-last-out" and rep["n_train_pairs"] > 1000
    assert rep["n_valid_pairs"] == 0
    assert (out / "model.safetensors").exists() and (out / "finetune.json").exists()
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "not empty" in again.output
    bad = runner.invoke(app, [*args[:5], str(tmp_path / "x"), "--split", "random"])
    assert bad.exit_code != 0 and "--split must be" in bad.output
