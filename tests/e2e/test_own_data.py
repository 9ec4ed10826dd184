"""Runs tests/e2e/own_data.sh: the README's own-data example, from CSV to a served model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("own_data.sh")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_readme_own_data_example_end_to_end(tmp_path: Path, data_home: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYTHON": sys.executable,
        "LMREC_DATA_HOME": str(data_home),
        "LMREC_CACHE_HOME": str(tmp_path / "cache"),
        "COLUMNS": "120",
    }
    res = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "work")], env=env, capture_output=True, text=True, timeout=900
    )
    log = tmp_path / "work" / "serve.log"
    detail = res.stdout[-3000:] + res.stderr[-3000:] + (log.read_text()[-2000:] if log.exists() else "")
    assert res.returncode == 0, detail
    assert "own data end to end: OK" in res.stdout or "SKIP:" in res.stdout, detail
    assert "recommend alice:" in res.stdout, detail
    skipped = [line for line in res.stdout.splitlines() if line.startswith("SKIP:")]
    if skipped:
        pytest.skip(skipped[0])
