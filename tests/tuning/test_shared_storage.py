"""Shared Optuna storage: processes join one study, the trial budget is the study's, mismatches fail."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from lmrec.data.loaders.own import add_dataset
from lmrec.data.split import Split
from lmrec.data.synthetic import generate
from lmrec.errors import LmrecError
from lmrec.tuning import tune
from tests.tuning.fakes import clustered_split

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def split() -> Split:
    return clustered_split()


def test_a_second_run_joins_the_study_and_the_budget_is_the_studys(tmp_path: Path, split: Split) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = tune("item_knn", split, n_trials=3, storage=url, study_name="s")
    assert first.n_trials == 3
    second = tune("item_knn", split, n_trials=5, storage=url, study_name="s")
    assert second.n_trials == 5  # 3 joined + 2 run here, not 5 more
    assert second.best_value >= first.best_value
    again = tune("item_knn", split, n_trials=5, storage=url, study_name="s")
    assert again.n_trials == 5 and again.best_value == second.best_value  # budget spent: nothing run
    study = optuna.load_study(study_name="s", storage=url)
    assert study.user_attrs["lmrec_model"] == "item_knn"
    assert study.trials[0].params == {"k": 50, "shrink": 50.0, "weighting": "tfidf"}  # defaults, once


def test_a_study_refuses_other_settings(tmp_path: Path, split: Split) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    tune("item_knn", split, n_trials=1, storage=url, study_name="s")
    with pytest.raises(LmrecError, match="created with model 'item_knn', this run has 'user_knn'"):
        tune("user_knn", split, n_trials=1, storage=url, study_name="s")
    with pytest.raises(LmrecError, match="created with metric"):
        tune("item_knn", split, n_trials=1, metric="recall@10", storage=url, study_name="s")
    with pytest.raises(LmrecError, match="created with fixed"):
        tune("item_knn", split, n_trials=1, fixed_params={"k": 5}, storage=url, study_name="s")


def test_a_run_joining_a_half_written_claim_waits_for_the_rest(tmp_path: Path, split: Split) -> None:
    """Another process claims a new study one attribute at a time; a run that reads the study in
    between must wait for the rest instead of failing on the attributes not written yet."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    tune("item_knn", split, n_trials=1, storage=url, study_name="first")
    claim = optuna.load_study(study_name="first", storage=url).user_attrs
    assert len(claim) > 1
    other = optuna.create_study(study_name="s", storage=url, direction="maximize")
    keys = sorted(claim)
    other.set_user_attr(keys[0], claim[keys[0]])  # the other process is part-way through its claim

    def finish_claim() -> None:
        time.sleep(0.5)
        for key in keys[1:]:
            other.set_user_attr(key, claim[key])

    writer = threading.Thread(target=finish_claim)
    writer.start()
    try:
        joined = tune("item_knn", split, n_trials=2, storage=url, study_name="s")
    finally:
        writer.join()
    assert joined.n_trials == 2
    assert optuna.load_study(study_name="s", storage=url).user_attrs == claim


def test_bad_storage_url_is_one_line(split: Split) -> None:
    with pytest.raises(LmrecError, match="cannot open the tuning storage 'nosuchdb://x'"):
        tune("item_knn", split, n_trials=1, storage="nosuchdb://x")


@pytest.mark.distributed
def test_two_processes_share_one_study(tmp_path: Path) -> None:
    """`lmrec tune --storage sqlite:///... --study-name` in two processes at once."""
    summary = generate(out=tmp_path / "generated", n_interactions=8_000, seed=2)
    folder = summary.folder
    home = tmp_path / "home"
    add_dataset("synth", folder / "interactions.parquet", items=folder / "items.parquet", data_dir=home)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = [sys.executable, "-c", "from lmrec.cli import main; main()", "tune", "--dataset", "synth"]
    cmd += ["--data-dir", str(home), "-m", "item_knn", "--trials", "8"]
    cmd += ["--storage", url, "--study-name", "shared"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    # the end of each output holds the error; the start is the progress display
    assert [p.returncode for p in procs] == [0, 0], [o[-1500:] for o in outputs]
    study = optuna.load_study(study_name="shared", storage=url)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # both asked for 8 trials: 16 would mean two studies; the budget is the shared study's (one may
    # overshoot by the other's last trial)
    assert 8 <= len(finished) <= 9
    assert len(study.trials) == len(finished)
    # which process ran how many trials depends on start-up timing (a loaded machine can start the
    # second after the first has spent the budget), so only check that the trials came from them
    assert {t.user_attrs["pid"] for t in finished} <= {p.pid for p in procs}
    assert len({tuple(sorted(t.params.items())) for t in finished}) >= 6  # they did not repeat each other
