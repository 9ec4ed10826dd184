"""Review keyphrases: candidates, MMR diversity, ranking by similarity to the reviews."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError
from lmrec.rerank.mmr import mmr
from lmrec.text.encoder import HashingEncoder, SentenceTransformerEncoder
from lmrec.text.keywords import STOP_WORDS, candidate_phrases, extract_keywords, keyword_map, review_keywords

GUITAR = [
    "These guitar strings sound bright and stay in tune for weeks.",
    "Great guitar strings, the tone is warm and they stay in tune.",
    "The strings arrived quickly. Bright tone on my acoustic guitar.",
]
MIC = [
    "This condenser microphone captures vocals with no hiss at all.",
    "The microphone stand is sturdy and the vocals sound clear.",
    "Clear vocals, great condenser microphone for a home studio.",
]


def test_candidates_skip_stop_words_and_prefer_distinctive_phrases() -> None:
    cands = candidate_phrases([GUITAR, MIC], candidates=8)
    assert len(cands) == 2
    for phrase in cands[0] + cands[1]:
        words = phrase.split()
        assert words[0] not in {"the", "and", "for", "with"} and words[-1] not in {"the", "and", "a"}
    assert "guitar strings" in cands[0] and "microphone" not in " ".join(cands[0])
    assert any("microphone" in p for p in cands[1])
    # a phrase used in every item ("great") loses to item-specific ones
    assert "great" not in cands[0][:3]


def test_keyphrase_mmr_trades_relevance_for_diversity() -> None:
    """Keyphrases use the one MMR (rerank.mmr) with unscaled cosine relevance and λ = 1 − diversity."""
    doc = np.array([0.9, 0.89, 0.5])
    sim = np.array([[1.0, 0.99, 0.1], [0.99, 1.0, 0.1], [0.1, 0.1, 1.0]])

    def pick(k: int, diversity: float) -> list[int]:
        return [int(i) for i in mmr(doc, k, similarity=sim, lambda_=1.0 - diversity, scale=False)]

    assert pick(2, 0.0) == [0, 1]  # pure relevance keeps the near-duplicate
    assert pick(2, 0.7) == [0, 2]  # diversity skips it
    assert pick(3, 1.0) == [0, 2, 1]  # pure novelty still starts from the most relevant phrase
    assert len(mmr(np.zeros(0), 3, similarity=np.zeros((0, 0)), lambda_=0.5, scale=False)) == 0
    with pytest.raises(ValueError, match="diversity"):
        extract_keywords(["x"], HashingEncoder(), diversity=1.5)


def test_extract_keywords_with_minilm_finds_what_each_item_is(minilm: SentenceTransformerEncoder) -> None:
    out = extract_keywords([GUITAR, MIC, []], minilm, top_n=3, candidates=15, diversity=0.3)
    assert len(out) == 3 and out[2] == []
    guitar, mic = [p for p, _ in out[0]], [p for p, _ in out[1]]
    assert len(guitar) == 3 and len(mic) == 3
    assert any("guitar" in p or "strings" in p for p in guitar[:2]), guitar
    assert any("microphone" in p or "vocals" in p for p in mic[:2]), mic
    scores = [s for _, s in out[0]]
    assert scores[0] == max(scores)  # MMR starts from the most relevant phrase
    assert len(set(guitar)) == 3


def test_review_keywords_frame_and_map(tiny: Dataset) -> None:
    frame = review_keywords(tiny, HashingEncoder(), top_n=2)
    assert frame.columns == ["item_id", "keyword", "score", "rank"]
    assert frame["item_id"].dtype == pl.Int64
    assert set(frame["item_id"].to_list()) == {1, 4}  # items with reviews only
    kw = keyword_map(frame)
    assert set(kw) == {1, 4} and all(1 <= len(v) <= 2 for v in kw.values())
    assert frame.filter(pl.col("item_id") == 1)["rank"].to_list() == list(range(1, len(kw[1]) + 1))
    only = review_keywords(tiny, HashingEncoder(), items=[4])
    assert set(only["item_id"].to_list()) == {4}
    no_reviews = Dataset.from_frames(pl.DataFrame({"user_id": [1], "item_id": [1]}))
    with pytest.raises(DataError, match="no reviews"):
        review_keywords(no_reviews, HashingEncoder())


def test_stop_words_come_from_package_data() -> None:
    assert {"the", "and", "don't", "dont", "really"} <= STOP_WORDS
    assert not any(w.startswith("#") or " " in w or w != w.lower() for w in STOP_WORDS)
    assert "fire" not in STOP_WORDS and "system" not in STOP_WORDS  # content words in reviews
