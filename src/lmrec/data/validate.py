"""Input checks behind :meth:`lmrec.data.dataset.Dataset.from_frames`.

Every check fails with a one-line :class:`~lmrec.errors.DataError` that names the file (``source``),
the column and up to three example rows, so a user can fix their data without a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import polars as pl

from lmrec.errors import DataError

#: what :meth:`Dataset.from_frames` does with interactions that repeat a (user, item) pair
DuplicatePolicy = Literal["auto", "keep", "first", "last", "error"]

log = logging.getLogger("lmrec.data")


def to_polars(frame: Any, what: str) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    try:
        if isinstance(frame, Mapping):
            return pl.DataFrame(dict(frame))
        if type(frame).__module__.startswith("pyarrow"):
            out = pl.from_arrow(frame)
            assert isinstance(out, pl.DataFrame)
            return out
        return pl.from_pandas(frame)
    except Exception as exc:
        raise DataError(f"{what}: cannot convert {type(frame).__name__} to a data frame ({exc})") from exc


def rename_columns(frame: pl.DataFrame, mapping: Mapping[str, str] | None) -> pl.DataFrame:
    if not mapping:
        return frame
    # mapping is canonical -> source column name
    present = {src: dst for dst, src in mapping.items() if src in frame.columns and src != dst}
    return frame.rename(present)


#: strings that mean "no value" in exported tables; never accepted as an id
_MISSING_MARKERS = ("na", "n/a", "nan", "null", "none", "nil", "<na>", "-")
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)


def describe_rows(frame: pl.DataFrame, mask: pl.Series, *, limit: int = 3) -> str:
    """``"row 4 (user_id=7, item_id=42)"`` for the first rows where ``mask`` holds, "and N more"."""
    rows = mask.fill_null(False).arg_true().to_list()
    shown = []
    for r in rows[:limit]:
        ids = ", ".join(f"{c}={frame[c][r]!r}" for c in ("user_id", "item_id") if c in frame.columns)
        shown.append(f"row {r}" + (f" ({ids})" if ids else ""))
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(shown) + more


def check_id_column(frame: pl.DataFrame, col: str, what: str, source: str | None) -> pl.DataFrame:
    """Ids become Int64 or String; nulls, empty or "NA"-like ids and whitespace collisions fail.

    Integers beyond int64 (64-bit unsigned hashes, 128-bit ids) are read as text so that none is
    lost or wrapped. Surrounding whitespace (``" 1 "``, a CSV written with ``", "``) is stripped;
    when that would merge two different ids (``" 1 "`` next to ``"1"``) the data is ambiguous and
    the error names both.
    """
    if col not in frame.columns:
        raise DataError(
            f"{what} has no {col!r} column (columns: {', '.join(frame.columns)}); pass a column mapping",
            source=source,
            column=col,
        )
    nulls = frame[col].null_count()
    if nulls:
        raise DataError(
            f"{what}: {nulls} null value(s) in id column, first at {describe_rows(frame, frame[col].is_null())}",
            source=source,
            column=col,
        )
    dtype = frame[col].dtype
    if dtype.is_float():
        vals = frame[col]
        bad = vals.is_nan() | vals.is_infinite()
        if bad.any():
            raise DataError(
                f"{what}: NaN or infinite id at {describe_rows(frame, bad)}", source=source, column=col
            )
        if not (vals == vals.round(0)).all():
            bad = vals != vals.round(0)
            raise DataError(
                f"{what}: id column holds non-integer numbers, e.g. {vals.filter(bad)[0]!r} at {describe_rows(frame, bad)}",
                source=source,
                column=col,
            )
        big = (vals.abs() >= 2.0**53).fill_null(False)
        if big.any():
            raise DataError(
                f"{what}: id {vals.filter(big)[0]!r} at {describe_rows(frame, big)} is too large to be exact as a "
                "floating-point number; store the ids as integers or text",
                source=source,
                column=col,
            )
        frame = frame.with_columns(pl.col(col).cast(pl.Int64))
    elif dtype.is_integer():
        vals = frame[col]
        lo, hi = vals.min(), vals.max()
        if lo is not None and (int(lo) < _INT64_MIN or int(hi) > _INT64_MAX):  # type: ignore[arg-type]
            # exact as text: a 64-bit unsigned hash or a 128-bit id must not wrap or be rounded
            frame = frame.with_columns(pl.col(col).cast(pl.Utf8))
        else:
            frame = frame.with_columns(pl.col(col).cast(pl.Int64))
    elif dtype in (pl.Utf8, pl.String, pl.Categorical, pl.Enum):
        frame = frame.with_columns(pl.col(col).cast(pl.Utf8))
        frame = clean_string_ids(frame, col, what, source)
    else:
        raise DataError(f"{what}: ids must be integers or strings, got {dtype}", source=source, column=col)
    return frame


def clean_string_ids(frame: pl.DataFrame, col: str, what: str, source: str | None) -> pl.DataFrame:
    raw = frame[col]
    stripped = raw.str.strip_chars()
    empty = stripped.str.len_chars() == 0
    if empty.any():
        raise DataError(f"{what}: empty id at {describe_rows(frame, empty)}", source=source, column=col)
    marker = stripped.str.to_lowercase().is_in(list(_MISSING_MARKERS))
    if marker.any():
        raise DataError(
            f"{what}: missing-value marker {raw.filter(marker)[0]!r} used as an id at {describe_rows(frame, marker)}; "
            "drop those rows or give them real ids",
            source=source,
            column=col,
        )
    changed = stripped != raw
    if not changed.any():
        return frame
    pairs = pl.DataFrame({"raw": raw, "id": stripped}).unique()
    clash = pairs["id"].is_duplicated()
    if clash.any():
        same = pairs.filter(pl.col("id") == pairs["id"].filter(clash)[0])["raw"].sort().to_list()
        rows = raw.is_in(same)
        raise DataError(
            f"{what}: ids {' and '.join(repr(s) for s in same[:3])} differ only in surrounding whitespace "
            f"({describe_rows(frame, rows)}); clean the column so each id is written one way",
            source=source,
            column=col,
        )
    log.info("%s: stripped surrounding whitespace from %d %s value(s)", what, int(changed.sum()), col)
    as_int = stripped.cast(pl.Int64, strict=False)
    if as_int.null_count() == 0 and (as_int.cast(pl.Utf8) == stripped).all():
        # the whitespace alone made the reader see text: "1 ", " 2" are the integer ids 1 and 2
        return frame.with_columns(as_int.alias(col))
    return frame.with_columns(stripped.alias(col))


def check_timestamp(
    frame: pl.DataFrame, what: str, source: str | None, *, required: bool, negative_ok: bool = False
) -> pl.DataFrame:
    """Timestamps become Int64 epoch seconds (or Float64); null, NaN and infinite ones fail.

    Interaction times must not be negative (a pre-1970 event is a broken export, and splits order
    by time). Side tables pass ``negative_ok``: HetRec Last.fm tags carry a few pre-1970 dates, and
    a wrong tag date must not stop the dataset from loading.
    """
    if "timestamp" not in frame.columns:
        if required:
            raise DataError(f"{what} has no 'timestamp' column", source=source, column="timestamp")
        return frame.with_columns(pl.lit(0, dtype=pl.Int64).alias("timestamp"))
    ts = frame["timestamp"]
    if ts.dtype.is_temporal():
        frame = frame.with_columns(pl.col("timestamp").cast(pl.Datetime("ms")).dt.epoch("s").cast(pl.Int64))
    elif ts.dtype.is_integer():
        lo, hi = ts.min(), ts.max()
        if lo is not None and (int(lo) < _INT64_MIN or int(hi) > _INT64_MAX):  # type: ignore[arg-type]
            bad = (ts > _INT64_MAX) | (ts < _INT64_MIN)
            raise DataError(
                f"{what}: timestamp out of range at {describe_rows(frame, bad)}",
                source=source,
                column="timestamp",
            )
        frame = frame.with_columns(pl.col("timestamp").cast(pl.Int64))
    elif ts.dtype.is_float():
        frame = frame.with_columns(pl.col("timestamp").cast(pl.Float64))
    elif ts.dtype in (pl.Utf8, pl.String):
        as_num = ts.str.strip_chars().cast(pl.Float64, strict=False)
        bad = as_num.is_null() & ts.is_not_null()
        if bad.any():
            row = int(bad.arg_true()[0])
            raise DataError(
                f"{what}: non-numeric timestamp {ts[row]!r} at row {row}", source=source, column="timestamp"
            )
        frame = frame.with_columns(as_num.alias("timestamp"))
    else:
        raise DataError(
            f"{what}: timestamp must be numeric or a datetime, got {ts.dtype}",
            source=source,
            column="timestamp",
        )
    if frame["timestamp"].null_count():
        row = int(frame["timestamp"].is_null().arg_true()[0])
        raise DataError(f"{what}: null timestamp at row {row}", source=source, column="timestamp")
    ts = frame["timestamp"]
    if ts.dtype.is_float():
        bad = ts.is_nan() | ts.is_infinite()
        if bad.any():
            raise DataError(
                f"{what}: NaN or infinite timestamp at {describe_rows(frame, bad)}",
                source=source,
                column="timestamp",
            )
    neg = ts < 0
    if not negative_ok and neg.any():
        raise DataError(
            f"{what}: {int(neg.sum())} negative timestamp(s) (before 1970), e.g. {ts.filter(neg)[0]!r} at "
            f"{describe_rows(frame, neg)}",
            source=source,
            column="timestamp",
        )
    return frame


def check_numeric(frame: pl.DataFrame, col: str, what: str, source: str | None) -> pl.DataFrame:
    """Cast ``col`` to Float32; ratings must be finite and >= 0, weights finite and > 0.

    A null rating is allowed (an event without one); a weight is the strength of an interaction, so
    a missing, zero or negative one has no meaning and fails.
    """
    if col not in frame.columns:
        return frame
    s = frame[col]
    if not s.dtype.is_numeric():
        if s.dtype in (pl.Utf8, pl.String):
            num = s.str.strip_chars().cast(pl.Float64, strict=False)
        else:
            num = s.cast(pl.Float64, strict=False)
        bad = num.is_null() & s.is_not_null()
        if bad.any():
            row = int(bad.arg_true()[0])
            raise DataError(f"{what}: non-numeric value {s[row]!r} at row {row}", source=source, column=col)
        s = num
    s = s.cast(pl.Float64)
    if col == "weight" and s.null_count():
        raise DataError(
            f"{what}: {s.null_count()} missing weight(s) at {describe_rows(frame, s.is_null())}",
            source=source,
            column=col,
        )
    bad = s.is_nan() | s.is_infinite()
    if bad.any():
        raise DataError(
            f"{what}: {int(bad.sum())} NaN or infinite {col}(s), e.g. {s.filter(bad)[0]!r} at {describe_rows(frame, bad)}",
            source=source,
            column=col,
        )
    bad = (s <= 0) if col == "weight" else (s < 0)
    if bad.any():
        kind = "zero or negative weight(s) (weights must be > 0)" if col == "weight" else f"negative {col}(s)"
        raise DataError(
            f"{what}: {int(bad.sum())} {kind}, e.g. {s.filter(bad)[0]!r} at {describe_rows(frame, bad)}",
            source=source,
            column=col,
        )
    return frame.with_columns(s.cast(pl.Float32).alias(col))


def resolve_duplicates(
    inter: pl.DataFrame, policy: DuplicatePolicy, *, has_time: bool, source: str | None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Apply the ``duplicates`` policy of :meth:`Dataset.from_frames`; returns the frame and counts."""
    counts: dict[str, int] = {}
    if policy == "keep":
        return inter, counts
    if policy == "auto" and has_time:
        key = ["user_id", "item_id", "timestamp"] + (["event"] if "event" in inter.columns else [])
        before = inter.height
        inter = inter.unique(subset=key, keep="last", maintain_order=True)
        if inter.height < before:
            counts["exact_dropped"] = before - inter.height
            log.warning(
                "%s: dropped %d row(s) that repeat an earlier (user_id, item_id, timestamp) (the last one kept); "
                "pass duplicates='keep' to keep them",
                source or "interactions",
                before - inter.height,
            )
    repeated = inter.select("user_id", "item_id").is_duplicated()
    if not repeated.any():
        return inter, counts
    n_pairs = inter.filter(repeated).select("user_id", "item_id").n_unique()
    if policy == "error":
        first = inter.filter(repeated).row(0, named=True)
        rows = (inter["user_id"] == first["user_id"]) & (inter["item_id"] == first["item_id"])
        raise DataError(
            f"{n_pairs} (user_id, item_id) pair(s) occur more than once, e.g. {describe_rows(inter, rows)}; "
            "pass duplicates='first' or 'last' to keep one row per pair, or 'auto' to keep repeats",
            source=source,
            column="item_id",
        )
    if policy in ("first", "last"):
        before = inter.height
        inter = (
            inter.with_row_index("_row")
            .sort(["timestamp", "_row"])
            .unique(subset=["user_id", "item_id"], keep=policy, maintain_order=True)
            .sort("_row")
            .drop("_row")
        )
        counts["pairs_collapsed"] = before - inter.height
        log.info(
            "%s: kept the %s of each repeated (user_id, item_id) pair, %d row(s) dropped",
            source or "interactions",
            "earliest" if policy == "first" else "latest",
            before - inter.height,
        )
        return inter, counts
    counts["repeated_pairs"] = n_pairs
    log.warning(
        "%s: %d (user_id, item_id) pair(s) occur more than once (kept as repeat interactions, summed in "
        "matrices); a leave-last-out test item may then also be in the user's training history. Pass "
        "duplicates='last' to keep one row per pair",
        source or "interactions",
        n_pairs,
    )
    return inter, counts
