"""Amazon product reviews (McAuley lab), 2014 and 2018 editions.

Both editions ship one JSON object per review line (``reviewerID, asin, overall, unixReviewTime,
reviewText, summary``, ...), gzip-compressed, and a metadata file per category. The 2014 metadata is
not JSON but Python literals (single quotes), so every line is tried as JSON first and then with
``ast.literal_eval`` (safe: literals only, never ``eval``).

What comes out:

* interactions: ``user_id`` = reviewerID, ``item_id`` = ASIN (always a string, even when it looks
  numeric), ``rating`` = overall, ``timestamp`` = unixReviewTime; duplicate reviews are kept as found;
* reviews: ``user_id, item_id, text, rating, timestamp`` where text is ``summary. reviewText``;
* items: every reviewed ASIN, with ``title, description, categories, brand, price`` from the metadata
  when a metadata file is given (``meta_items="all"`` also keeps never-reviewed catalogue items; the
  default keeps the reviewed ones, because a 5-core file covers a small fraction of its category).
"""

from __future__ import annotations

import gzip
import html
import io
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.loaders._read import iter_records, open_maybe_gzip, parse_record, read_bytes, require_file
from lmrec.errors import DataError

REVIEW_SCHEMA = {
    "reviewerID": pl.String,
    "asin": pl.String,
    "overall": pl.Float64,
    "unixReviewTime": pl.Int64,
    "reviewText": pl.String,
    "summary": pl.String,
}
_ASIN = re.compile(rb"""["']asin["']\s*:\s*["']([^"']+)["']""")


def load_amazon(
    reviews: str | Path,
    meta: str | Path | None = None,
    *,
    name: str | None = None,
    meta_items: Literal["interacted", "all"] = "interacted",
    dataset_meta: Mapping[str, Any] | None = None,
) -> Dataset:
    """Load an Amazon reviews file (gzip or plain JSON lines) and optionally its metadata file."""
    reviews = Path(reviews)
    frame = read_reviews(reviews)
    src = str(reviews)
    inter = frame.select(
        pl.col("reviewerID").alias("user_id"),
        pl.col("asin").alias("item_id"),
        pl.col("overall").alias("rating"),
        pl.col("unixReviewTime").alias("timestamp"),
    )
    summary = pl.col("summary").fill_null("").str.strip_chars()
    body = pl.col("reviewText").fill_null("").str.strip_chars()
    joiner = pl.when(summary.str.contains(r"[.!?]$")).then(pl.lit(" ")).otherwise(pl.lit(". "))
    text = (
        pl.when(summary == "")
        .then(body)
        .when(body == "")
        .then(summary)
        .otherwise(pl.concat_str([summary, joiner, body]))
    )
    review_frame = frame.select(
        pl.col("reviewerID").alias("user_id"),
        pl.col("asin").alias("item_id"),
        text.alias("text"),
        pl.col("overall").alias("rating"),
        pl.col("unixReviewTime").alias("timestamp"),
    )
    reviewed = inter["item_id"].unique().sort()
    items = pl.DataFrame({"item_id": reviewed})
    if meta is not None:
        wanted = None if meta_items == "all" else set(reviewed.to_list())
        meta_frame = read_metadata(Path(meta), wanted)
        if meta_items == "all":
            extra = items.join(meta_frame, on="item_id", how="anti")
            items = pl.concat([meta_frame, extra], how="diagonal_relaxed")
        else:
            items = items.join(meta_frame, on="item_id", how="left", maintain_order="left")
    return Dataset.from_frames(
        inter,
        items=items,
        reviews=review_frame,
        name=name or _stem(reviews),
        source=src,
        meta=dataset_meta,
        require_timestamp=True,
    )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".json", ".jsonl"):
        name = name.removesuffix(suffix)
    return name


def read_reviews(path: Path) -> pl.DataFrame:
    """The review fields as a frame, every row checked; errors name the file, line and field."""
    require_file(path, "reviews (JSON lines)")
    data = read_bytes(path)
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=REVIEW_SCHEMA)
    except pl.exceptions.PolarsError:
        # Not strict JSON everywhere (Python literals, a string timestamp, a broken line): the slow
        # path parses line by line and names what is wrong.
        frame = _reviews_slow(path)
    if frame.height == 0:
        raise DataError("no reviews in file", source=str(path))
    for col in ("reviewerID", "asin", "overall", "unixReviewTime"):
        nulls = frame[col].is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0])
            raise DataError(
                f"review on line {_line_of(path, row)} has no {col!r}"
                + _ids(frame["reviewerID"][row], frame["asin"][row]),
                source=str(path),
                column=col,
            )
    return frame


def _ids(user: Any, item: Any) -> str:
    parts = [f"reviewerID={user}" if user is not None else "", f"asin={item}" if item is not None else ""]
    shown = ", ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""


def _line_of(path: Path, row: int) -> int:
    """1-based line number of the ``row``-th non-blank line (blank lines are skipped by readers)."""
    seen = -1
    with open_maybe_gzip(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip():
                seen += 1
                if seen == row:
                    return lineno
    return row + 1


def _number(value: Any, kind: type, path: Path, lineno: int, field: str, rec: Mapping[str, Any]) -> Any:
    """``value`` as int/float; numeric strings are accepted (some dumps quote numbers)."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError("boolean")
        number = float(value.strip()) if isinstance(value, str) else float(value)
        if kind is int:
            if not number.is_integer():
                raise ValueError("not an integer")
            return int(number)
        return number
    except (TypeError, ValueError):
        label = "timestamp" if field == "unixReviewTime" else "value"
        raise DataError(
            f"non-numeric {label} {value!r} on line {lineno}" + _ids(rec.get("reviewerID"), rec.get("asin")),
            source=str(path),
            column=field,
        ) from None


def _reviews_slow(path: Path) -> pl.DataFrame:
    cols: dict[str, list[Any]] = {k: [] for k in REVIEW_SCHEMA}
    for lineno, rec in iter_records(path):
        cols["reviewerID"].append(_text(rec.get("reviewerID")))
        cols["asin"].append(_text(rec.get("asin")))
        cols["overall"].append(_number(rec.get("overall"), float, path, lineno, "overall", rec))
        cols["unixReviewTime"].append(
            _number(rec.get("unixReviewTime"), int, path, lineno, "unixReviewTime", rec)
        )
        cols["reviewText"].append(_text(rec.get("reviewText")))
        cols["summary"].append(_text(rec.get("summary")))
    return pl.DataFrame({k: pl.Series(k, v, dtype=REVIEW_SCHEMA[k]) for k, v in cols.items()})


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return " ".join(_text(v) or "" for v in value).strip()
    return str(value)


def _categories(rec: Mapping[str, Any]) -> str | None:
    cats = rec.get("categories", rec.get("category"))
    if not cats:
        return None
    if isinstance(cats, list) and cats and all(isinstance(c, list) for c in cats):  # 2014: list of paths
        return " | ".join(" > ".join(map(str, c)) for c in cats if c)
    if isinstance(cats, list):  # 2018: one path
        return " > ".join(html.unescape(str(c)) for c in cats)
    return str(cats)


def _price(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = re.search(r"\d[\d,]*(?:\.\d+)?", value)
        if m and value.strip().startswith("$"):
            return float(m.group(0).replace(",", ""))
    return None


def read_metadata(path: Path, wanted: set[str] | None = None) -> pl.DataFrame:
    """``item_id, title, description, categories, brand, price`` from a metadata file.

    With ``wanted``, lines whose ASIN is not wanted are skipped before parsing (a regex finds the
    ASIN), which makes reading a category's full metadata for a 5-core subset several times faster.
    Duplicate ASINs (present in the 2018 files) keep their first record.
    """
    require_file(path, "item metadata (JSON lines)")
    rows: dict[str, dict[str, Any]] = {}
    try:
        with open_maybe_gzip(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.strip()
                if not line:
                    continue
                if wanted is not None:
                    m = _ASIN.search(line)
                    if m is None or m.group(1).decode("utf-8", "replace") not in wanted:
                        continue
                rec = parse_record(line, path, lineno)
                asin = rec.get("asin")
                if not asin:
                    raise DataError(f"metadata line {lineno} has no 'asin'", source=str(path), column="asin")
                asin = str(asin)
                if asin in rows:
                    continue
                title = _text(rec.get("title"))
                desc = _text(rec.get("description"))
                rows[asin] = {
                    "item_id": asin,
                    "title": html.unescape(title).strip() if title else None,
                    "description": html.unescape(desc).strip() if desc else None,
                    "categories": _categories(rec),
                    "brand": html.unescape(str(rec["brand"])).strip() if rec.get("brand") else None,
                    "price": _price(rec.get("price")),
                }
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"corrupt or truncated gzip file ({exc})", source=str(path)) from exc
    schema = {
        "item_id": pl.String,
        "title": pl.String,
        "description": pl.String,
        "categories": pl.String,
        "brand": pl.String,
        "price": pl.Float64,
    }
    return pl.DataFrame(list(rows.values()), schema=schema) if rows else pl.DataFrame(schema=schema)
