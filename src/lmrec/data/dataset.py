"""The one in-memory dataset type every stage of lmrec works on.

A :class:`Dataset` holds

* ``interactions``: one row per event with ``user_id``, ``item_id``, ``timestamp`` and ``weight``
  (plus optional ``rating`` and ``event``), in file order (file order breaks timestamp ties);
* ``items``: one row per catalogue item, ``item_id`` plus text/attribute columns (may include items
  that nobody interacted with: the cold-start catalogue);
* ``users``: optional user attributes/profile text;
* ``reviews`` (``user_id, item_id, text, rating, timestamp``) and ``tags`` (``user_id, item_id, tag,
  timestamp``): user-generated content;
* ``images``: optional item pictures (:class:`~lmrec.data.images.ItemImages`: image files or a
  feature matrix keyed by item id; items with a missing or broken picture are listed there, not fatal);
* two :class:`Vocabulary` objects mapping external ids to contiguous internal indices.

Frames are polars. Internal index columns ``user_idx``/``item_idx`` are added to ``interactions`` so
that splits, matrices and sequences never re-map ids.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.images import ItemImages
from lmrec.data.validate import (
    DuplicatePolicy,
    check_id_column,
    check_numeric,
    check_timestamp,
    rename_columns,
    resolve_duplicates,
    to_polars,
)
from lmrec.data.vocabulary import Vocabulary
from lmrec.errors import DataError

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "weight", "rating", "event")
REVIEW_COLUMNS = ("user_id", "item_id", "text", "rating", "timestamp")
TAG_COLUMNS = ("user_id", "item_id", "tag", "timestamp")


log = logging.getLogger("lmrec.data")


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
    images: ItemImages | None = None

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
        inter = rename_columns(to_polars(interactions, "interactions"), columns)
        what = "interactions"
        has_time = "timestamp" in inter.columns
        inter = check_id_column(inter, "user_id", what, source)
        inter = check_id_column(inter, "item_id", what, source)
        inter = check_timestamp(inter, what, source, required=require_timestamp)
        for col in ("weight", "rating"):
            inter = check_numeric(inter, col, what, source)
        if "weight" not in inter.columns:
            inter = inter.with_columns(pl.lit(1.0, dtype=pl.Float32).alias("weight"))
        if inter.height == 0:
            raise DataError("interactions is empty", source=source)
        keep = [c for c in INTERACTION_COLUMNS if c in inter.columns]
        inter = inter.select(keep)
        inter, dup_counts = resolve_duplicates(inter, duplicates, has_time=has_time, source=source)

        items_df = None
        if items is not None:
            items_df = check_id_column(
                rename_columns(to_polars(items, "items"), item_columns), "item_id", "items", source
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
            users_df = check_id_column(
                rename_columns(to_polars(users, "users"), user_columns), "user_id", "users", source
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
            reviews_df = to_polars(reviews, "reviews")
            for col in ("user_id", "item_id"):
                reviews_df = check_id_column(reviews_df, col, "reviews", source)
            if "text" not in reviews_df.columns:
                raise DataError("reviews has no 'text' column", source=source, column="text")
            reviews_df = check_timestamp(reviews_df, "reviews", source, required=False, negative_ok=True)
            reviews_df = check_numeric(reviews_df, "rating", "reviews", source)
        tags_df = None
        if tags is not None:
            tags_df = to_polars(tags, "tags")
            for col in ("item_id",):
                tags_df = check_id_column(tags_df, col, "tags", source)
            if "tag" not in tags_df.columns:
                raise DataError("tags has no 'tag' column", source=source, column="tag")
            if "user_id" in tags_df.columns:
                tags_df = check_id_column(tags_df, "user_id", "tags", source)
            tags_df = check_timestamp(tags_df, "tags", source, required=False, negative_ok=True)

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
        if self.images is not None:
            extra.append(f"images={len(self.images)}")
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

    def time_ordered(self) -> pl.DataFrame:
        """Interactions by user, then time (ties kept in file order), with their file row as ``_row``."""
        return self.interactions.with_row_index("_row").sort(["user_idx", "timestamp", "_row"])

    def histories(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every user's time-ordered interactions, flattened: item indices, weights (missing: 1) and
        ``n_users + 1`` offsets (user ``u`` owns ``[offsets[u], offsets[u + 1])``)."""
        df = self.time_ordered()
        users = df["user_idx"].to_numpy()
        items = df["item_idx"].to_numpy().astype(np.int64)
        weights = df["weight"].fill_null(1.0).to_numpy().astype(np.float32)
        offsets = np.searchsorted(users, np.arange(self.n_users + 1)).astype(np.int64)
        return items, weights, offsets

    def sequences(self) -> list[np.ndarray]:
        """Each user's item indices ordered by time (ties kept in file order)."""
        items, _, bounds = self.histories()
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

    def with_images(
        self,
        images: ItemImages | str | Path,
        *,
        md5s: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> Dataset:
        """This dataset with item pictures: an :class:`ItemImages`, or a folder of ``<item_id>.jpg`` files.

        A folder is matched against the item vocabulary (see :meth:`ItemImages.from_folder`: missing,
        unreadable or corrupt pictures are logged by item id and leave the item without one). Pictures
        of ids outside the vocabulary are dropped. ``meta["images"]`` records the summary.
        """
        ids = self.item_vocab.to_series().to_list()
        if not isinstance(images, ItemImages):
            images = ItemImages.from_folder(images, ids, md5s=md5s, check=check)
        else:
            images = images.restrict(ids)
        return replace(self, images=images, meta={**self.meta, "images": images.report()})

    def extend_items(self, new_items: pl.DataFrame) -> Dataset:
        """Add catalogue items (e.g. new arrivals) without touching existing indices."""
        new_items = check_id_column(new_items, "item_id", "items", None)
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
