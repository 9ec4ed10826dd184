"""The one in-memory dataset type every stage of lmrec works on.

A :class:`Dataset` holds

* ``interactions``: one row per event with ``user_id``, ``item_id``, ``timestamp`` and ``weight``
  (plus optional ``rating`` and ``event``), in file order (file order breaks timestamp ties);
* ``items``: one row per catalogue item, ``item_id`` plus text/attribute columns (may include items
  that nobody interacted with: the cold-start catalogue);
* ``users``: optional user attributes/profile text;
* ``reviews`` (``user_id, item_id, text, rating, timestamp``) and ``tags`` (``user_id, item_id, tag,
  timestamp``): user-generated content;
* two :class:`Vocabulary` objects mapping external ids to contiguous internal indices.

Frames are polars. Internal index columns ``user_idx``/``item_idx`` are added to ``interactions`` so
that splits, matrices and sequences never re-map ids.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.vocabulary import Vocabulary
from lmrec.errors import DataError

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "weight", "rating", "event")
REVIEW_COLUMNS = ("user_id", "item_id", "text", "rating", "timestamp")
TAG_COLUMNS = ("user_id", "item_id", "tag", "timestamp")

#: what :meth:`Dataset.from_frames` does with interactions that repeat a (user, item) pair
DuplicatePolicy = Literal["auto", "keep", "first", "last", "error"]

log = logging.getLogger("lmrec.data")


def _to_polars(frame: Any, what: str) -> pl.DataFrame:
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


def _rename(frame: pl.DataFrame, mapping: Mapping[str, str] | None) -> pl.DataFrame:
    if not mapping:
        return frame
    # mapping is canonical -> source column name
    present = {src: dst for dst, src in mapping.items() if src in frame.columns and src != dst}
    return frame.rename(present)


#: strings that mean "no value" in exported tables; never accepted as an id
_MISSING_MARKERS = ("na", "n/a", "nan", "null", "none", "nil", "<na>", "-")
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)


def _where(frame: pl.DataFrame, mask: pl.Series, *, limit: int = 3) -> str:
    """``"row 4 (user_id=7, item_id=42)"`` for the first rows where ``mask`` holds, "and N more"."""
    rows = mask.fill_null(False).arg_true().to_list()
    shown = []
    for r in rows[:limit]:
        ids = ", ".join(f"{c}={frame[c][r]!r}" for c in ("user_id", "item_id") if c in frame.columns)
        shown.append(f"row {r}" + (f" ({ids})" if ids else ""))
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(shown) + more


def _check_id_column(frame: pl.DataFrame, col: str, what: str, source: str | None) -> pl.DataFrame:
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
            f"{what}: {nulls} null value(s) in id column, first at {_where(frame, frame[col].is_null())}",
            source=source,
            column=col,
        )
    dtype = frame[col].dtype
    if dtype.is_float():
        vals = frame[col]
        bad = vals.is_nan() | vals.is_infinite()
        if bad.any():
            raise DataError(f"{what}: NaN or infinite id at {_where(frame, bad)}", source=source, column=col)
        if not (vals == vals.round(0)).all():
            bad = vals != vals.round(0)
            raise DataError(
                f"{what}: id column holds non-integer numbers, e.g. {vals.filter(bad)[0]!r} at {_where(frame, bad)}",
                source=source,
                column=col,
            )
        big = (vals.abs() >= 2.0**53).fill_null(False)
        if big.any():
            raise DataError(
                f"{what}: id {vals.filter(big)[0]!r} at {_where(frame, big)} is too large to be exact as a "
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
        frame = _clean_string_ids(frame, col, what, source)
    else:
        raise DataError(f"{what}: ids must be integers or strings, got {dtype}", source=source, column=col)
    return frame


def _clean_string_ids(frame: pl.DataFrame, col: str, what: str, source: str | None) -> pl.DataFrame:
    raw = frame[col]
    stripped = raw.str.strip_chars()
    empty = stripped.str.len_chars() == 0
    if empty.any():
        raise DataError(f"{what}: empty id at {_where(frame, empty)}", source=source, column=col)
    marker = stripped.str.to_lowercase().is_in(list(_MISSING_MARKERS))
    if marker.any():
        raise DataError(
            f"{what}: missing-value marker {raw.filter(marker)[0]!r} used as an id at {_where(frame, marker)}; "
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
            f"({_where(frame, rows)}); clean the column so each id is written one way",
            source=source,
            column=col,
        )
    log.info("%s: stripped surrounding whitespace from %d %s value(s)", what, int(changed.sum()), col)
    as_int = stripped.cast(pl.Int64, strict=False)
    if as_int.null_count() == 0 and (as_int.cast(pl.Utf8) == stripped).all():
        # the whitespace alone made the reader see text: "1 ", " 2" are the integer ids 1 and 2
        return frame.with_columns(as_int.alias(col))
    return frame.with_columns(stripped.alias(col))


def _check_timestamp(
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
                f"{what}: timestamp out of range at {_where(frame, bad)}", source=source, column="timestamp"
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
                f"{what}: NaN or infinite timestamp at {_where(frame, bad)}",
                source=source,
                column="timestamp",
            )
    neg = ts < 0
    if not negative_ok and neg.any():
        raise DataError(
            f"{what}: {int(neg.sum())} negative timestamp(s) (before 1970), e.g. {ts.filter(neg)[0]!r} at "
            f"{_where(frame, neg)}",
            source=source,
            column="timestamp",
        )
    return frame


def _check_numeric(frame: pl.DataFrame, col: str, what: str, source: str | None) -> pl.DataFrame:
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
            f"{what}: {s.null_count()} missing weight(s) at {_where(frame, s.is_null())}",
            source=source,
            column=col,
        )
    bad = s.is_nan() | s.is_infinite()
    if bad.any():
        raise DataError(
            f"{what}: {int(bad.sum())} NaN or infinite {col}(s), e.g. {s.filter(bad)[0]!r} at {_where(frame, bad)}",
            source=source,
            column=col,
        )
    bad = (s <= 0) if col == "weight" else (s < 0)
    if bad.any():
        kind = "zero or negative weight(s) (weights must be > 0)" if col == "weight" else f"negative {col}(s)"
        raise DataError(
            f"{what}: {int(bad.sum())} {kind}, e.g. {s.filter(bad)[0]!r} at {_where(frame, bad)}",
            source=source,
            column=col,
        )
    return frame.with_columns(s.cast(pl.Float32).alias(col))


def _resolve_duplicates(
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
            f"{n_pairs} (user_id, item_id) pair(s) occur more than once, e.g. {_where(inter, rows)}; "
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


@dataclass(frozen=True)
class Dataset:
    """Interactions + catalogue + users + user-generated content, with id vocabularies."""

    interactions: pl.DataFrame
    user_vocab: Vocabulary
    item_vocab: Vocabulary
    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    reviews: pl.DataFrame | None = None
    tags: pl.DataFrame | None = None
    name: str = "dataset"
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frames(
        cls,
        interactions: Any,
        items: Any = None,
        users: Any = None,
        reviews: Any = None,
        tags: Any = None,
        *,
        columns: Mapping[str, str] | None = None,
        item_columns: Mapping[str, str] | None = None,
        user_columns: Mapping[str, str] | None = None,
        name: str = "dataset",
        source: str | None = None,
        meta: Mapping[str, Any] | None = None,
        require_timestamp: bool = False,
        duplicates: DuplicatePolicy = "auto",
        dedupe: Literal["first", "last"] | None = None,
    ) -> Dataset:
        """Validate and index pandas/polars/arrow frames.

        ``columns`` maps canonical interaction names (``user_id``, ``item_id``, ``timestamp``,
        ``weight``, ``rating``, ``event``) to the names in ``interactions``.

        Every check fails with a one-line :class:`DataError` naming the file, the column and
        example rows: null, empty or ``"NA"``-like ids, ids that differ only in surrounding
        whitespace, NaN/infinite/negative ratings, weights that are not > 0, negative or
        non-finite timestamps. Integer ids beyond int64 are kept exactly, as text.

        ``duplicates`` says what happens to rows that repeat a (user, item) pair:

        * ``"auto"`` (default): a row repeating an earlier (user, item, timestamp[, event]) is the
          same event logged twice and is dropped (the last kept); repeats at other times are
          kept (a user may play a song twice) and summed in matrices. Both are logged with a count.
        * ``"keep"``: every row is kept as given.
        * ``"first"`` / ``"last"``: one row per pair, its earliest / latest by time (file order
          breaks ties), so a leave-last-out test item is never also in the training history.
        * ``"error"``: any repeated pair raises :class:`DataError` naming one.

        ``dedupe="first"/"last"`` is the older spelling of ``duplicates="first"/"last"``. The counts
        are recorded in ``meta["duplicates"]``.
        """
        if dedupe in ("first", "last"):
            duplicates = dedupe
        if duplicates not in ("auto", "keep", "first", "last", "error"):
            raise DataError(
                f"duplicates={duplicates!r}: use 'auto', 'keep', 'first', 'last' or 'error'", source=source
            )
        inter = _rename(_to_polars(interactions, "interactions"), columns)
        what = "interactions"
        has_time = "timestamp" in inter.columns
        inter = _check_id_column(inter, "user_id", what, source)
        inter = _check_id_column(inter, "item_id", what, source)
        inter = _check_timestamp(inter, what, source, required=require_timestamp)
        for col in ("weight", "rating"):
            inter = _check_numeric(inter, col, what, source)
        if "weight" not in inter.columns:
            inter = inter.with_columns(pl.lit(1.0, dtype=pl.Float32).alias("weight"))
        if inter.height == 0:
            raise DataError("interactions is empty", source=source)
        keep = [c for c in INTERACTION_COLUMNS if c in inter.columns]
        inter = inter.select(keep)
        inter, dup_counts = _resolve_duplicates(inter, duplicates, has_time=has_time, source=source)

        items_df = None
        if items is not None:
            items_df = _check_id_column(
                _rename(_to_polars(items, "items"), item_columns), "item_id", "items", source
            )
            dup = items_df["item_id"].is_duplicated()
            if dup.any():
                raise DataError(
                    f"items: duplicate item_id {items_df['item_id'].filter(dup)[0]!r}",
                    source=source,
                    column="item_id",
                )
            if items_df["item_id"].dtype != inter["item_id"].dtype:
                raise DataError(
                    f"items: item_id dtype {items_df['item_id'].dtype} differs from interactions' {inter['item_id'].dtype}",
                    source=source,
                    column="item_id",
                )
        users_df = None
        if users is not None:
            users_df = _check_id_column(
                _rename(_to_polars(users, "users"), user_columns), "user_id", "users", source
            )
            dup = users_df["user_id"].is_duplicated()
            if dup.any():
                raise DataError(
                    f"users: duplicate user_id {users_df['user_id'].filter(dup)[0]!r}",
                    source=source,
                    column="user_id",
                )
        reviews_df = None
        if reviews is not None:
            reviews_df = _to_polars(reviews, "reviews")
            for col in ("user_id", "item_id"):
                reviews_df = _check_id_column(reviews_df, col, "reviews", source)
            if "text" not in reviews_df.columns:
                raise DataError("reviews has no 'text' column", source=source, column="text")
            reviews_df = _check_timestamp(reviews_df, "reviews", source, required=False, negative_ok=True)
            reviews_df = _check_numeric(reviews_df, "rating", "reviews", source)
        tags_df = None
        if tags is not None:
            tags_df = _to_polars(tags, "tags")
            for col in ("item_id",):
                tags_df = _check_id_column(tags_df, col, "tags", source)
            if "tag" not in tags_df.columns:
                raise DataError("tags has no 'tag' column", source=source, column="tag")
            if "user_id" in tags_df.columns:
                tags_df = _check_id_column(tags_df, "user_id", "tags", source)
            tags_df = _check_timestamp(tags_df, "tags", source, required=False, negative_ok=True)

        # Vocabularies: sorted ids, so that the internal order (and every tie broken by it) does not
        # depend on file order. Catalogue-only items are part of the item vocabulary (cold items).
        user_ids = inter["user_id"]
        if users_df is not None:
            user_ids = pl.concat(
                [user_ids, users_df["user_id"].cast(user_ids.dtype, strict=False).drop_nulls()]
            )
        item_ids = inter["item_id"]
        if items_df is not None:
            item_ids = pl.concat([item_ids, items_df["item_id"]])
        user_vocab = Vocabulary(user_ids.unique().sort(), name="user_id")
        item_vocab = Vocabulary(item_ids.unique().sort(), name="item_id")
        out = cls(
            interactions=cls._index_frame(inter, user_vocab, item_vocab),
            user_vocab=user_vocab,
            item_vocab=item_vocab,
            items=items_df,
            users=users_df,
            reviews=reviews_df,
            tags=tags_df,
            name=name,
            meta=dict(meta or {}),
        )
        if dup_counts:
            out.meta["duplicates"] = {"policy": duplicates, **dup_counts}
        # the checksum of the whole dataset travels with every split of it (reports record it)
        out.meta.setdefault("source_checksum", out.checksum())
        return out

    @staticmethod
    def _index_frame(frame: pl.DataFrame, user_vocab: Vocabulary, item_vocab: Vocabulary) -> pl.DataFrame:
        umap = pl.DataFrame(
            {"user_id": user_vocab.to_series(), "user_idx": np.arange(len(user_vocab), dtype=np.int32)}
        )
        imap = pl.DataFrame(
            {"item_id": item_vocab.to_series(), "item_idx": np.arange(len(item_vocab), dtype=np.int32)}
        )
        base = frame.drop([c for c in ("user_idx", "item_idx") if c in frame.columns])
        out = base.join(umap, on="user_id", how="left", maintain_order="left").join(
            imap, on="item_id", how="left", maintain_order="left"
        )
        return out

    # ------------------------------------------------------------------ basic facts
    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    @property
    def n_interactions(self) -> int:
        return self.interactions.height

    def __repr__(self) -> str:
        extra = [
            f"{k}={getattr(self, k).height}"
            for k in ("items", "users", "reviews", "tags")
            if getattr(self, k) is not None
        ]
        return (
            f"Dataset({self.name!r}: {self.n_interactions} interactions, {self.n_users} users, "
            f"{self.n_items} items{', ' if extra else ''}{', '.join(extra)})"
        )

    def checksum(self) -> str:
        """A content hash of the interactions (ids, time, weight), recorded in evaluation reports."""
        h = hashlib.sha256()
        cols = [c for c in ("user_id", "item_id", "timestamp", "weight") if c in self.interactions.columns]
        for c in cols:
            h.update(
                self.interactions[c].to_numpy().tobytes()
                if self.interactions[c].dtype.is_numeric()
                else "\x1f".join(map(str, self.interactions[c].to_list())).encode()
            )
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ derived views
    def csr(self, value: str = "weight") -> sp.csr_matrix:
        """User x item CSR matrix. ``value`` is a column name (duplicates summed) or ``"binary"``."""
        u = self.interactions["user_idx"].to_numpy()
        i = self.interactions["item_idx"].to_numpy()
        if value == "binary":
            data = np.ones(len(u), dtype=np.float32)
        else:
            if value not in self.interactions.columns:
                raise DataError(f"no interaction column {value!r} for matrix values", column=value)
            data = self.interactions[value].fill_null(0.0).to_numpy().astype(np.float32)
        m = sp.csr_matrix((data, (u, i)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if value == "binary":
            m.data[:] = 1.0
        return m

    def sequences(self) -> list[np.ndarray]:
        """Each user's item indices ordered by time (ties kept in file order)."""
        df = (
            self.interactions.with_row_index("_row")
            .sort(["user_idx", "timestamp", "_row"])
            .select("user_idx", "item_idx")
        )
        users = df["user_idx"].to_numpy()
        items = df["item_idx"].to_numpy().astype(np.int64)
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        return [items[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]

    def repeated_pairs(self) -> int:
        """How many (user, item) pairs occur in more than one interaction row.

        Non-zero means a leave-last-out test item can also sit in the user's training history
        (and so be excluded from ranking); splits check this, ``duplicates="last"`` avoids it.
        """
        pairs = self.interactions.select("user_idx", "item_idx")
        return int(pairs.filter(pairs.is_duplicated()).n_unique())

    def item_popularity(self) -> np.ndarray:
        """Number of distinct users per item (length ``n_items``)."""
        return np.asarray(self.csr("binary").sum(axis=0)).ravel()

    def with_interactions(self, interactions: pl.DataFrame) -> Dataset:
        """Same vocabularies and side tables, other interactions (used by splits)."""
        return replace(self, interactions=interactions)

    def filter(self, mask: pl.Expr | pl.Series) -> Dataset:
        return self.with_interactions(self.interactions.filter(mask))

    def item_table(self) -> pl.DataFrame:
        """The items table aligned to the item vocabulary (one row per internal index, nulls where unknown)."""
        base = pl.DataFrame({"item_id": self.item_vocab.to_series()})
        if self.items is None:
            return base
        items = self.items.with_columns(pl.col("item_id").cast(base["item_id"].dtype))
        return base.join(items, on="item_id", how="left", maintain_order="left")

    def item_titles(self) -> list[str]:
        table = self.item_table()
        for col in ("title", "name"):
            if col in table.columns:
                return [
                    t if t is not None else str(i)
                    for i, t in zip(table["item_id"].to_list(), table[col].to_list(), strict=True)
                ]
        return [str(i) for i in table["item_id"].to_list()]

    def extend_items(self, new_items: pl.DataFrame) -> Dataset:
        """Add catalogue items (e.g. new arrivals) without touching existing indices."""
        new_items = _check_id_column(new_items, "item_id", "items", None)
        vocab = self.item_vocab.extend(new_items["item_id"].to_list())
        items = (
            new_items
            if self.items is None
            else pl.concat([self.items, new_items], how="diagonal_relaxed").unique(
                "item_id", keep="last", maintain_order=True
            )
        )
        return replace(self, item_vocab=vocab, items=items)


def concat_interactions(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(list(frames), how="diagonal_relaxed")
