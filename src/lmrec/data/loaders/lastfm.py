"""HetRec 2011 Last.fm (hetrec2011-lastfm-2k): 1,892 users' most played artists, with tags.

* ``user_artists.dat`` (``userID artistID weight``, tab-separated): the interactions, with the play
  count as ``weight``. The file has **no timestamps**: every interaction gets ``timestamp = 0``, so
  time-ordered protocols fall back to file order (the dataset's ``meta["notes"]`` says so) and a
  temporal split of this dataset means nothing;
* ``artists.dat`` (``id name url pictureURL``, UTF-8): items with ``title`` = artist name;
* ``tags.dat`` (``tagID tagValue``, ISO-8859-1) and ``user_taggedartists.dat`` (``userID artistID
  tagID day month year``): the tags frame (``user_id, item_id, tag, timestamp``; timestamp = UTC
  midnight of that date) and an items ``tags`` column with each artist's most used tags.

Tag assignments may name artists missing from ``artists.dat`` (390 of them in the official files);
they are kept in the tags frame, as found.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.loaders._read import decode_text, read_bytes, read_delimited, require_file, top_tags

NO_TIMESTAMP_NOTE = (
    "user_artists.dat has no timestamps: every interaction has timestamp 0, so time-ordered "
    "protocols use file order"
)


def load_lastfm(
    path: str | Path, *, name: str | None = None, meta: Mapping[str, Any] | None = None
) -> Dataset:
    """Load an extracted ``hetrec2011-lastfm-2k`` folder."""
    path = Path(path)
    plays = read_delimited(
        path / "user_artists.dat", separator="\t", quote_char=None,
        dtypes={"userID": pl.Int64, "artistID": pl.Int64, "weight": pl.Float64},
        required=["userID", "artistID", "weight"], context=("userID", "artistID"),
    )  # fmt: skip
    inter = plays.select(
        pl.col("userID").alias("user_id"),
        pl.col("artistID").alias("item_id"),
        pl.col("weight"),
        pl.lit(0, dtype=pl.Int64).alias("timestamp"),
    )

    artists_path = require_file(path / "artists.dat", "artist names")
    artists = read_delimited(
        decode_text(read_bytes(artists_path)).encode(), label=str(artists_path), separator="\t", quote_char=None,
        dtypes={"id": pl.Int64}, required=["id", "name"],
    )  # fmt: skip
    items = artists.select(
        pl.col("id").alias("item_id"),
        pl.col("name").str.strip_chars().alias("title"),
        *[
            pl.col(c).alias(a)
            for c, a in (("url", "url"), ("pictureURL", "picture_url"))
            if c in artists.columns
        ],
    )

    tags = None
    assignments_path = path / "user_taggedartists.dat"
    if assignments_path.exists():
        tags_path = require_file(path / "tags.dat", "tag names for user_taggedartists.dat")
        names = read_delimited(
            decode_text(read_bytes(tags_path)).encode(), label=str(tags_path), separator="\t", quote_char=None,
            dtypes={"tagID": pl.Int64, "tagValue": pl.String}, required=["tagID", "tagValue"],
        )  # fmt: skip
        date_cols = {"day": pl.Int32, "month": pl.Int32, "year": pl.Int32}
        raw = read_delimited(
            assignments_path, separator="\t", quote_char=None,
            dtypes={"userID": pl.Int64, "artistID": pl.Int64, "tagID": pl.Int64, **date_cols},
            required=["userID", "artistID", "tagID", *date_cols], context=("userID", "artistID"),
        )  # fmt: skip
        tags = raw.join(names, on="tagID", how="left", maintain_order="left").select(
            pl.col("userID").alias("user_id"),
            pl.col("artistID").alias("item_id"),
            pl.col("tagValue").fill_null(pl.format("tag {}", pl.col("tagID"))).alias("tag"),
            pl.date(pl.col("year"), pl.col("month"), pl.col("day"))
            .cast(pl.Datetime("ms"))
            .dt.epoch("s")
            .fill_null(0)
            .alias("timestamp"),
        )
        items = items.join(top_tags(tags), on="item_id", how="left", maintain_order="left").with_columns(
            pl.col("tags").fill_null("")
        )

    notes = list((meta or {}).get("notes", []))
    if NO_TIMESTAMP_NOTE not in notes:
        notes.append(NO_TIMESTAMP_NOTE)
    return Dataset.from_frames(
        inter,
        items=items,
        tags=tags,
        name=name or path.name,
        source=str(path),
        meta={**(meta or {}), "notes": notes},
    )
