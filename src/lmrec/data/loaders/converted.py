"""Datasets converted to lmrec's plain layout: ``interactions.tsv`` + ``items.tsv`` in one folder.

Used for copies that exist only in a converted form (e.g. ``amazon-2014-office``, aligned from two
public processed copies, see its PROVENANCE.md), so there is no raw format to parse:

* ``interactions.tsv``: header ``user_id, item_id, timestamp`` (more columns such as ``rating`` or
  ``weight`` are kept when present);
* ``items.tsv``: header ``item_id`` then text columns (``title, brand, categories, description``).

The files are *plain* TSV (IANA ``text/tab-separated-values``): fields hold no tab or newline, and
there is no quoting, so a ``"`` is an ordinary character (``2" diameter``, ``"TWIN DRAFT GUARD"``).
They are read with quoting disabled: a CSV reader that honours quotes would take a field opening
with ``"`` for a quoted one and swallow the tabs and lines up to the next quote.

Ids: ``item_id`` is always text (ASINs such as ``1384719342`` look numeric but are not numbers);
``user_id`` becomes an integer when every value is one (an index), else stays text. Empty item
fields become null, so the profile builder skips them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.loaders._read import read_delimited, require_file
from lmrec.errors import DataError

INTERACTIONS_FILE = "interactions.tsv"
ITEMS_FILE = "items.tsv"
_INTERACTION_DTYPES: dict[str, Any] = {
    "user_id": pl.String,
    "item_id": pl.String,
    "timestamp": pl.Int64,
    "rating": pl.Float64,
    "weight": pl.Float64,
}


def read_plain_tsv(
    path: Path, *, dtypes: Mapping[str, Any] | None = None, required: tuple[str, ...] = ()
) -> pl.DataFrame:
    """A headed, unquoted TSV; columns not in ``dtypes`` are read as text. Errors name file and column."""
    require_file(path)
    header = read_delimited(path, separator="\t", quote_char=None, required=required).columns
    typed = {c: (dtypes or {}).get(c, pl.String) for c in header}
    return read_delimited(
        path, separator="\t", quote_char=None, dtypes=typed, required=required, context=("user_id", "item_id")
    )


def _integer_ids(col: pl.Series) -> pl.Series:
    """``col`` as Int64 when every value is an integer written plainly (no sign, no leading zeros)."""
    plain = col.str.contains(r"^(?:0|[1-9][0-9]{0,17})$")
    if plain.all():
        return col.cast(pl.Int64)
    return col


def load_converted(
    folder: str | Path, *, name: str | None = None, meta: Mapping[str, Any] | None = None
) -> Dataset:
    """Load ``folder/interactions.tsv`` and (when present) ``folder/items.tsv`` into a :class:`Dataset`."""
    folder = Path(folder)
    inter_path = folder / INTERACTIONS_FILE
    inter = read_plain_tsv(inter_path, dtypes=_INTERACTION_DTYPES, required=("user_id", "item_id"))
    inter = inter.with_columns(_integer_ids(inter["user_id"]).alias("user_id"))
    items = None
    items_path = folder / ITEMS_FILE
    if items_path.is_file():
        items = read_plain_tsv(items_path, required=("item_id",))
        dup = items["item_id"].is_duplicated()
        if dup.any():
            raise DataError(
                f"item {items['item_id'][int(dup.arg_true()[0])]!r} is listed twice",
                source=str(items_path),
                column="item_id",
            )
    return Dataset.from_frames(
        inter,
        items=items,
        name=name or folder.name,
        source=str(inter_path),
        meta=meta,
        require_timestamp="timestamp" in inter.columns,
    )


__all__ = ["INTERACTIONS_FILE", "ITEMS_FILE", "load_converted", "read_plain_tsv"]
