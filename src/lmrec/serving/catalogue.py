"""Item metadata the server needs beside the model: titles, tags, text words, filterable fields.

A model artifact holds ids and tensors only; titles, genres and other attributes come from a
catalogue file (parquet, CSV or JSON lines with an ``item_id`` column) passed to ``lmrec serve
--catalogue`` or stored as ``catalog.parquet`` in the artifact directory (what ``lmrec train``
writes). Everything is aligned
to the model's internal item index, so request-time work is array indexing:

* **tags** (``genres``, ``tags``, ``categories``, ``keywords`` columns; ``|``/``,``-separated
  strings or lists) drive tag filters and the keyword part of explanations; an inverted index
  (lower-cased tag → item indices) makes ``tags_any``/``tags_all``/``tags_none`` filters cheap;
* **terms** (content words of title and description) match free-text queries in explanations;
* **fields** (every other scalar column) serve ``where`` equality filters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.loaders._read import read_parquet
from lmrec.data.vocabulary import Vocabulary
from lmrec.errors import DataError, FilterValueError
from lmrec.rerank.explain import keywords_of, tag_idf

TAG_COLUMNS = ("genres", "tags", "categories", "keywords", "tag")
TITLE_COLUMNS = ("title", "name")
TEXT_COLUMNS = ("description", "text", "overview", "plot", "summary")
#: looked up in the artifact directory, in this order (``lmrec train`` writes catalog.parquet)
CATALOGUE_FILES = (
    "catalog.parquet",
    "catalogue.parquet",
    "catalog.csv",
    "catalogue.csv",
    "catalog.jsonl",
    "catalogue.jsonl",
)
_NO_TAG = {"", "(no genres listed)", "none", "null", "nan", "n/a"}


def value_kind(value: Any) -> str | None:
    """The filter kind of a catalogue cell or a ``where`` value: boolean, integer, number, string
    (None for a null, "other" for anything else)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, np.integer)):
        return "integer"
    if isinstance(value, (float, np.floating)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _merge_kinds(a: str | None, b: str | None) -> str | None:
    if a is None or a == b:
        return b
    if b is None:
        return a
    if {a, b} == {"integer", "number"}:
        return "number"
    return "other"


def _matches(kind: str | None, value: Any) -> bool:
    """Whether a ``where`` value can equal a cell of a column of ``kind`` (None, other: any)."""
    got = value_kind(value)
    if kind in (None, "other") or got == kind:
        return True
    if kind == "number" and got == "integer":
        return True
    return kind == "integer" and got == "number" and float(value).is_integer()


def split_tags(value: Any) -> list[str]:
    """Tags from a cell: a list, or a string separated by ``|`` (MovieLens) or ``,``."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, pl.Series)):
        parts = [str(v) for v in value]
    else:
        text = str(value)
        parts = text.split("|") if "|" in text else text.split(",")
    out = []
    for p in parts:
        p = p.strip()
        if p.lower() not in _NO_TAG and p not in out:
            out.append(p)
    return out


def catalogue_row(item_id: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    """A catalogue-file row for an item added while serving (``POST /items``, logged as ``{title,
    text, tags, fields, image}``): ``title``, ``description``, ``genres`` (``|``-joined tags), ``image``
    (the stored picture's path) and the other fields as columns. What ``model.add_items`` takes, and what ``lmrec retrain`` adds to the items."""
    row: dict[str, Any] = {"item_id": item_id}
    if item.get("title"):
        row["title"] = item["title"]
    if item.get("text"):
        row["description"] = item["text"]
    if item.get("tags"):
        row["genres"] = "|".join(item["tags"])
    if item.get("image"):
        row["image"] = item["image"]  # the stored picture file (lmrec.serving.pictures)
    for k, v in (item.get("fields") or {}).items():
        row.setdefault(k, v)
    return row


def read_catalogue(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read a catalogue file (parquet, csv, tsv, jsonl/ndjson, json) into polars; no pickle."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            return read_parquet(p)  # pyarrow: polars can abort the process on a damaged file
        if suffix in (".csv", ".tsv"):
            return pl.read_csv(p, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=10_000)
        if suffix in (".jsonl", ".ndjson"):
            return pl.read_ndjson(p)
        if suffix == ".json":
            return pl.DataFrame(json.loads(p.read_text()))
    except FileNotFoundError:
        raise DataError(f"catalogue file {p} does not exist", source=str(p)) from None
    except DataError:
        raise
    except (Exception, pl.exceptions.PanicException) as exc:  # a damaged parquet can panic polars
        raise DataError(f"cannot read catalogue ({' '.join(str(exc).split())})", source=str(p)) from None
    raise DataError("catalogue must be .parquet, .csv, .tsv, .jsonl or .json", source=str(p))


def find_catalogue(artifact_dir: str | os.PathLike[str]) -> Path | None:
    for name in CATALOGUE_FILES:
        p = Path(artifact_dir) / name
        if p.exists():
            return p
    return None


class LazyTerms(Sequence[frozenset[str]]):
    """Each item's content words (:func:`~lmrec.rerank.explain.keywords_of` of its title and text),
    worked out the first time an item's are asked for and kept.

    Only explanations of free-text queries read them, for the ten or so items of a list; working
    them out for every item at load took minutes of start-up at 1M items (two regex passes and a
    set per item), most of the server's time to ready."""

    def __init__(self, texts: list[str | None]) -> None:
        self._texts = texts
        self._done: dict[int, frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self._texts)

    def __getitem__(self, i: int) -> frozenset[str]:  # type: ignore[override]
        i = int(i)
        got = self._done.get(i)
        if got is None:
            got = self._done[i] = frozenset(keywords_of(self._texts[i]))
        return got

    def forget(self, i: int) -> None:
        """Item ``i``'s text changed: work its words out again when next asked."""
        self._done.pop(i, None)


class Catalogue:
    """Per-item titles, tags, terms and fields, aligned to an item vocabulary (see module doc)."""

    def __init__(
        self, item_vocab: Vocabulary, frame: pl.DataFrame | None = None, *, source: str | None = None
    ) -> None:
        n = len(item_vocab)
        self.titles: list[str | None] = [None] * n
        self.tags: list[frozenset[str]] = [frozenset()] * n
        #: each item's title and text, joined: :attr:`terms` reads them when first asked
        self._texts: list[str | None] = [None] * n
        self.terms = LazyTerms(self._texts)
        self._fields: dict[str, list[Any]] = {}
        #: each field's value kind (:func:`value_kind`, merged over its non-null cells)
        self._kinds: dict[str, str | None] = {}
        self.source = source
        self._n = n
        if frame is not None and frame.height:
            self._load(item_vocab, frame, source)
        self._reindex()

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], item_vocab: Vocabulary) -> Catalogue:
        return cls(item_vocab, read_catalogue(path), source=str(path))

    def _load(self, vocab: Vocabulary, frame: pl.DataFrame, source: str | None) -> None:
        if "item_id" not in frame.columns:
            raise DataError(
                f"catalogue has no 'item_id' column (columns: {', '.join(frame.columns)})", source=source
            )
        idx = vocab.indices(frame["item_id"].to_list(), missing="mark")
        ok = idx >= 0
        title_col = next((c for c in TITLE_COLUMNS if c in frame.columns), None)
        tag_cols = [c for c in TAG_COLUMNS if c in frame.columns]
        text_cols = [c for c in TEXT_COLUMNS if c in frame.columns]
        rows = frame.filter(pl.Series(ok)).to_dicts()
        field_cols = [
            c
            for c in frame.columns
            if c != "item_id"
            and c not in tag_cols
            and (frame[c].dtype in (pl.Utf8, pl.String, pl.Boolean) or frame[c].dtype.is_numeric())
        ]
        for c in field_cols:
            self._fields[c] = [None] * self._n
        for i, row in zip(idx[ok], rows, strict=True):
            self._set_row(int(i), row, title_col, tag_cols, text_cols, field_cols)

    def _set_row(
        self,
        i: int,
        row: Mapping[str, Any],
        title_col: str | None,
        tag_cols: Sequence[str],
        text_cols: Sequence[str],
        field_cols: Iterable[str],
    ) -> None:
        title = row.get(title_col) if title_col else None
        self.titles[i] = None if title is None else str(title)
        tags: list[str] = []
        for c in tag_cols:
            tags.extend(t for t in split_tags(row.get(c)) if t not in tags)
        self.tags[i] = frozenset(tags)
        texts = [self.titles[i]] + [str(v) for v in (row.get(c) for c in text_cols) if v is not None]
        joined = "\n".join(t for t in texts if t)
        self._texts[i] = joined or None
        self.terms.forget(i)
        for c in field_cols:
            if c not in self._fields:
                self._fields[c] = [None] * self._n
            value = row.get(c)
            self._fields[c][i] = value
            self._kinds[c] = _merge_kinds(self._kinds.get(c), value_kind(value))

    def _reindex(self) -> None:
        inv: dict[str, list[int]] = {}
        for i, ts in enumerate(self.tags):
            for t in ts:
                inv.setdefault(t.lower(), []).append(i)
        self._inverted = {t: np.asarray(v, dtype=np.int64) for t, v in inv.items()}
        self.idf = tag_idf(self.tags)

    # ------------------------------------------------------------------ facts
    def __len__(self) -> int:
        return self._n

    @property
    def has_tags(self) -> bool:
        return bool(self._inverted)

    @property
    def field_names(self) -> list[str]:
        return sorted(self._fields)

    def field_kind(self, name: str) -> str | None:
        """The kind of a field's values: boolean, integer, number, string; None (no values yet) or
        "other" (mixed) when any value may be asked for."""
        return self._kinds.get(name)

    def title(self, i: int) -> str | None:
        return self.titles[i] if 0 <= i < self._n else None

    def picture(self, i: int) -> Path | None:
        """The item's picture file (the catalogue's ``image`` column: dataset pictures written by
        ``lmrec train``, or pictures sent with ``POST /items``), or None. The file is not checked here."""
        col = self._fields.get("image")
        value = col[i] if col is not None and 0 <= i < self._n else None
        return Path(value) if isinstance(value, str) and value else None

    # ------------------------------------------------------------------ growth
    def add(self, title: str | None, tags: Sequence[str], text: str | None, fields: Mapping[str, Any]) -> int:
        """Append one item (a ``POST /items``); returns its index."""
        i = self._n
        self._n += 1
        self.titles.append(None)
        self.tags.append(frozenset())
        self._texts.append(None)
        for col in self._fields.values():
            col.append(None)
        row = {"title": title, "tags": list(tags), "description": text, **fields}
        self._set_row(i, row, "title", ["tags"], ["description"], fields.keys())
        self._reindex()
        return i

    def grow_to(self, n: int) -> None:
        """Pad with empty rows (items the model added without metadata)."""
        while self._n < n:
            self.add(None, [], None, {})

    # ------------------------------------------------------------------ filters
    def mask(
        self,
        *,
        tags_any: Sequence[str] | None = None,
        tags_all: Sequence[str] | None = None,
        tags_none: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> np.ndarray | None:
        """Boolean mask of items passing every filter, or None when no filter is given.

        Raises :class:`ValueError` naming the field when ``where`` uses a column the catalogue
        lacks, and when tag filters are used on a catalogue without tags;
        :class:`~lmrec.errors.FilterValueError` (a ``ValueError``) when a ``where`` value's type
        does not match its column (``{"year": "abc"}`` on a column of integers).
        """
        if not (tags_any or tags_all or tags_none or where):
            return None
        n = self._n
        out = np.ones(n, dtype=bool)
        if (tags_any or tags_all or tags_none) and not self.has_tags:
            src = f" ({self.source})" if self.source else ""
            raise ValueError(
                f"tag filters need a catalogue with tags{src}: start the server with --catalogue FILE "
                "(a genres/tags/categories column)"
            )
        empty = np.zeros(0, np.int64)
        if tags_any:
            m = np.zeros(n, dtype=bool)
            for t in tags_any:
                m[self._inverted.get(t.lower(), empty)] = True
            out &= m
        for t in tags_all or ():
            m = np.zeros(n, dtype=bool)
            m[self._inverted.get(t.lower(), empty)] = True
            out &= m
        for t in tags_none or ():
            out[self._inverted.get(t.lower(), empty)] = False
        for col, want in (where or {}).items():
            if col not in self._fields:
                known = ", ".join(self.field_names) or "none"
                raise ValueError(f"unknown filter field {col!r} (catalogue fields: {known})")
            values = self._fields[col]
            wanted = set(want) if isinstance(want, list) else {want}
            kind = self._kinds.get(col)
            for w in wanted:
                if not _matches(kind, w):
                    raise FilterValueError(col, str(kind), w)
            out &= np.fromiter((v in wanted for v in values), dtype=bool, count=n)
        return out


__all__ = ["CATALOGUE_FILES", "Catalogue", "catalogue_row", "find_catalogue", "read_catalogue", "split_tags"]
