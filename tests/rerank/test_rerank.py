"""MMR diversity and explanations."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.rerank import explain, intra_list_similarity, keywords_of, mmr, tag_idf


def test_mmr_lambda_one_is_the_relevance_order(rng: np.random.Generator) -> None:
    rel = np.sort(rng.random(30))[::-1]
    v = rng.standard_normal((30, 8))
    assert list(mmr(rel, 10, vectors=v, lambda_=1.0)) == list(range(10))


def test_mmr_separates_near_duplicates() -> None:
    # items 0 and 1 are the same direction; 2 is orthogonal and a little less relevant
    v = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.7, 0.7]])
    rel = np.array([1.0, 0.99, 0.9, 0.1])
    assert list(mmr(rel, 2, vectors=v, lambda_=1.0)) == [0, 1]
    assert list(mmr(rel, 2, vectors=v, lambda_=0.5)) == [0, 2]
    assert intra_list_similarity(v[[0, 2]]) < intra_list_similarity(v[[0, 1]])


def test_mmr_lowers_intra_list_similarity(rng: np.random.Generator) -> None:
    centres = rng.standard_normal((3, 16))
    v = np.repeat(centres, 20, axis=0) + 0.1 * rng.standard_normal((60, 16))
    rel = rng.random(60)
    rel[:20] += 1.0  # the most relevant items all come from one cluster
    plain = np.argsort(-rel)[:10]
    div = mmr(rel, 10, vectors=v, lambda_=0.5)
    assert intra_list_similarity(v[div]) < intra_list_similarity(v[plain]) - 0.3
    assert div[0] == plain[0]
    assert len(set(div)) == 10


def test_mmr_first_pick_is_the_most_relevant_even_at_lambda_zero() -> None:
    rel = np.array([0.2, 0.9, 0.5])
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    assert list(mmr(rel, 3, vectors=v, lambda_=0.0)) == [1, 2, 0]
    # unscaled relevance (cosine already): the same list here, the raw values used as given
    assert list(mmr(rel, 3, vectors=v, lambda_=0.0, scale=False)) == [1, 2, 0]
    assert list(mmr(rel, 3, vectors=v, lambda_=1.0, scale=False)) == [1, 2, 0]


def test_mmr_validation() -> None:
    with pytest.raises(ValueError, match="lambda"):
        mmr(np.ones(3), 2, vectors=np.eye(3), lambda_=1.5)
    with pytest.raises(ValueError, match="vectors or a similarity"):
        mmr(np.ones(3), 2)
    assert len(mmr(np.ones(3), 0, vectors=np.eye(3))) == 0


def test_explain_names_the_driving_history_items_and_shared_tags() -> None:
    unit = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.98, 0.2, 0.0], [0.0, 0.6, 0.8]])
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    tags = [
        frozenset({"Animation", "Comedy"}),
        frozenset({"Horror"}),
        frozenset({"Drama"}),
        frozenset({"Animation", "Comedy", "Family"}),
        frozenset({"Horror", "Drama"}),
    ]
    idf = tag_idf(tags)
    out = explain(np.array([3, 4]), np.array([0, 1, 2]), unit, tags=tags, tag_idf=idf)
    assert out[0].items[0][0] == 0 and out[0].items[0][1] > 0.9
    assert set(out[0].keywords) == {"Animation", "Comedy"}
    assert {h for h, _ in out[1].items} == {1, 2}
    assert set(out[1].keywords) == {"Horror", "Drama"}


def test_explain_with_query_text_and_without_history() -> None:
    terms = [frozenset({"space", "station"}), frozenset({"romance"})]
    tags = [frozenset({"Sci-Fi"}), frozenset({"Romance"})]
    out = explain(
        np.array([0, 1]),
        np.array([], dtype=np.int64),
        None,
        tags=tags,
        item_terms=terms,
        query_text="A space romance, sci-fi",
    )
    assert out[0].items == [] and "space" in out[0].keywords
    assert out[1].keywords == ["Romance"]  # a tag matched by a query word keeps the tag's spelling
    assert keywords_of("The Matrix and a movie") == {"matrix"}
