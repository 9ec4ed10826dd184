"""Profile texts: what the text encoder reads for an item, a user or a free-text query.

An item profile is built from configurable fields in a fixed order of importance (title first,
review snippets last), so that when a profile is too long for the model (all-MiniLM-L6-v2 reads 256
word pieces, roughly 1,000 characters) it is the least informative tail that gets cut, at a sentence
or word boundary, never mid-word:

    Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy. Tags: pixar, fun.

Fields come from the items table (any column: ``title``, ``brand``, ``genres``, ``categories``,
``description``, ...) or are derived from user-generated content: ``tags`` (user tags aggregated per
item, most used first), ``reviews`` (the most helpful / longest review snippets) and ``keywords``
(review keyphrases from :mod:`lmrec.text.keywords`). A ``template`` (``str.format`` syntax) replaces
the default "Label: value." layout when a catalogue needs its own wording.

Leakage: profiles use whatever tags and reviews the :class:`~lmrec.data.dataset.Dataset` carries,
and splits keep side tables whole. Before evaluating on held-out interactions, drop the tags and
reviews written in those interactions with :func:`drop_heldout_text`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, field_validator

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError, UnknownIdError

#: derived fields (not columns of the items table)
DERIVED_FIELDS = ("tags", "reviews", "keywords")
_NO_VALUE = {"", "(no genres listed)", "none", "null", "nan", "n/a"}


class ProfileConfig(BaseModel):
    """How item (and user) profile texts are assembled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: fields in order of importance; missing columns are skipped silently (catalogues differ)
    fields: tuple[str, ...] = (
        "title",
        "name",
        "brand",
        "genres",
        "categories",
        "description",
        "tags",
        "keywords",
        "reviews",
    )
    #: optional ``str.format`` template over field names, e.g. ``"{title}. {description}"``
    template: str | None = None
    #: label written before a field's value in the default layout ("" = no label)
    labels: dict[str, str] = {
        "brand": "Brand",
        "genres": "Genres",
        "categories": "Categories",
        "tags": "Tags",
        "keywords": "Keywords",
        "reviews": "Reviews",
    }
    #: most-used tags kept per item, and how many distinct users must have used a tag
    max_tags: int = 12
    min_tag_count: int = 1
    #: review snippets per item and characters per snippet
    max_reviews: int = 3
    review_chars: int = 300
    #: characters for one free-text field (description) and for the whole profile
    field_chars: int = 600
    max_chars: int = 1200

    @field_validator("template")
    @classmethod
    def _check_template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
        except ValueError as exc:
            raise ValueError(f"bad profile template {v!r}: {exc}") from exc
        bad = [f for f in names if not f.isidentifier()]
        if bad:
            raise ValueError(f"profile template fields must be plain names, got {bad}")
        return v

    def template_fields(self) -> list[str]:
        if self.template is None:
            return list(self.fields)
        return [f for _, f, _, _ in string.Formatter().parse(self.template) if f]


# ---------------------------------------------------------------------------------- text utilities
_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?。！？](?=\s|$)")


def clean_text(text: str) -> str:
    """Collapse whitespace (newlines, tabs, HTML-ish runs of spaces) to single spaces."""
    return _SPACE.sub(" ", text).strip()


def truncate(text: str, max_chars: int, *, ellipsis: str = "…") -> str:
    """Cut ``text`` to at most ``max_chars`` characters at a sentence end, else at a word boundary.

    A sentence end is preferred when it keeps at least 60% of the budget; otherwise the last space;
    a single over-long word is cut hard. An ellipsis marks that something was dropped.
    """
    text = clean_text(text)
    if max_chars <= 0:
        return ""
    if len(text) <= max_chars:
        return text
    budget = max_chars - len(ellipsis)
    if budget <= 0:
        return text[:max_chars]
    head = text[: budget + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= 0.6 * budget:
        return head[: ends[-1]].rstrip()
    cut = head.rfind(" ")
    if cut >= 0.3 * budget:
        return head[:cut].rstrip(" ,;:-") + ellipsis
    return text[:budget] + ellipsis


def _as_list(value: Any) -> list[str]:
    """Column value -> list of clean strings (lists stay lists; 'a|b' and 'a, b' split for list fields)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, pl.Series)):
        items = [str(v) for v in value if v is not None]
    else:
        s = str(value)
        items = s.split("|") if "|" in s else [s]
    return [clean_text(i) for i in items if clean_text(i).lower() not in _NO_VALUE]


def _format_value(field: str, value: Any, config: ProfileConfig) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pl.Series)) or field in ("genres", "categories", "tags", "keywords"):
        return ", ".join(dict.fromkeys(_as_list(value)))
    text = clean_text(str(value))
    if text.lower() in _NO_VALUE:
        return ""
    if field in ("title", "name"):
        return text
    return truncate(text, config.field_chars)


# ---------------------------------------------------------------------------------- aggregation
def aggregate_tags(tags: pl.DataFrame | None, config: ProfileConfig | None = None) -> dict[Any, list[str]]:
    """item_id -> most used tags (lower-cased, by number of distinct users, then alphabetically)."""
    config = config or ProfileConfig()
    if tags is None or tags.height == 0:
        return {}
    if "tag" not in tags.columns or "item_id" not in tags.columns:
        raise DataError("tags table needs 'item_id' and 'tag' columns", column="tag")
    who = "user_id" if "user_id" in tags.columns else None
    df = tags.select(
        "item_id",
        pl.col("tag").cast(pl.Utf8).str.strip_chars().str.to_lowercase().alias("tag"),
        *([pl.col(who)] if who else []),
    ).filter(pl.col("tag").is_not_null() & (pl.col("tag").str.len_chars() > 0))
    count = pl.col(who).n_unique() if who else pl.len()
    agg = (
        df.group_by("item_id", "tag")
        .agg(count.alias("n"))
        .filter(pl.col("n") >= config.min_tag_count)
        .sort(["item_id", "n", "tag"], descending=[False, True, False])
        .group_by("item_id", maintain_order=True)
        .agg(pl.col("tag").head(config.max_tags))
    )
    return dict(zip(agg["item_id"].to_list(), agg["tag"].to_list(), strict=True))


def review_snippets(
    reviews: pl.DataFrame | None, config: ProfileConfig | None = None
) -> dict[Any, list[str]]:
    """item_id -> up to ``max_reviews`` snippets: most helpful first when votes exist, else longest.

    A ``summary`` column (Amazon's review headline) is put in front of its review's text because it
    is the reviewer's own one-line description of the item.
    """
    config = config or ProfileConfig()
    if reviews is None or reviews.height == 0 or config.max_reviews <= 0:
        return {}
    text = pl.col("text").cast(pl.Utf8).fill_null("")
    if "summary" in reviews.columns:
        summary = pl.col("summary").cast(pl.Utf8).fill_null("").str.strip_chars()
        text = pl.when(summary.str.len_chars() > 0).then(summary + pl.lit(": ") + text).otherwise(text)
    keys: list[pl.Expr] = []
    for col in ("helpful_votes", "helpful", "votes"):
        if col in reviews.columns and reviews[col].dtype.is_numeric():
            keys.append(pl.col(col).fill_null(0))
            break
    df = (
        reviews.select("item_id", text.alias("_text"), *keys)
        .with_columns(pl.col("_text").str.len_chars().alias("_len"))
        .filter(pl.col("_len") > 0)
    )
    sort_cols = ["item_id", *[k.meta.output_name() for k in keys], "_len"]
    df = df.sort(sort_cols, descending=[False] + [True] * (len(sort_cols) - 1))
    agg = df.group_by("item_id", maintain_order=True).agg(pl.col("_text").head(config.max_reviews))
    return {
        item: [truncate(t, config.review_chars) for t in texts]
        for item, texts in zip(agg["item_id"].to_list(), agg["_text"].to_list(), strict=True)
    }


# ---------------------------------------------------------------------------------- item profiles
def has_profile_text(items: pl.DataFrame, config: ProfileConfig | None = None) -> np.ndarray:
    """Bool per row of ``items``: whether any of the profile's fields that are columns holds
    something (a row without would be profiled by its bare item id)."""
    config = config or ProfileConfig()
    textless = np.ones(items.height, bool)
    for c in (c for c in config.fields if c in items.columns):
        col = items[c]
        empty = col.fill_null("").str.strip_chars() == "" if col.dtype == pl.String else col.is_null()
        textless &= empty.to_numpy()
    return ~textless


def item_texts_from_frame(
    items: pl.DataFrame,
    config: ProfileConfig | None = None,
    *,
    tags: Mapping[Any, Sequence[str]] | pl.DataFrame | None = None,
    reviews: Mapping[Any, Sequence[str]] | pl.DataFrame | None = None,
    keywords: Mapping[Any, Sequence[str]] | None = None,
    check_template: bool = False,
) -> list[str]:
    """One profile text per row of ``items`` (which needs an ``item_id`` column).

    ``check_template``: a template field that is neither a column of ``items`` nor a given side
    table (nor ``item_id``) raises :class:`DataError` naming it and the available fields, instead
    of rendering empty (:func:`build_item_texts`, the whole catalogue, always checks; a frame of a
    few new items may lack columns the catalogue has).

    ``tags``/``reviews`` are raw tables (aggregated here) or already aggregated ``item_id -> list``
    maps; ``keywords`` maps item ids to keyphrases. A side table that is given replaces the
    catalogue column of the same name (e.g. a pre-aggregated ``tags`` column), because only the
    table can be restricted to training data. A row with nothing to say gets its item id as
    text, so that every item still has a (weak, but distinct) vector.
    """
    config = config or ProfileConfig()
    if "item_id" not in items.columns:
        raise DataError(
            f"items table has no 'item_id' column (columns: {', '.join(items.columns)})", column="item_id"
        )
    derived: dict[str, Mapping[Any, Sequence[str]]] = {}
    if tags is not None:
        derived["tags"] = aggregate_tags(tags, config) if isinstance(tags, pl.DataFrame) else dict(tags)
    if reviews is not None:
        derived["reviews"] = (
            review_snippets(reviews, config) if isinstance(reviews, pl.DataFrame) else dict(reviews)
        )
    if keywords is not None:
        derived["keywords"] = dict(keywords)
    wanted = config.template_fields()
    if check_template and config.template is not None:
        available = ["item_id", *(c for c in items.columns if c != "item_id"), *derived]
        unknown = [f for f in dict.fromkeys(wanted) if f not in available]
        if unknown:
            raise DataError(
                f"profile template {config.template!r} names {', '.join(map(repr, unknown))}, which "
                f"this catalogue does not have; available fields: {', '.join(dict.fromkeys(available))}",
                column=unknown[0],
            )
    # A side table, when given, replaces a same-named catalogue column (loaders pre-aggregate a
    # "tags" column from *all* tags): only the table can be filtered to training data.
    columns = {
        f: items[f].to_list() for f in wanted if f in items.columns and f != "item_id" and f not in derived
    }
    ids = items["item_id"].to_list()
    out = []
    for row, item in enumerate(ids):
        values: dict[str, str] = {}
        for f in wanted:
            if f in derived:
                vals = list(derived[f].get(item, ()))
                if vals:
                    values[f] = " | ".join(vals) if f == "reviews" else _format_value(f, vals, config)
            elif f in columns:
                values[f] = _format_value(f, columns[f][row], config)
            elif f == "item_id":
                values[f] = str(item)
        out.append(_render(values, config, item))
    return out


def _render(values: Mapping[str, str], config: ProfileConfig, item: Any) -> str:
    if config.template is not None:
        text = config.template.format_map({f: values.get(f, "") for f in config.template_fields()})
        # a missing field leaves "Tags: ." or "()" behind; drop empty labelled pieces and brackets
        text = re.sub(r"\(\s*\)|\[\s*\]", "", text)
        text = re.sub(r"\s+([.,;:])", r"\1", clean_text(text))
        text = re.sub(r"([.,;:])(?:\s*[.,;:])+", r"\1", text).lstrip(" .,;:").rstrip(" ,;:")
    else:
        parts = []
        for f in config.fields:
            v = values.get(f, "")
            if not v:
                continue
            label = config.labels.get(f, "")
            piece = f"{label}: {v}" if label else v
            parts.append(piece if piece.endswith((".", "!", "?", "…")) else piece + ".")
        text = " ".join(parts)
    text = truncate(text, config.max_chars)
    return text if text else f"item {item}"


def build_item_texts(
    data: Dataset,
    config: ProfileConfig | None = None,
    *,
    keywords: Mapping[Any, Sequence[str]] | None = None,
) -> list[str]:
    """One profile per item of ``data.item_vocab`` (in index order, cold catalogue items included).

    A template field the catalogue does not have (no such column, no such side table) raises
    :class:`DataError` naming it and the available fields: it would otherwise render empty, and
    every profile would fall back to ``"item <id>"``.
    """
    config = config or ProfileConfig()
    table = data.item_table()
    tags = _align_ids(data.tags, table["item_id"].dtype)
    reviews = _align_ids(data.reviews, table["item_id"].dtype)
    return item_texts_from_frame(
        table, config, tags=tags, reviews=reviews, keywords=keywords, check_template=True
    )


def _align_ids(frame: pl.DataFrame | None, dtype: pl.DataType) -> pl.DataFrame | None:
    if frame is None or "item_id" not in frame.columns or frame["item_id"].dtype == dtype:
        return frame
    return frame.with_columns(pl.col("item_id").cast(dtype, strict=False))


# ---------------------------------------------------------------------------------- user profiles
def build_user_texts(
    data: Dataset,
    *,
    max_items: int = 15,
    min_weight: float | None = None,
    max_chars: int = 1000,
) -> list[str]:
    """One profile text per user of ``data.user_vocab``: attributes, recent items, tags they used.

    ``min_weight`` keeps only interactions with at least that ``rating`` (or ``weight``) as "liked"
    items, e.g. 4.0 on a five-star scale; titles are listed most recent first.
    """
    titles = data.item_titles()
    inter = data.interactions.with_row_index("_row")
    value = "rating" if "rating" in inter.columns else "weight"
    if min_weight is not None:
        inter = inter.filter(pl.col(value).fill_null(0) >= min_weight)
    recent = (
        inter.sort(["user_idx", "timestamp", "_row"], descending=[False, True, True])
        .group_by("user_idx", maintain_order=True)
        .agg(pl.col("item_idx").head(max_items))
    )
    liked = dict(zip(recent["user_idx"].to_list(), recent["item_idx"].to_list(), strict=True))
    attrs: dict[Any, str] = {}
    if data.users is not None:
        cols = [c for c in data.users.columns if c != "user_id"]
        for row in data.users.iter_rows(named=True):
            bits = [
                f"{c}: {clean_text(str(row[c]))}" for c in cols if row[c] is not None and str(row[c]).strip()
            ]
            if bits:
                attrs[row["user_id"]] = "; ".join(bits) + "."
    used: dict[Any, list[str]] = {}
    if data.tags is not None and "user_id" in data.tags.columns:
        t = (
            data.tags.select("user_id", pl.col("tag").cast(pl.Utf8).str.to_lowercase())
            .group_by("user_id", "tag")
            .len()
            .sort(["user_id", "len", "tag"], descending=[False, True, False])
            .group_by("user_id", maintain_order=True)
            .agg(pl.col("tag").head(10))
        )
        used = dict(zip(t["user_id"].to_list(), t["tag"].to_list(), strict=True))
    out = []
    for u, uid in enumerate(data.user_vocab.ids):
        parts = []
        if uid in attrs:
            parts.append(attrs[uid])
        if liked.get(u):
            parts.append("Liked: " + "; ".join(titles[i] for i in liked[u]) + ".")
        if used.get(uid):
            parts.append("Tags used: " + ", ".join(used[uid]) + ".")
        out.append(truncate(" ".join(parts), max_chars) or f"user {uid}")
    return out


def user_text(data: Dataset, user_id: Any, **options: Any) -> str:
    """The profile text of one user (see :func:`build_user_texts`)."""
    u = data.user_vocab.get(user_id)
    if u < 0:
        raise UnknownIdError("user_id", [user_id])
    return build_user_texts(data, **options)[u]


def query_text(text: str, max_chars: int = 1000) -> str:
    """A free-text query, whitespace-normalised and cut to ``max_chars``; empty queries are errors."""
    if not isinstance(text, str):
        raise TypeError(f"a text query must be a string, got {type(text).__name__}")
    out = truncate(text, max_chars)
    if not out:
        raise ValueError("empty text query")
    return out


# ---------------------------------------------------------------------------------- leakage control
def drop_heldout_text(data: Dataset, heldout: pl.DataFrame | Sequence[pl.DataFrame | None]) -> Dataset:
    """``data`` without the reviews and tags written in held-out (user, item) interactions.

    A review is the text of an interaction: if that interaction is a test target, its text in an item
    profile tells the model who will like the item. Splits keep side tables whole, so evaluation code
    calls this with ``[split.valid, split.test]`` before building profiles.
    """
    frames = [heldout] if isinstance(heldout, pl.DataFrame) else [f for f in heldout if f is not None]
    if not frames:
        return data
    pairs = pl.concat([f.select("user_id", "item_id") for f in frames]).unique()
    from dataclasses import replace

    def strip(frame: pl.DataFrame | None) -> pl.DataFrame | None:
        if frame is None or "user_id" not in frame.columns:
            return frame
        p = pairs.with_columns(
            pl.col("user_id").cast(frame["user_id"].dtype, strict=False),
            pl.col("item_id").cast(frame["item_id"].dtype, strict=False),
        )
        return frame.join(p, on=["user_id", "item_id"], how="anti", maintain_order="left")

    return replace(data, reviews=strip(data.reviews), tags=strip(data.tags))


__all__ = [
    "DERIVED_FIELDS",
    "ProfileConfig",
    "aggregate_tags",
    "build_item_texts",
    "build_user_texts",
    "clean_text",
    "drop_heldout_text",
    "has_profile_text",
    "item_texts_from_frame",
    "query_text",
    "review_snippets",
    "truncate",
    "user_text",
]
