"""score_all / `lmrec score-all`: Dask workers write every user's top-k, equal to one recommend call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app as cli
from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.models.ease import EASE
from lmrec.serving.score_all import COLUMNS, MANIFEST, read_scores, score_all
from lmrec.testing import make_checkerboard

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EASE on a checkerboard with string user ids (external ids must come back as given)."""
    board = make_checkerboard(n_users=60, n_items=20)
    inter = board.interactions.select(
        pl.format("u{}", pl.col("user_id")).alias("user_id"), "item_id", "timestamp"
    )
    data = Dataset.from_frames(inter, name="board")
    return EASE(l2=10.0).fit(data).save(tmp_path_factory.mktemp("ease") / "model")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """One running two-worker cluster, joined by address: the many-machines path, on one machine."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _expected(artifact: Path, k: int) -> pl.DataFrame:
    model = EASE.load(artifact)
    return model.recommend(model.user_vocab.ids, k=k).select(COLUMNS)


def test_two_local_workers_equal_one_recommend_call(artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    summary = score_all(artifact, out, k=5, workers=2)
    got = read_scores(out)
    assert got.equals(_expected(artifact, 5))  # same users, items, scores, ranks, order
    assert got["user_id"].dtype == pl.String and got["user_id"].n_unique() == 60
    assert summary.n_users == 60 and summary.n_rows == got.height == 60 * 5
    assert summary.n_parts == 8  # four per worker
    assert summary.n_workers == 2 and summary.model_loads == 2  # loaded once per worker, not per part
    manifest = json.loads((out / MANIFEST).read_text())
    assert [p["file"] for p in manifest["parts"]] == [f"part-{i:05d}.parquet" for i in range(8)]
    assert manifest["model"] == "ease" and manifest["k"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name != "scores"]  # no staging left behind


def test_scheduler_address_and_cli(artifact: Path, scheduler: str, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    args = ["score-all", str(artifact), "--out", str(out), "-k", "3", "--scheduler", scheduler]
    result = CliRunner().invoke(cli, [*args, "--users-per-part", "7"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "for 60 users (180 rows, 9 parts)" in " ".join(result.output.split())
    assert read_scores(out).equals(_expected(artifact, 3))
    # a second run replaces the first output whole (a finished output may be overwritten)
    score_all(artifact, out, k=2, scheduler=scheduler)
    assert read_scores(out).equals(_expected(artifact, 2))


def test_a_failed_run_leaves_the_old_output(artifact: Path, scheduler: str, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    score_all(artifact, out, k=2, scheduler=scheduler)
    before = read_scores(out)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.json", "vocab.json"):
        (broken / name).write_bytes((artifact / name).read_bytes())
    (broken / "state.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(LmrecError):
        score_all(broken, out, k=2, scheduler=scheduler)
    assert read_scores(out).equals(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "scores"]  # staging removed


def test_bad_input_is_one_line(tmp_path: Path, artifact: Path) -> None:
    with pytest.raises(LmrecError, match="is not a saved lmrec model"):
        score_all(tmp_path, tmp_path / "out")
    with pytest.raises(LmrecError, match="k must be a positive integer"):
        score_all(artifact, tmp_path / "out", k=0)
    import dask

    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(LmrecError, match="cannot reach the Dask scheduler"),
    ):
        score_all(artifact, tmp_path / "out", scheduler="tcp://127.0.0.1:9")
