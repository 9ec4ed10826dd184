"""Reading helpers shared by the loaders: every failure becomes a :class:`DataError` naming the file,
the column and the line, because "ComputeError: could not parse" on a 600 MB file helps no one.

The pattern is a fast path and a diagnostic path: polars reads with the expected dtypes; only when
that fails is the file read again as text to find the first offending line and value.
"""

from __future__ import annotations

import ast
import contextlib
import gzip
import io
import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import polars as pl

from lmrec.errors import DataError

Source = Path | bytes


@contextlib.contextmanager
def open_maybe_gzip(path: Path) -> Iterator[IO[bytes] | gzip.GzipFile]:
    """Open ``path`` for binary reading, transparently decompressing gzip (detected by magic bytes)."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            yield fh
    else:
        with path.open("rb") as fh:
            yield fh


def read_parquet(source: Path | bytes, label: str | None = None) -> pl.DataFrame:
    """A parquet file (a path or its bytes) as polars, or :class:`DataError` naming it.

    Read through pyarrow: polars' own reader can panic, or abort the whole process on a huge
    allocation, when a damaged file's page headers lie (found by fuzzing); pyarrow raises instead.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = label or str(source if isinstance(source, Path) else "<parquet bytes>")
    try:
        table = pq.read_table(source if isinstance(source, Path) else pa.BufferReader(source))
        frame = pl.from_arrow(table)
    except (pa.ArrowException, OSError, ValueError, MemoryError, pl.exceptions.PolarsError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"cannot read as parquet: {reason[:300]}", source=where) from None
    if not isinstance(frame, pl.DataFrame):
        raise DataError("cannot read as parquet: not a table", source=where)
    return frame


def require_file(path: Path, what: str = "") -> Path:
    """``path`` if it is a file, else a :class:`DataError` naming it (and what it should hold)."""
    if not path.is_file():
        hint = f" ({what})" if what else ""
        where = f" in {path.parent}" if path.parent.exists() else f"; folder {path.parent} does not exist"
        raise DataError(f"missing file {path.name}{hint}{where}", source=str(path))
    return path


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gzip-decompressed when it is gzip; truncation raises :class:`DataError`."""
    require_file(path)
    try:
        with open_maybe_gzip(path) as fh:
            return fh.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"corrupt or truncated gzip file ({exc})", source=str(path)) from exc


def decode_text(data: bytes) -> str:
    """UTF-8 when the bytes are valid UTF-8, else ISO-8859-1.

    Old MovieLens and HetRec files are Latin-1; newer ones are UTF-8. Latin-1 text with accented
    letters is almost never valid UTF-8, so trying UTF-8 first picks the right codec for both.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_text(path: Path) -> str:
    return decode_text(read_bytes(path))


def _label(source: Source, label: str | None) -> str:
    return label or (str(source) if isinstance(source, Path) else "<bytes>")


def read_delimited(
    source: Source,
    *,
    label: str | None = None,
    separator: str = ",",
    names: Sequence[str] | None = None,
    dtypes: Mapping[str, Any] | None = None,
    required: Sequence[str] = (),
    quote_char: str | None = '"',
    context: Sequence[str] = (),
) -> pl.DataFrame:
    """Read a CSV/TSV with typed columns and clear errors.

    ``names`` means the file has no header row and gives the column names; otherwise the header is
    used and every column in ``required`` must be in it. ``dtypes`` types the named columns (others
    stay as polars infers them, or text for headerless files). ``context`` names id columns quoted
    in error messages ("at line 7 (userId=3, movieId=12)").
    """
    where = _label(source, label)
    if isinstance(source, Path):
        require_file(source)
        data: Any = source
    else:
        data = io.BytesIO(source)
    dtypes = dict(dtypes or {})
    try:
        if names is not None:
            schema = {n: dtypes.get(n, pl.String) for n in names}
            df = pl.read_csv(
                data, separator=separator, has_header=False, schema=schema, quote_char=quote_char
            )
        else:
            header = pl.read_csv(
                data, separator=separator, n_rows=0, infer_schema=False, quote_char=quote_char
            ).columns
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(
                    f"missing column {missing[0]!r} (columns: {', '.join(header)})",
                    source=where,
                    column=missing[0],
                )
            if not isinstance(data, Path):
                data.seek(0)
            overrides = {k: v for k, v in dtypes.items() if k in header}
            df = pl.read_csv(data, separator=separator, schema_overrides=overrides, quote_char=quote_char)
    except DataError:
        raise
    except pl.exceptions.NoDataError as exc:
        raise DataError("file is empty", source=where) from exc
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, pl.exceptions.PanicException) as exc:
        if not isinstance(data, Path):
            data.seek(0)
        raise _diagnose(data, where, separator, names, dtypes, quote_char, context, exc) from exc
    return df


def _diagnose(
    data: Any,
    where: str,
    separator: str,
    names: Sequence[str] | None,
    dtypes: Mapping[str, Any],
    quote_char: str | None,
    context: Sequence[str],
    original: Exception,
) -> DataError:
    """Re-read as text to name the first line and value that do not parse."""
    try:
        text = pl.read_csv(
            data,
            separator=separator,
            has_header=names is None,
            new_columns=list(names) if names is not None else None,
            infer_schema=False,
            quote_char=quote_char,
        )
    except pl.exceptions.PolarsError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return DataError(f"cannot parse file: {msg}", source=where)
    header_lines = 0 if names is not None else 1
    for col, dtype in dtypes.items():
        if col not in text.columns:
            continue
        raw = text[col]
        cast = raw.str.strip_chars().cast(dtype, strict=False)
        bad = cast.is_null() & raw.is_not_null()
        if bad.any():
            row = int(bad.arg_true()[0])
            ids = ", ".join(f"{c}={text[c][row]}" for c in context if c in text.columns and c != col)
            kind = "non-numeric" if dtype.is_numeric() else "invalid"
            value = str(raw[row]).strip()
            if dtype.is_integer() and value.lstrip("+-").isdigit():
                kind = f"integer too large for {dtype}:"
            elif dtype.is_integer() and value.lstrip("+-").replace(".", "", 1).isdigit():
                kind = "non-integer"
            return DataError(
                f"{kind} value {raw[row]!r} at line {row + 1 + header_lines}" + (f" ({ids})" if ids else ""),
                source=where,
                column=col,
            )
    msg = str(original).splitlines()[0] if str(original) else type(original).__name__
    return DataError(f"cannot parse file: {msg}", source=where)


def iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` from JSON lines, gzip or plain.

    Lines are strict JSON, or Python literals as in the 2014 Amazon metadata
    (``{'asin': '0001', ...}``), which are parsed with ``ast.literal_eval`` (never ``eval``).
    """
    require_file(path)
    try:
        with open_maybe_gzip(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.strip()
                if not line:
                    continue
                yield lineno, parse_record(line, path, lineno)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"corrupt or truncated gzip file ({exc})", source=str(path)) from exc


def parse_record(line: bytes, path: Path, lineno: int) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except ValueError:
        try:
            rec = ast.literal_eval(decode_text(line))
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            snippet = decode_text(line[:60])
            raise DataError(
                f"line {lineno} is neither JSON nor a Python literal: {snippet!r}...", source=str(path)
            ) from exc
    if not isinstance(rec, dict):
        raise DataError(f"line {lineno} is a {type(rec).__name__}, expected an object", source=str(path))
    return rec


def top_tags(tags: pl.DataFrame, k: int = 10, sep: str = ", ") -> pl.DataFrame:
    """``item_id, tags``: each item's ``k`` most used tags (by distinct users, ties by tag text).

    Built from every tag assignment in the file, so it describes the item as the whole community
    sees it (no split is known at load time); a strict protocol can rebuild it from training tags.
    """
    who = "user_id" if "user_id" in tags.columns else None
    counted = (
        tags.with_columns(pl.col("tag").str.strip_chars().str.to_lowercase().alias("_t"))
        .filter(pl.col("_t").str.len_chars() > 0)
        .group_by("item_id", "_t")
        .agg((pl.col(who).n_unique() if who else pl.len()).alias("_n"))
        .sort(["item_id", "_n", "_t"], descending=[False, True, False])
    )
    return counted.group_by("item_id", maintain_order=True).agg(
        pl.col("_t").head(k).str.join(sep).alias("tags")
    )
