"""Your own interaction logs: CSV, TSV, Parquet or JSON lines, with a column mapping.

``load_table("events.csv", columns={"user_id": "customer", "item_id": "sku", "timestamp": "ts"})``
reads the file with polars, renames the mapped columns to lmrec's canonical names and builds a
:class:`~lmrec.data.dataset.Dataset`. Items and users tables can be given the same way (a path or a
frame, each with its own mapping). Every error names the file and the column.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import polars as pl

from lmrec.data.dataset import Dataset, DuplicatePolicy
from lmrec.data.loaders._read import read_delimited, read_parquet, require_file
from lmrec.errors import DataError

Format = Literal["csv", "tsv", "parquet", "jsonl", "json"]
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}


def infer_format(path: Path) -> Format:
    """The format from the file name (``.gz`` is looked through)."""
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    raise DataError(
        f"cannot tell the format of {path.name} from its name; pass format= one of csv, tsv, parquet, jsonl, json",
        source=str(path),
    )


def _payload(path: Path) -> bytes | Path:
    """The path itself, or its decompressed bytes for ``.gz`` files."""
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if not gz:
        return path
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"corrupt or truncated gzip file ({exc})", source=str(path)) from exc


def read_table(
    path: str | Path,
    *,
    format: Format | None = None,
    separator: str | None = None,
    has_header: bool = True,
    columns: Mapping[str, str] | None = None,
    quote_char: str | Literal["auto"] | None = "auto",
) -> pl.DataFrame:
    """Read one table and rename ``columns`` (canonical name -> file column) to canonical names.

    Every mapped file column must exist, else :class:`DataError` names the file and the column.
    ``json`` accepts JSON lines as well as a JSON array of objects.

    ``quote_char="auto"`` honours ``"`` quoting in CSV but not in TSV: plain TSV has no quoting
    (fields cannot hold tabs or newlines), and product titles such as ``2" diameter`` or a
    description opening with ``"TWIN DRAFT GUARD"`` would otherwise be taken for quoted fields and
    fail to parse. Pass ``quote_char='"'`` for a TSV written with CSV-style quoting.
    """
    path = Path(path)
    require_file(path)
    fmt = format or infer_format(path)
    data = _payload(path)
    src = str(path)
    try:
        if fmt in ("csv", "tsv"):
            sep = separator or ("\t" if fmt == "tsv" else ",")
            quote = (None if fmt == "tsv" else '"') if quote_char == "auto" else quote_char
            if has_header:
                frame = read_delimited(data, label=src, separator=sep, quote_char=quote)
            else:
                frame = pl.read_csv(
                    data if isinstance(data, Path) else io.BytesIO(data),
                    separator=sep,
                    has_header=False,
                    quote_char=quote,
                )
        elif fmt == "parquet":
            frame = read_parquet(data, src)
        elif fmt in ("jsonl", "json"):
            raw = data.read_bytes() if isinstance(data, Path) else data
            if fmt == "json" and raw.lstrip()[:1] == b"[":
                frame = pl.read_json(io.BytesIO(raw))
            else:
                frame = pl.read_ndjson(io.BytesIO(raw))
        else:
            raise DataError(f"unknown format {fmt!r} (use csv, tsv, parquet, jsonl or json)", source=src)
    except DataError:
        raise
    except pl.exceptions.NoDataError as exc:
        raise DataError("file is empty", source=src) from exc
    except (pl.exceptions.PolarsError, OSError, ValueError, pl.exceptions.PanicException) as exc:
        # PanicException is a BaseException: polars can panic on a damaged file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read as {fmt}: {first}", source=src) from exc
    if columns:
        for canonical, col in columns.items():
            if col not in frame.columns:
                raise DataError(
                    f"column {col!r} (mapped to {canonical!r}) not found; columns: {', '.join(frame.columns)}",
                    source=src,
                    column=col,
                )
        frame = frame.rename({col: canonical for canonical, col in columns.items() if col != canonical})
    return frame


def _parse_timestamps(frame: pl.DataFrame, src: str, timestamp_format: str | None) -> pl.DataFrame:
    """Turn date/time strings into epoch seconds; a value that is neither a number nor a date fails.

    Numbers (also as text) are left to :meth:`Dataset.from_frames`.
    """
    if "timestamp" not in frame.columns or frame["timestamp"].dtype != pl.String:
        return frame
    ts = frame["timestamp"]
    numeric = ts.str.strip_chars().cast(pl.Float64, strict=False)
    if timestamp_format is None and (numeric.is_null() == ts.is_null()).all():
        return frame
    try:
        parsed = ts.str.strip_chars().str.to_datetime(format=timestamp_format, strict=False, time_unit="ms")
    except pl.exceptions.PolarsError:
        parsed = pl.Series("timestamp", [None] * len(ts), dtype=pl.Datetime("ms"))

    def fail(mask: pl.Series, why: str) -> DataError:
        row = int(mask.arg_true()[0])
        ids = ", ".join(f"{c}={frame[c][row]}" for c in ("user_id", "item_id") if c in frame.columns)
        return DataError(f"timestamp {ts[row]!r} at row {row} ({ids}) {why}", source=src, column="timestamp")

    bad = parsed.is_null() & numeric.is_null() & ts.is_not_null()
    if bad.any():
        fmt = f" in format {timestamp_format!r}" if timestamp_format else ""
        raise fail(bad, f"is neither a number nor a date{fmt}")
    mixed = parsed.is_null() & numeric.is_not_null()
    if mixed.any():
        raise fail(mixed, "is a number while other rows hold dates; use one kind")
    return frame.with_columns(parsed.dt.epoch("s").alias("timestamp"))


def _side_table(
    table: str | Path | Any, mapping: Mapping[str, str] | None, fmt: Format | None, separator: str | None
) -> Any:
    if isinstance(table, str | Path):
        return read_table(table, format=fmt, separator=separator, columns=mapping)
    if mapping and isinstance(table, pl.DataFrame):
        return table.rename({v: k for k, v in mapping.items() if v in table.columns and v != k})
    return table


def load_table(
    path: str | Path,
    columns: Mapping[str, str] | None = None,
    *,
    format: Format | None = None,
    separator: str | None = None,
    has_header: bool = True,
    items: str | Path | Any = None,
    item_columns: Mapping[str, str] | None = None,
    users: str | Path | Any = None,
    user_columns: Mapping[str, str] | None = None,
    name: str | None = None,
    timestamp_format: str | None = None,
    require_timestamp: bool = False,
    duplicates: DuplicatePolicy = "auto",
    dedupe: Literal["first", "last"] | None = None,
) -> Dataset:
    """Load an interaction table into a :class:`Dataset`.

    ``columns`` maps canonical names (``user_id``, ``item_id``, ``timestamp``, ``weight``, ``rating``,
    ``event``) to the file's column names; unmapped columns already named canonically are used as
    they are. Timestamps may be numbers or date strings (``timestamp_format`` is a strftime format;
    ISO 8601 is recognised without one). ``meta`` records the file path and its MD5.

    The rows are validated by :meth:`Dataset.from_frames` (bad ids, ratings, weights and timestamps
    fail naming the file, column and rows); ``duplicates`` is its policy for repeated (user, item)
    pairs: by default the same event logged twice is dropped and repeats at other times are kept,
    both with a logged count.
    """
    path = Path(path)
    src = str(path)
    frame = read_table(path, format=format, separator=separator, has_header=has_header, columns=columns)
    for col in ("user_id", "item_id"):
        if col not in frame.columns:
            raise DataError(
                f"no {col!r} column; map it with columns={{'{col}': '<file column>'}} "
                f"(columns: {', '.join(frame.columns)})",
                source=src,
                column=col,
            )
    frame = _parse_timestamps(frame, src, timestamp_format)
    items_df = _side_table(items, item_columns, None, None) if items is not None else None
    users_df = _side_table(users, user_columns, None, None) if users is not None else None
    checksums = {path.name: f"md5:{_md5(path)}"}
    for side in (items, users):
        if isinstance(side, str | Path):
            checksums[Path(side).name] = f"md5:{_md5(Path(side))}"
    name = name or path.name.split(".")[0]
    meta = {"name": name, "source": src, "format": format or infer_format(path), "checksums": checksums}
    try:
        return Dataset.from_frames(
            frame,
            items=items_df,
            users=users_df,
            name=name,
            source=src,
            meta=meta,
            require_timestamp=require_timestamp,
            duplicates=duplicates,
            dedupe=dedupe,
        )
    except DataError as exc:
        # name the column as the file spells it: "column 'qty' ... (mapped to 'weight')"
        original = (columns or {}).get(exc.column or "")
        if not original or original == exc.column or exc.source != src:
            raise
        text = str(exc)
        body = text.split("] ", 1)[1] if text.startswith("[") else text
        if not body.startswith("interactions"):  # an items/users table error: its own mapping
            raise
        raise DataError(f"{body} (mapped to {exc.column!r})", source=src, column=original) from exc


def _md5(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
