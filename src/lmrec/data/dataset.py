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


def _check_id_column(frame: pl.DataFrame, col: str, what: str, source: str | None) -> pl.DataFrame:
    if col not in frame.columns:
        raise DataError(
            f"{what} has no {col!r} column (columns: {', '.join(frame.columns)}); pass a column mapping",
            source=source,
            column=col,
        )
    nulls = frame[col].null_count()
    if nulls:
        first = frame.with_row_index("_row").filter(pl.col(col).is_null())["_row"][0]
        raise DataError(
            f"{what}: {nulls} null value(s) in id column, first at row {first}", source=source, column=col
        )
    dtype = frame[col].dtype
    if dtype.is_float():
        vals = frame[col]
        if not (vals == vals.round(0)).all():
            raise DataError(f"{what}: id column holds non-integer numbers", source=source, column=col)
        frame = frame.with_columns(pl.col(col).cast(pl.Int64))
    elif dtype.is_integer():
        frame = frame.with_columns(pl.col(col).cast(pl.Int64))
    elif dtype in (pl.Utf8, pl.String, pl.Categorical):
        frame = frame.with_columns(pl.col(col).cast(pl.Utf8))
        if (frame[col].str.len_chars() == 0).any():
            raise DataError(f"{what}: empty string id", source=source, column=col)
    else:
        raise DataError(f"{what}: ids must be integers or strings, got {dtype}", source=source, column=col)
    return frame


def _check_timestamp(frame: pl.DataFrame, what: str, source: str | None, *, required: bool) -> pl.DataFrame:
    if "timestamp" not in frame.columns:
        if required:
            raise DataError(f"{what} has no 'timestamp' column", source=source, column="timestamp")
        return frame.with_columns(pl.lit(0, dtype=pl.Int64).alias("timestamp"))
    ts = frame["timestamp"]
    if ts.dtype.is_temporal():
        frame = frame.with_columns(pl.col("timestamp").cast(pl.Datetime("ms")).dt.epoch("s").cast(pl.Int64))
    elif ts.dtype.is_integer():
        frame = frame.with_columns(pl.col("timestamp").cast(pl.Int64))
    elif ts.dtype.is_float():
        frame = frame.with_columns(pl.col("timestamp").cast(pl.Float64))
    elif ts.dtype in (pl.Utf8, pl.String):
        as_num = ts.cast(pl.Float64, strict=False)
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
    return frame


def _check_numeric(frame: pl.DataFrame, col: str, what: str, source: str | None) -> pl.DataFrame:
    if col not in frame.columns:
        return frame
    s = frame[col]
    if not s.dtype.is_numeric():
        num = s.cast(pl.Float64, strict=False)
        bad = num.is_null() & s.is_not_null()
        if bad.any():
            row = int(bad.arg_true()[0])
            raise DataError(f"{what}: non-numeric value {s[row]!r} at row {row}", source=source, column=col)
        s = num
    return frame.with_columns(s.cast(pl.Float32).alias(col))


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
        dedupe: Literal["first", "last"] | None = None,
    ) -> Dataset:
        """Validate and index pandas/polars/arrow frames.

        ``columns`` maps canonical interaction names (``user_id``, ``item_id``, ``timestamp``,
        ``weight``, ``rating``, ``event``) to the names in ``interactions``. ``dedupe`` can be
        ``"last"``/``"first"`` to keep one row per (user, item); by default duplicates are kept (a
        user may click an item twice) and summed in matrices.
        """
        inter = _rename(_to_polars(interactions, "interactions"), columns)
        what = "interactions"
        inter = _check_id_column(inter, "user_id", what, source)
        inter = _check_id_column(inter, "item_id", what, source)
        inter = _check_timestamp(inter, what, source, required=require_timestamp)
        for col in ("weight", "rating"):
            inter = _check_numeric(inter, col, what, source)
        if "weight" not in inter.columns:
            inter = inter.with_columns(pl.lit(1.0, dtype=pl.Float32).alias("weight"))
        if inter.height == 0:
            raise DataError("interactions is empty", source=source)
        if dedupe in ("first", "last"):
            inter = inter.unique(subset=["user_id", "item_id"], keep=dedupe, maintain_order=True)
        keep = [c for c in INTERACTION_COLUMNS if c in inter.columns]
        inter = inter.select(keep)

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
            reviews_df = _check_timestamp(reviews_df, "reviews", source, required=False)
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
            tags_df = _check_timestamp(tags_df, "tags", source, required=False)

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
