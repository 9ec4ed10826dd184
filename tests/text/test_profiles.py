"""Profile texts for items, users and queries; truncation; leakage control."""

from __future__ import annotations

import polars as pl
import pytest
from pydantic import ValidationError

from lmrec.data.dataset import Dataset
from lmrec.data.split import cold_item
from lmrec.errors import DataError, UnknownIdError
from lmrec.text.profiles import (
    ProfileConfig,
    aggregate_tags,
    build_item_texts,
    build_user_texts,
    drop_heldout_text,
    item_texts_from_frame,
    query_text,
    review_snippets,
    truncate,
    user_text,
)


def test_truncate_prefers_sentence_then_word_boundaries() -> None:
    text = "First sentence is here. Second sentence is a bit longer than the first one."
    assert truncate(text, 200) == text
    assert truncate(text, 36) == "First sentence is here."  # a sentence end keeping >= 60% of the budget
    assert truncate(text, 45) == "First sentence is here. Second sentence is a…"
    cut = truncate("alpha beta gamma delta epsilon", 20)
    assert cut == "alpha beta gamma…" and len(cut) <= 20
    assert truncate("x" * 50, 10) == "x" * 9 + "…"  # one huge word: a hard cut
    assert truncate("  spaced\n\n out\ttext ", 100) == "spaced out text"
    assert truncate("anything", 0) == ""


def test_item_profiles_in_vocabulary_order_with_tags_and_reviews(tiny: Dataset) -> None:
    texts = build_item_texts(tiny)
    assert len(texts) == tiny.n_items == 6
    by_id = dict(zip(tiny.item_vocab.ids, texts, strict=True))
    # title first, genres split from "a|b", tags by number of distinct users (case folded), reviews last
    assert by_id[1].startswith("Space Battle (1990). Genres: Sci-Fi, Action. Tags: aliens.")
    assert "Reviews: Great lasers." in by_id[1]
    assert by_id[2] == "Galaxy Wars (1995). Genres: Sci-Fi. Tags: lasers, space."
    # the tags table replaces the catalogue's pre-aggregated "tags" column (which may leak)
    assert "leaky" not in by_id[1]
    # an item nobody interacted with still gets its catalogue text (zero-shot cold start)
    assert by_id[6] == "Kiss Me Again (2004). Genres: Romance, Drama."


def test_review_snippets_rank_by_helpfulness_then_length_and_truncate() -> None:
    reviews = pl.DataFrame(
        {
            "item_id": ["a", "a", "a", "b"],
            "text": ["short", "a much longer review text " * 30, "medium length review", "only one"],
            "summary": ["S1", "", None, "Top"],
        }
    )
    snips = review_snippets(reviews, ProfileConfig(max_reviews=2, review_chars=80))
    assert snips["a"][0].startswith("a much longer review") and len(snips["a"][0]) <= 80
    assert snips["a"][1] == "medium length review"
    assert snips["b"] == ["Top: only one"]  # the review headline leads
    voted = reviews.with_columns(pl.Series("helpful_votes", [10, 0, 1, 0]))
    assert review_snippets(voted, ProfileConfig(max_reviews=1))["a"] == ["S1: short"]


def test_tag_aggregation_counts_distinct_users() -> None:
    tags = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 3],
            "item_id": [7, 7, 7, 7, 7],
            "tag": ["Funny", "funny", "dark", "dark", "dark "],
        }
    )
    assert aggregate_tags(tags)[7] == ["dark", "funny"]  # 3 users > 1 user (who used it twice)
    assert aggregate_tags(tags, ProfileConfig(min_tag_count=2))[7] == ["dark"]


def test_template_and_fields_config() -> None:
    items = pl.DataFrame({"item_id": [1, 2], "title": ["Heat", "Babe"], "description": ["A heist.", None]})
    cfg = ProfileConfig(template="{title} ({genres}): {description}")
    assert item_texts_from_frame(items, cfg) == ["Heat: A heist.", "Babe"]
    cfg2 = ProfileConfig(fields=("description", "title"))
    assert item_texts_from_frame(items, cfg2) == ["A heist. Heat.", "Babe."]
    with pytest.raises(ValidationError, match="plain names"):
        ProfileConfig(template="{title[0]}")
    # nothing to say: the id stands in, so every item still gets a distinct text
    assert item_texts_from_frame(pl.DataFrame({"item_id": ["x"]})) == ["item x"]


def test_long_profiles_are_cut_from_the_least_important_end() -> None:
    items = pl.DataFrame({"item_id": [1], "title": ["The Title"], "description": ["word " * 500]})
    text = item_texts_from_frame(items, ProfileConfig(max_chars=300, field_chars=1000))[0]
    assert text.startswith("The Title. ") and len(text) <= 300 and text.endswith("…")


def test_drop_heldout_text_removes_reviews_and_tags_of_test_interactions(tiny: Dataset) -> None:
    held = pl.DataFrame({"user_id": [10, 13], "item_id": [1, 2]})
    clean = drop_heldout_text(tiny, [held, None])
    assert clean.reviews is not None and clean.tags is not None
    assert clean.reviews.height == 2 and 10 not in clean.reviews["user_id"].to_list()
    assert sorted(clean.tags["tag"].to_list()) == ["aliens", "paris"]
    by_id = dict(zip(clean.item_vocab.ids, build_item_texts(clean), strict=True))
    assert "lasers" not in by_id[2] and "Great lasers" not in by_id[1]
    assert drop_heldout_text(tiny, []) is tiny


def test_drop_heldout_text_on_a_real_cold_item_split(ml_small: Dataset) -> None:
    split = cold_item(ml_small, item_fraction=0.1, seed=1)
    clean = drop_heldout_text(split.train, [split.test])
    assert clean.tags is not None and ml_small.tags is not None
    pairs = set(zip(split.test["user_id"].to_list(), split.test["item_id"].to_list(), strict=True))
    left = set(zip(clean.tags["user_id"].to_list(), clean.tags["item_id"].to_list(), strict=True))
    assert not pairs & left
    assert clean.tags.height < ml_small.tags.height


def test_user_texts_and_query_text(tiny: Dataset) -> None:
    texts = build_user_texts(tiny)
    assert len(texts) == tiny.n_users
    u10 = user_text(tiny, 10)
    assert u10.startswith("Liked: Galaxy Wars (1995); Space Battle (1990).")  # most recent first
    assert "Tags used: aliens." in u10
    with pytest.raises(UnknownIdError, match="user_id: 999"):
        user_text(tiny, 999)
    assert query_text("  animated\nmovie  ") == "animated movie"
    with pytest.raises(ValueError, match="empty"):
        query_text("   ")


def test_real_movielens_profiles(ml_small: Dataset) -> None:
    texts = build_item_texts(ml_small)
    assert len(texts) == 9742
    toy = texts[ml_small.item_vocab.index(1)]
    assert toy.startswith("Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy. Tags: ")
    assert "pixar" in toy
    assert max(len(t) for t in texts) <= ProfileConfig().max_chars
    assert len(set(texts)) == len(texts)  # distinct items, distinct texts


def test_unknown_template_field_names_it_and_the_available_ones(tiny: Dataset) -> None:
    """``{nonexistent}`` used to render empty, and every profile became "item N"."""
    with pytest.raises(DataError, match=r"'nonexistent'.*available fields: item_id, title") as info:
        build_item_texts(tiny, ProfileConfig(template="{title}: {nonexistent}"))
    assert "\n" not in str(info.value)
    texts = build_item_texts(tiny, ProfileConfig(template="{title} #{item_id}"))
    assert texts[0].startswith("Space Battle (1990)") and texts[0].endswith("#1")
    # a frame of a few new items may lack catalogue columns: checked only on request
    frame = pl.DataFrame({"item_id": [9], "title": ["New"]})
    assert item_texts_from_frame(frame, ProfileConfig(template="{title} ({genres})")) == ["New"]
    with pytest.raises(DataError, match="'genres'"):
        item_texts_from_frame(frame, ProfileConfig(template="{title} ({genres})"), check_template=True)
