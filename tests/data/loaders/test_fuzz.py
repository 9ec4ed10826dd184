"""Hypothesis fuzzing of :func:`load_table`: whatever bytes a file holds, the only exception is
:class:`LmrecError` (one line naming the file), never a polars, numpy or Python error.

``LMREC_FUZZ_EXAMPLES`` sets the examples per test (default 60, for CI); the issue's acceptance run
used 2,000 (see the test report for the figures).
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmrec.data.dataset import Dataset
from lmrec.data.loaders import load_table
from lmrec.errors import LmrecError

EXAMPLES = int(os.environ.get("LMREC_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=EXAMPLES <= 60,  # CI runs the same examples every time
)
SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".json", ".csv.gz")

#: pieces a real table is made of, so the fuzzer gets past "cannot parse" into the validation
CELLS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["", "NA", "null", "nan", " 1", "1 ", "2024-01-02", "2024-13-45T99:00", '"', "'", "\\t", "é", "\x00"]
    ),
    st.text(max_size=6),
)
_NAMES = st.sampled_from(
    ["user_id", "item_id", "timestamp", "rating", "weight", "event", "x", "", "user_id "]
)
#: mostly the id columns first (so the rows reach the validation), sometimes anything
HEADERS = st.one_of(
    st.lists(_NAMES, max_size=3).map(lambda rest: ["user_id", "item_id", *rest]),
    st.lists(_NAMES, min_size=1, max_size=5),
)


@st.composite
def tables(draw: st.DrawFn) -> bytes:
    header = draw(HEADERS)
    sep = draw(st.sampled_from([",", "\t", ";"]))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 1), max_size=8))
    text = "\n".join([sep.join(header), *(sep.join(r) for r in rows)])
    return text.encode("utf-8", "surrogatepass")


def _check(payload: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"events{suffix}"
        path.write_bytes(gzip.compress(payload) if suffix.endswith(".gz") else payload)
        try:
            data = load_table(path)
        except LmrecError as exc:
            message = str(exc)
            assert "\n" not in message and str(path) in message, message
            return
        assert isinstance(data, Dataset) and data.n_interactions > 0


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(SUFFIXES))
def test_random_bytes_raise_only_lmrec_errors(payload: bytes, suffix: str) -> None:
    _check(payload, suffix)


@FUZZ
@given(tables(), st.sampled_from((".csv", ".tsv", ".csv.gz")))
def test_table_shaped_text_raises_only_lmrec_errors(payload: bytes, suffix: str) -> None:
    _check(payload, ".tsv" if b"\t" in payload.split(b"\n")[0] and suffix != ".csv.gz" else suffix)


@FUZZ
@given(tables(), st.sampled_from((".parquet", ".jsonl")), st.integers(0, 400), st.binary(max_size=8))
def test_damaged_parquet_and_json_raise_only_lmrec_errors(
    text: bytes, suffix: str, at: int, junk: bytes
) -> None:
    """A real parquet/JSON-lines file with bytes overwritten or cut: truncated downloads, bad disks."""
    try:
        frame = pl.read_csv(io.BytesIO(text), infer_schema_length=0, truncate_ragged_lines=True)
    except pl.exceptions.PolarsError:
        frame = pl.DataFrame({"user_id": ["1"], "item_id": ["2"]})
    buf = io.BytesIO()
    if suffix == ".parquet":
        frame.write_parquet(buf)
    else:
        frame.write_ndjson(buf)
    raw = buf.getvalue()
    at = min(at, len(raw))
    _check(raw[:at] + junk + raw[at + len(junk) :], suffix)
